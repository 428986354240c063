"""A minimal scenario around a `data:` block, loaded (load_data) or checked (check_data), for the
data tests, and the one-line error naming the scenario file and the data key they expect."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.data.checks import check_data
from harness.data.dataset import Dataset
from harness.data.loaders import load_data
from harness.errors import UserError
from harness.scenario.messages import validated
from harness.scenario.schema import Scenario

SCENARIO_FILE = "scenario.yaml"
# two int64 token inputs, as a text model declares them under model.inputs
IDS = {"name": "input_ids", "shape": [16], "dtype": "int64"}
MASK = {"name": "attention_mask", "shape": [16], "dtype": "int64"}


def data_scenario(tmp_path: Path, data: dict[str, Any] | None, **model: Any) -> Scenario:
    """A valid scenario in tmp_path with this `data:` block (none: the default) and model fields."""
    raw: dict[str, Any] = {
        "name": "t",
        "model": {"framework": "torch", "source": "builtin:mlp", **model},
        "serving": {"target": "inprocess"},
    }
    if data is not None:
        raw["data"] = data
    return validated(Scenario, raw, tmp_path / SCENARIO_FILE)


def load(tmp_path: Path, data: dict[str, Any], **model: Any) -> Dataset:
    """load_data on the scenario; its description must be JSON as it is (the report and results take it)."""
    scenario_file = tmp_path / SCENARIO_FILE
    dataset = load_data(data_scenario(tmp_path, data, **model), tmp_path, scenario_file=scenario_file)
    json.dumps(dataset.describe())
    return dataset


def check(tmp_path: Path, data: dict[str, Any] | None, **model: Any) -> None:
    """check_data on the scenario: what `harness validate` finds without loading the data."""
    check_data(data_scenario(tmp_path, data, **model), tmp_path / SCENARIO_FILE)


def load_error(tmp_path: Path, data: dict[str, Any], **model: Any) -> str:
    """The UserError message load_data raises: one line, naming the scenario file and `data.`."""
    return _one_line_error(tmp_path, load, data, **model)


def check_error(tmp_path: Path, data: dict[str, Any], **model: Any) -> str:
    """The UserError message check_data raises: one line, naming the scenario file and `data.`."""
    return _one_line_error(tmp_path, check, data, **model)


def _one_line_error(tmp_path: Path, run: Callable[..., object], data: dict[str, Any], **model: Any) -> str:
    with pytest.raises(UserError) as info:
        run(tmp_path, data, **model)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path / SCENARIO_FILE}: data.")
    return message
