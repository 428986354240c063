"""Defect 21: the defaults the README documents are the schema's defaults, so they cannot drift."""

from __future__ import annotations

import re
from typing import Any

import yaml
from pydantic import BaseModel

from harness.scenario.load_spec import LoadSpec
from harness.scenario.schema import GatePolicySpec
from tests.conftest import ROOT

README = ROOT / "README.md"


def _defaults_block() -> dict[str, Any]:
    """The YAML block that follows the README's "(defaults shown" sentence."""
    text = README.read_text()
    marker = text.index("(defaults shown")
    block = re.search(r"```yaml\n(.*?)```", text[marker:], re.DOTALL)
    assert block, "no yaml block after the README's defaults sentence"
    return yaml.safe_load(block.group(1))


def _differences(documented: dict[str, Any], model: BaseModel, where: str) -> list[str]:
    out = []
    for key, value in documented.items():
        assert key in type(model).model_fields, f"README documents {where}{key}, which the schema lacks"
        actual = getattr(model, key)
        if isinstance(actual, BaseModel) and isinstance(value, dict):
            out += _differences(value, actual, f"{where}{key}.")
        elif value != actual:
            out.append(f"{where}{key}: README says {value!r}, schema default is {actual!r}")
    return out


def test_readme_documented_defaults_match_the_schema():
    documented = _defaults_block()
    assert set(documented) == {"load", "gate_policy"}
    problems = _differences(documented["load"], LoadSpec(), "load.") + _differences(
        documented["gate_policy"], GatePolicySpec(), "gate_policy."
    )
    assert problems == []


def test_readme_default_users_is_the_schema_default():
    assert _defaults_block()["load"]["users"] == LoadSpec().users == 2


def _readme_section(title: str) -> str:
    text = README.read_text()
    start = text.index(title)
    return text[start : text.index("\n## ", start)]


# README column of the applicability table -> the source kinds it stands for
_COLUMNS = [
    ("builtin", "python"),
    ("torch.export",),
    ("torchscript",),
    ("keras", "h5", "savedmodel-keras"),
    ("savedmodel",),
]


def test_readme_recipe_table_is_the_validate_rule_table():
    from harness.scenario.applicability import ACCEPTS

    rows = [
        line
        for line in _readme_section("## Your own model, your own data").splitlines()
        if line.startswith("| `torch.") or line.startswith("| `tf.")
    ]
    documented: dict[str, set[str]] = {}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        recipes = re.findall(r"`([a-z]+\.[a-z0-9]+)`", cells[0])
        accepted = {
            kind
            for cell, kinds in zip(cells[1:], _COLUMNS, strict=True)
            if cell and not cell.startswith("no")
            for kind in kinds
        }
        for recipe in recipes:
            documented[recipe] = accepted
    assert documented == {recipe: set(kinds) for recipe, kinds in ACCEPTS.items()}


def test_readme_states_the_binary_encoding_threshold_the_code_uses():
    from harness.serving.wire import LARGE_EXAMPLE_NUMBERS

    assert f"more than {LARGE_EXAMPLE_NUMBERS:,} numbers" in _readme_section(
        "## Your own model, your own data"
    )


def test_readme_mobilenet_defaults_are_the_schema_and_model_defaults():
    from harness.models.tf_mobilenet import DEFAULT_EPOCHS as TF_EPOCHS
    from harness.models.torch_mobilenet import DEFAULT_EPOCHS as TORCH_EPOCHS
    from harness.scenario.schema import BuiltinOptions

    section = _readme_section("## The image-classifier case study")
    block = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert block, "no yaml block in the case study section"
    documented = yaml.safe_load(block.group(1))["model"]["builtin"]
    assert _differences(documented, BuiltinOptions(), "model.builtin.") == []
    # the epochs the built-ins train for when the scenario gives none, stated in the block's comment
    stated = re.search(r"epochs: null +# the built-in's own: (\d+)", block.group(1))
    assert stated, "the README no longer states the built-ins' default epochs"
    assert int(stated.group(1)) == TORCH_EPOCHS == TF_EPOCHS
