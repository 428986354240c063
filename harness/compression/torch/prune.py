"""torch.prune: L1-magnitude unstructured pruning of nn.Linear weights (per layer or global).

Uses torch.nn.utils.prune and makes the result permanent (prune.remove), so the exported file
holds plain weight tensors with zeros in them and no masks or forward hooks. Biases are left
alone. The report gives the sparsity actually reached, which can differ from `amount` by rounding.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from harness.compression.base import Recipe, RecipeContext, StepReport
from harness.compression.params import TorchPruneParams
from harness.compression.torch.stats import is_quantized, require_linear_layers, sparsity_stats
from harness.errors import UserError


class TorchPruneRecipe(Recipe):
    """Zero the smallest-magnitude Linear weights: `amount` of each layer, or of all layers together."""

    name: ClassVar[str] = "torch.prune"
    framework: ClassVar[str] = "torch"
    params_model = TorchPruneParams
    params: TorchPruneParams

    def apply(self, model: Any, context: RecipeContext | None = None) -> tuple[Any, StepReport]:
        import torch
        from torch.nn.utils import prune

        start = time.perf_counter()
        layers = require_linear_layers(model, self.name)
        quantized = [name for name, layer in layers if is_quantized(layer.weight)]
        if quantized:
            raise UserError(
                f"{self.name} cannot prune quantized weights ({', '.join(quantized)}); put torch.prune "
                "before torch.int8 in the variant's steps"
            )
        targets = [(layer, "weight") for _, layer in layers]
        amount = self.params.amount
        with torch.no_grad():
            if self.params.scope == "global":
                prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=amount)
            else:
                for layer, attr in targets:
                    prune.l1_unstructured(layer, name=attr, amount=amount)
            for layer, attr in targets:
                prune.remove(layer, attr)  # bake the mask into the weight: no weight_orig/mask left
        seconds = time.perf_counter() - start

        stats = sparsity_stats(model)
        linear = {name: stats["per_tensor"].get(f"{name}.weight" if name else "weight") for name, _ in layers}
        notes = [
            f"{self.params.scope} L1 unstructured pruning of {len(layers)} Linear layers, biases kept; "
            f"requested {amount:.4g}, reached {stats['sparsity']:.4f} of Linear weights"
        ]
        return model, StepReport(
            recipe=self.name,
            params=self.params.model_dump(),
            seconds=seconds,
            sparsity=stats["sparsity"],
            sparsity_all_params=stats["sparsity_all_params"],
            notes=notes,
            details={"layer_sparsity": linear},
        )
