"""Every registry entry imports and is the kind of thing its registry promises."""

from __future__ import annotations

import pytest

from harness.compression import RECIPES
from harness.compression.base import Recipe
from harness.compression.params import PARAMS
from harness.errors import UserError
from harness.frameworks import FRAMEWORKS
from harness.serving.base import Target
from harness.serving.registry import TARGETS


@pytest.mark.parametrize("name", RECIPES.names())
def test_recipe_entry_resolves_to_a_recipe_with_its_params_model(name: str) -> None:
    cls = RECIPES.resolve(name)
    assert issubclass(cls, Recipe)
    assert cls.name == name
    assert [spec.name for spec in FRAMEWORKS.values() if spec.owns_recipe(name)] == [cls.framework]
    assert cls.params_model is PARAMS[name]


@pytest.mark.parametrize("name", TARGETS.names())
def test_target_entry_resolves_to_a_target_named_like_its_entry(name: str) -> None:
    cls = TARGETS.resolve(name)
    assert issubclass(cls, Target)
    assert cls.name == name


def test_builtin_entries_are_registered() -> None:
    assert {"torch.prune", "torch.int8"} <= set(RECIPES.names())
    assert {"torchserve", "inprocess"} <= set(TARGETS.names())


@pytest.mark.parametrize("registry", [RECIPES, TARGETS])
def test_unknown_name_is_a_user_error_listing_known_names(registry) -> None:
    with pytest.raises(UserError, match="expected one of"):
        registry.resolve("no-such-entry")
