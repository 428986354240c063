"""Recipe parameter models: validated without torch, unknown keys and bad values rejected."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from harness.compression import RECIPES
from harness.compression.params import (
    PARAMS,
    TorchInt8Params,
    TorchPruneParams,
    check_step_order,
    validate_step_params,
)
from harness.errors import UserError
from tests.conftest import ROOT


def test_prune_params_accept_amount_and_scope() -> None:
    params = validate_step_params("torch.prune", {"amount": 0.5, "scope": "global"})
    assert params == TorchPruneParams(amount=0.5, scope="global")


def test_prune_scope_defaults_to_layer() -> None:
    assert validate_step_params("torch.prune", {"amount": 0.3}).scope == "layer"  # type: ignore[attr-defined]


@pytest.mark.parametrize("amount", [0, 1, 1.5, -0.1, "half"])
def test_prune_rejects_amount_outside_open_unit_interval(amount: object) -> None:
    with pytest.raises(ValidationError) as info:
        validate_step_params("torch.prune", {"amount": amount})
    assert info.value.errors()[0]["loc"] == ("amount",)


def test_prune_requires_amount() -> None:
    with pytest.raises(ValidationError) as info:
        validate_step_params("torch.prune", {"scope": "layer"})
    assert info.value.errors()[0]["type"] == "missing"


def test_prune_rejects_unknown_scope() -> None:
    with pytest.raises(ValidationError) as info:
        validate_step_params("torch.prune", {"amount": 0.5, "scope": "channel"})
    assert info.value.errors()[0]["loc"] == ("scope",)


@pytest.mark.parametrize("recipe", ["torch.prune", "torch.int8"])
def test_unknown_key_is_rejected(recipe: str) -> None:
    base = {"amount": 0.5} if recipe == "torch.prune" else {}
    with pytest.raises(ValidationError) as info:
        validate_step_params(recipe, {**base, "amout": 0.5})
    error = info.value.errors()[0]
    assert error["type"] == "extra_forbidden"
    assert error["loc"] == ("amout",)


def test_int8_mode_defaults_to_weight_only_and_rejects_other_modes() -> None:
    assert validate_step_params("torch.int8", {}) == TorchInt8Params(mode="weight_only")
    assert validate_step_params("torch.int8", {"mode": "dynamic"}) == TorchInt8Params(mode="dynamic")
    with pytest.raises(ValidationError):
        validate_step_params("torch.int8", {"mode": "int4"})


def test_unknown_recipe_is_a_user_error_listing_known_recipes() -> None:
    with pytest.raises(UserError, match=r"unknown recipe 'torch\.prnue'.*torch\.int8.*torch\.prune"):
        validate_step_params("torch.prnue", {})


def test_every_recipe_has_a_params_model_with_described_fields() -> None:
    assert set(PARAMS) == set(RECIPES.names())
    for name, model in PARAMS.items():
        assert model.model_config.get("extra") == "forbid", name
        for field_name, field in model.model_fields.items():
            assert field.description, f"{name}.{field_name} has no description"


def test_prune_after_int8_is_rejected_but_prune_then_int8_is_fine() -> None:
    check_step_order(["torch.prune", "torch.int8"])
    with pytest.raises(UserError, match=r"steps\[1\] torch\.prune cannot come after steps\[0\] torch\.int8"):
        check_step_order(["torch.int8", "torch.prune"])
    with pytest.raises(UserError, match="already quantized"):
        check_step_order(["torch.int8", "torch.int8"])


def test_params_validation_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from harness.compression.params import validate_step_params\n"
        "from harness.compression import RECIPES\n"
        "validate_step_params('torch.prune', {'amount': 0.5}); RECIPES.names()\n"
        "heavy = sorted(m for m in ('torch', 'torchao', 'tensorflow') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60)


@pytest.mark.parametrize(
    ("recipe", "params", "key"),
    [
        ("torch.prune", {"amount": True}, "amount"),
        ("tf.ptq", {"mode": "int8", "calibration_samples": 10**9}, "calibration_samples"),
        ("tf.distill", {"batch_size": True}, "batch_size"),
        ("tf.distill", {"temperature": float("inf")}, "temperature"),
        ("tf.distill", {"student_hidden": [10**9]}, "student_hidden"),
        ("tf.prune", {"target_sparsity": 0.5, "end_step": 10**12}, "end_step"),
    ],
)
def test_params_refuse_booleans_infinities_and_unbounded_sizes(recipe: str, params: dict, key: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate_step_params(recipe, params)
    assert info.value.errors()[0]["loc"][0] == key
