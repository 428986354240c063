"""int8 on a torch.export program: torchao's PT2E flow with the x86 inductor quantizer.

prepare_pt2e inserts observers at the inputs and weights of the ops X86InductorQuantizer knows
(linear, conv and what fuses with them), static mode runs calibration examples through them, and
convert_pt2e replaces them by quantize/dequantize pairs: int8 weights stored per output channel,
activations quantized per tensor with calibrated scales (static) or scales computed per batch at
run time (dynamic). The float weights the int8 ones replace are dropped before export, so the
file shrinks. Run eagerly (torch.export.load(...).module()), the program dequantizes and calls
the float kernels: it models int8 accuracy exactly, while speed-ups need inductor to fuse the
pairs into int8 kernels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from harness.compression.torch.program import GraphWeight, attribute, drop_unused_attributes, graph_weights
from harness.compression.torch.quiet_import import import_pt2e, import_torchao
from harness.data.dataset import Split
from harness.data.tensors import TensorSpec, batch_len, batch_slice
from harness.errors import UserError
from harness.models.torch_io import example_inputs, to_tensors

CALIBRATION_BATCH = 64  # rows per calibration call; the observers see every row either way


def quantize_program(
    program: Any,
    mode: Literal["static", "dynamic"],
    inputs: Sequence[TensorSpec],
    calibration: Split | None,
    samples: int,
    recipe: str,
) -> tuple[Any, dict[str, Any]]:
    """The PT2E int8 GraphModule of `program` (a torch.export GraphModule) and what was quantized.

    UserError when static mode has no calibration data or the quantizer finds nothing to quantize.
    """
    import torch

    torchao = import_torchao()
    pt2e = import_pt2e()

    if mode == "static" and (calibration is None or len(calibration) == 0):
        raise UserError(
            f"{recipe} mode static calibrates activation scales on data, but the data has no calibration "
            "or train split; add one, or use mode dynamic"
        )
    config = pt2e.get_default_x86_inductor_quantization_config(is_dynamic=mode == "dynamic")
    quantizer = pt2e.X86InductorQuantizer().set_global(config)
    prepared = pt2e.prepare_pt2e(program, quantizer)
    # The weight observers record the weights when the prepared model runs, in dynamic mode too:
    # unrun, they hand convert_pt2e a scale of 1.0 and the int8 weights are garbage. Dynamic mode
    # needs any one batch for that; static mode the calibration examples.
    seen = 0
    with torch.no_grad():
        if mode == "static":
            assert calibration is not None
            rows = calibration.head(samples).inputs
            seen = batch_len(rows)
            for start in range(0, seen, CALIBRATION_BATCH):
                prepared(*to_tensors(batch_slice(rows, start, start + CALIBRATION_BATCH), inputs))
        else:
            prepared(*example_inputs(inputs))
    converted = pt2e.convert_pt2e(prepared)
    dropped = drop_unused_attributes(converted)

    quantized = {
        w.name: {"op": w.op, "storage_dtype": "int8", "scale_shape": _scale_shape(converted, w)}
        for w in graph_weights(converted)
        if w.quantized
    }
    if not quantized:
        raise UserError(
            f"{recipe}: the x86 PT2E quantizer found no linear or conv op to quantize in the program"
        )
    details: dict[str, Any] = {
        "method": "pt2e",
        "quantizer": "X86InductorQuantizer",
        "mode": mode,
        "torchao_version": torchao.__version__,
        "quantized_layers": quantized,
        "calibration_examples": seen,
        "float_weights_dropped": dropped,
    }
    return converted, details


def _scale_shape(model: Any, weight: GraphWeight) -> list[int]:
    scale: Any = weight.dequantize.args[1] if weight.dequantize is not None else None
    if getattr(scale, "op", None) != "get_attr":
        return []
    return list(attribute(model, str(scale.target)).shape)
