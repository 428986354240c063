"""torch.int8: torchao int8 quantization of nn.Linear layers, on CPU.

`weight_only` stores int8 weights with per-channel scales and computes in float
(Int8WeightOnlyConfig); `dynamic` also quantizes activations to int8 per batch at run time
(Int8DynamicActivationInt8WeightConfig). torch.ao.quantization is deprecated in torch 2.13, so
torchao is the supported path. Quantized weights become torchao tensor subclasses (Int8Tensor);
they export to .pt2 correctly but are silently wrong under torch.jit.script, hence .pt2 only.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from harness.compression.base import Recipe, RecipeContext, StepReport
from harness.compression.params import TorchInt8Params
from harness.compression.torch.quiet_import import import_torchao
from harness.compression.torch.stats import is_quantized, require_linear_layers, sparsity_stats
from harness.errors import RunError, UserError


class TorchInt8Recipe(Recipe):
    """Quantize every nn.Linear weight to int8 with torchao's `quantize_`."""

    name: ClassVar[str] = "torch.int8"
    framework: ClassVar[str] = "torch"
    params_model = TorchInt8Params
    params: TorchInt8Params

    def apply(self, model: Any, context: RecipeContext | None = None) -> tuple[Any, StepReport]:
        import torch

        torchao = import_torchao()
        from torchao.quantization import (
            Int8DynamicActivationInt8WeightConfig,
            Int8WeightOnlyConfig,
            quantize_,
        )

        start = time.perf_counter()
        layers = require_linear_layers(model, self.name)
        if any(is_quantized(layer.weight) for _, layer in layers):
            raise UserError(f"{self.name}: the Linear weights are already quantized (torch.int8 twice?)")
        config: Any = (
            Int8WeightOnlyConfig()
            if self.params.mode == "weight_only"
            else Int8DynamicActivationInt8WeightConfig()
        )
        model.eval()
        with torch.no_grad():
            quantize_(model, config)
        seconds = time.perf_counter() - start

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
        stats = sparsity_stats(model)
        return model, StepReport(
            recipe=self.name,
            params=self.params.model_dump(),
            seconds=seconds,
            sparsity=stats["sparsity"],
            sparsity_all_params=stats["sparsity_all_params"],
            notes=[
                f"torchao {torchao.__version__} {type(config).__name__}: {len(quantized)} Linear layers "
                "quantized to int8 (per-channel scales); biases stay float32"
            ],
            details={"quantized_layers": quantized},
        )
