"""Parameter models of every built-in recipe: pydantic, extra="forbid", every field described.

Importable without torch, so `harness validate` checks recipe params in milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.errors import UserError


class RecipeParams(BaseModel):
    """Base of all recipe parameter models: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TorchPruneParams(RecipeParams):
    """torch.prune: L1-magnitude unstructured pruning of nn.Linear weights, made permanent."""

    amount: float = Field(
        gt=0.0, lt=1.0, description="Fraction of Linear weights set to zero, strictly between 0 and 1."
    )
    scope: Literal["layer", "global"] = Field(
        default="layer",
        description="'layer': prune `amount` of each Linear layer's weights; 'global': prune the "
        "`amount` smallest weights across all Linear layers together (layers end up unevenly sparse).",
    )


class TorchInt8Params(RecipeParams):
    """torch.int8: torchao int8 quantization of nn.Linear layers (CPU)."""

    mode: Literal["weight_only", "dynamic"] = Field(
        default="weight_only",
        description="'weight_only': int8 weights, float activations (torchao Int8WeightOnlyConfig); "
        "'dynamic': int8 weights, activations quantized to int8 per batch at run time "
        "(Int8DynamicActivationInt8WeightConfig).",
    )


PARAMS: dict[str, type[RecipeParams]] = {
    "torch.prune": TorchPruneParams,
    "torch.int8": TorchInt8Params,
}

# Recipes that cannot run after another one in the same variant, and why.
_NOT_AFTER: dict[tuple[str, str], str] = {
    ("torch.prune", "torch.int8"): "prune first: pruning needs float weights, not quantized ones",
    ("torch.int8", "torch.int8"): "the weights are already quantized",
}


def params_model(recipe: str) -> type[BaseModel]:
    """The parameter model of `recipe`; UserError naming the known recipes if there is none."""
    try:
        return PARAMS[recipe]
    except KeyError:
        pass
    from harness.compression import RECIPES

    if recipe in RECIPES:  # a plugin recipe: its class carries its own params model
        model = getattr(RECIPES.resolve(recipe), "params_model", None)
        if isinstance(model, type) and issubclass(model, BaseModel):
            return model
        raise UserError(f"recipe {recipe!r} ({RECIPES.target(recipe)}) declares no params_model")
    raise UserError(f"unknown recipe {recipe!r}; expected one of: {', '.join(RECIPES.names())}")


def validate_step_params(recipe: str, params: Mapping[str, Any]) -> BaseModel:
    """Validated params of one step. Raises pydantic ValidationError for bad values or unknown keys
    (the caller names the file and key) and UserError for an unknown recipe."""
    return params_model(recipe).model_validate(dict(params))


def check_step_order(recipes: list[str]) -> None:
    """UserError if a step cannot follow an earlier one of the same variant (e.g. prune after int8)."""
    for j, later in enumerate(recipes):
        for i, earlier in enumerate(recipes[:j]):
            reason = _NOT_AFTER.get((later, earlier))
            if reason:
                raise UserError(f"steps[{j}] {later} cannot come after steps[{i}] {earlier}: {reason}")
