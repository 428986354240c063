"""torch.prune: L1-magnitude unstructured pruning of linear and conv weights (per layer or global),
or, with `structure: channels`, structured channel pruning (`harness.compression.torch.channel_prune`).

Works on an nn.Module (the weights of its nn.Linear and nn.Conv* layers) and on the GraphModule of
a torch.export program (the weight operands of its linear/conv ops, `program.graph_weights`). The
masks are torch.nn.utils.prune's L1Unstructured masks, the same k = round(amount * n) smallest
magnitudes, applied in place: the model keeps plain weight tensors with zeros in them and no masks
or forward hooks, so it exports as it is. Biases are left alone. The report gives the sparsity
actually reached, which can differ from `amount` by rounding.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from harness.compression.base import Recipe, RecipeContext, StepReport
from harness.compression.params import TorchPruneParams
from harness.compression.torch.channel_prune import prune_channels
from harness.compression.torch.program import attribute, graph_weights, is_graph_module, is_pt2e_quantized
from harness.compression.torch.stats import is_quantized, layer_modules, refuse_torchscript, sparsity_stats
from harness.errors import UserError

_BEFORE_INT8 = "put torch.prune before torch.int8 in the variant's steps"


class TorchPruneRecipe(Recipe):
    """Zero the smallest-magnitude linear/conv weights (`amount` of each layer, or of all together),
    or remove whole channels (`structure: channels`)."""

    name: ClassVar[str] = "torch.prune"
    framework: ClassVar[str] = "torch"
    params_model = TorchPruneParams
    params: TorchPruneParams

    def apply(self, model: Any, context: RecipeContext | None = None) -> tuple[Any, StepReport]:
        import torch
        from torch.nn.utils import prune

        if self.params.structure == "channels":
            return prune_channels(model, self.params, context, self.name)
        start = time.perf_counter()
        targets = prunable_weights(model, self.name)
        amount = self.params.amount
        with torch.no_grad():
            tensors = [weight for _, weight in targets]
            if self.params.scope == "global":
                flat = torch.cat([t.detach().abs().flatten() for t in tensors])
                mask = prune.L1Unstructured(amount).compute_mask(flat, torch.ones_like(flat))
                masks = [
                    m.view_as(t)
                    for m, t in zip(mask.split([t.numel() for t in tensors]), tensors, strict=True)
                ]
            else:
                masks = [
                    prune.L1Unstructured(amount).compute_mask(t.detach(), torch.ones_like(t)) for t in tensors
                ]
            for weight, mask in zip(tensors, masks, strict=True):
                weight.mul_(mask)
        seconds = time.perf_counter() - start

        stats = sparsity_stats(model)
        layers = {name: round(float((weight == 0).float().mean()), 6) for name, weight in targets}
        reached = stats["sparsity"]  # over the linear/conv weights: the ones just pruned
        kind = "program" if is_graph_module(model) else "module"
        notes = [
            f"{self.params.scope} L1 unstructured pruning of {len(targets)} linear/conv weights of the "
            f"{kind}, biases kept; requested {amount:.4g}, reached {reached:.4f} of those weights"
        ]
        return model, StepReport(
            recipe=self.name,
            params=self.params.model_dump(include={"amount", "scope", "structure"}),
            seconds=seconds,
            sparsity=reached,
            sparsity_all_params=stats["sparsity_all_params"],
            notes=notes,
            details={"layer_sparsity": layers},
        )


def prunable_weights(model: Any, recipe: str) -> list[tuple[str, Any]]:
    """(name, weight tensor) of every linear/conv weight `recipe` may prune; UserError saying why
    there are none, or why they cannot be pruned (quantized, TorchScript)."""
    from torch import nn

    refuse_torchscript(model, recipe)
    if is_graph_module(model):
        if is_pt2e_quantized(model):
            raise UserError(f"{recipe} cannot prune an int8 program; {_BEFORE_INT8}")
        found = [(w.name, attribute(model, w.target)) for w in graph_weights(model)]
        targets = [(name, t) for name, t in found if t.ndim >= 2 and t.is_floating_point()]
        where = "the torch.export program has no linear or conv op with a float weight"
    elif isinstance(model, nn.Module):
        targets = []
        for name, layer in layer_modules(model):
            if all(layer.weight is not t for _, t in targets):  # a weight tied between layers: once
                targets.append((f"{name}.weight" if name else "weight", layer.weight))
        where = f"{type(model).__name__} contains no nn.Linear or nn.Conv layer"
    else:
        raise UserError(f"{recipe} needs a torch module, got {type(model).__name__}")
    quantized = [name for name, t in targets if is_quantized(t)]
    if quantized:
        raise UserError(f"{recipe} cannot prune quantized weights ({', '.join(quantized)}); {_BEFORE_INT8}")
    if not targets:
        raise UserError(f"{recipe} needs linear or conv weights to prune, but {where}")
    return targets
