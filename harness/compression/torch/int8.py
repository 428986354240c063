"""torch.int8: int8 quantization on CPU, by torchao, for an nn.Module or a torch.export program.

On an nn.Module (built-in, python: factory, distilled student), `weight_only` and `dynamic` use
torchao's `quantize_` on its nn.Linear layers: int8 weights with per-channel scales, computing in
float (Int8WeightOnlyConfig) or with activations quantized per batch
(Int8DynamicActivationInt8WeightConfig). The weights become torchao tensor subclasses (Int8Tensor)
that export to .pt2 correctly but are silently wrong under torch.jit.script, hence .pt2 only.

`static`, and every mode on a torch.export (.pt2) program, go through torchao's PT2E flow
(`harness.compression.torch.pt2e`): an nn.Module is exported first. A program has no nn.Linear
for quantize_ to swap, so `weight_only` is refused there. torch.ao.quantization is deprecated in
torch 2.13, so torchao is the supported path for both.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from harness.compression.base import Recipe, RecipeContext, StepReport
from harness.compression.params import TorchInt8Params
from harness.compression.torch.export import export_program
from harness.compression.torch.program import is_graph_module, is_pt2e_quantized
from harness.compression.torch.pt2e import quantize_program
from harness.compression.torch.quiet_import import import_torchao
from harness.compression.torch.stats import (
    is_quantized,
    refuse_torchscript,
    require_linear_layers,
    sparsity_stats,
)
from harness.errors import RunError, UserError


class TorchInt8Recipe(Recipe):
    """Quantize weights (and, except weight_only, activations) to int8 with torchao."""

    name: ClassVar[str] = "torch.int8"
    framework: ClassVar[str] = "torch"
    params_model = TorchInt8Params
    params: TorchInt8Params

    def apply(self, model: Any, context: RecipeContext | None = None) -> tuple[Any, StepReport]:
        refuse_torchscript(model, self.name)
        if is_pt2e_quantized(model) or any(is_quantized(p) for _, p in model.named_parameters()):
            raise UserError(f"{self.name}: the weights are already quantized (torch.int8 twice?)")
        start = time.perf_counter()
        if self.params.mode == "static" or is_graph_module(model):
            model, details, notes = self._pt2e(model, context)
        else:
            model, details, notes = self._quantize_linear(model)
        stats = sparsity_stats(model)
        return model, StepReport(
            recipe=self.name,
            params=self.params.model_dump(),
            seconds=time.perf_counter() - start,
            sparsity=stats["sparsity"],
            sparsity_all_params=stats["sparsity_all_params"],
            notes=notes,
            details=details,
        )

    def _pt2e(self, model: Any, context: RecipeContext | None) -> tuple[Any, dict[str, Any], list[str]]:
        mode = self.params.mode
        if mode == "weight_only":
            raise UserError(
                f"{self.name} mode weight_only swaps the weights of nn.Linear modules, which a torch.export "
                "program does not keep; use mode static (calibrated) or dynamic for a .pt2 model"
            )
        if context is None:
            raise RunError(f"{self.name} mode {mode} needs the data: call it with a RecipeContext")
        inputs = context.signature.inputs if context.signature is not None else context.data.inputs
        exported = not is_graph_module(model)
        if exported:
            model = export_program(model, inputs).module()
        calibration = context.data.calibration_split() if mode == "static" else None
        samples = self.params.calibration_samples
        quantized, details = quantize_program(model, mode, inputs, calibration, samples, self.name)
        activations = (
            f"activations int8 per tensor, scales calibrated on {details['calibration_examples']} examples"
            if mode == "static"
            else "activations int8 per tensor, scales computed per batch"
        )
        notes = [
            f"torchao {details['torchao_version']} PT2E with X86InductorQuantizer ({mode}) on the "
            f"{'exported module' if exported else 'torch.export program'}: "
            f"{len(details['quantized_layers'])} linear/conv weights int8 per channel, {activations}; "
            "run eagerly as quantize/dequantize around float kernels (int8 kernels need inductor)"
        ]
        return quantized, details, notes

    def _quantize_linear(self, model: Any) -> tuple[Any, dict[str, Any], list[str]]:
        import torch

        torchao = import_torchao()
        from torchao.quantization import (
            Int8DynamicActivationInt8WeightConfig,
            Int8WeightOnlyConfig,
            quantize_,
        )

        layers = require_linear_layers(model, self.name)
        config: Any = (
            Int8WeightOnlyConfig()
            if self.params.mode == "weight_only"
            else Int8DynamicActivationInt8WeightConfig()
        )
        model.eval()
        with torch.no_grad():
            quantize_(model, config)

        quantized: dict[str, dict[str, str]] = {}
        for name, layer in layers:
            weight = layer.weight
            qdata = getattr(weight, "qdata", None)
            if not is_quantized(weight) or qdata is None or qdata.dtype != torch.int8:
                # torchao may skip a layer it has no kernel for; a silent partial quantization
                # would make the variant's name lie, so it is an error.
                raise RunError(
                    f"{self.name}: torchao left Linear layer {name!r} as {type(weight).__name__} "
                    f"({getattr(qdata, 'dtype', weight.dtype)}), not int8"
                )
            quantized[name] = {
                "tensor": type(weight).__name__,
                "storage_dtype": str(qdata.dtype),
                "scale_shape": str(list(getattr(weight, "scale", torch.empty(0)).shape)),
            }
        notes = [
            f"torchao {torchao.__version__} {type(config).__name__}: {len(quantized)} Linear layers "
            "quantized to int8 (per-channel scales); biases stay float32"
        ]
        return model, {"method": "quantize_", "quantized_layers": quantized}, notes
