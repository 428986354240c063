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
