"""The data: block's schema: one branch per kind, errors at data.<key> saying what is expected."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.errors import UserError
from harness.scenario.data_spec import DATA_KINDS, ImagesSpec, NpzSpec, SplitSpec, SyntheticSpec
from harness.scenario.messages import validated
from harness.scenario.schema import Scenario

PATH = Path("scenario.yaml")


def _scenario(data: dict[str, Any] | str, **model: Any) -> Scenario:
    raw = {
        "name": "t",
        "model": {"framework": "torch", "source": "builtin:mlp", **model},
        "serving": {"target": "inprocess"},
        "data": data,
    }
    return validated(Scenario, raw, PATH)


def _error(data: dict[str, Any] | str, **model: Any) -> str:
    with pytest.raises(UserError) as info:
        _scenario(data, **model)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{PATH}: data")
    return message


NPZ = {"kind": "npz", "test": "test.npz", "inputs": "x", "labels": "y"}


def test_each_kind_validates_into_its_own_model():
    assert isinstance(_scenario(NPZ).data, NpzSpec)
    assert isinstance(_scenario({"kind": "images", "test": "imgs"}).data, ImagesSpec)
    assert isinstance(_scenario({"kind": "synthetic"}).data, SyntheticSpec)
    assert _scenario({"kind": "python", "function": "pkg.mod:load"}).data.kind == "python"
    table = _scenario({"kind": "table", "path": "t.csv", "labels": "y", "split": {}}).data
    assert table.split == SplitSpec(test_size=0.25, seed=None, stratify=True)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"kind": "nope"}, "data.kind: expected one of npz, table, images, python, synthetic (got 'nope')"),
        ({"test": "a.npz"}, "data.kind: required key is missing"),
        ({**NPZ, "bogus": 1}, "data.bogus: unknown key"),
        ({"kind": "npz", "test": "a.npz", "inputs": "x"}, "data.labels: required key is missing"),
        (
            {"kind": "npz", "inputs": "x", "labels": "y"},
            "data.test: expected a test file or folder, or data.path",
        ),
        ({**NPZ, "test": None, "path": "a.npz"}, "data.split: expected a split: {test_size, seed, stratify}"),
        (
            {**NPZ, "path": "a.npz", "split": {}},
            "data.test: expected no data.test or data.train with data.path",
        ),
        ({**NPZ, "split": {}}, "data.split: expected data.split only with data.path"),
        ({**NPZ, "calibration": 10}, "data.calibration: expected a file when there is no train split"),
        ({**NPZ, "calibration": True}, "data.calibration"),
        ({**NPZ, "max_examples": 0}, "data.max_examples: expected greater than or equal to 1 (got 0)"),
        ({**NPZ, "classes": ["a", "a"]}, "data.classes: expected distinct class names"),
        ({**NPZ, "classes": ["a", "b"], "num_classes": 3}, "data.num_classes: expected 2, the length of"),
        (
            {**NPZ, "test": None, "path": "a.npz", "split": {}, "inputs": "x_{split}"},
            "data.inputs: expected array names without {split} with data.path (got 'x_{split}')",
        ),
        ({"kind": "images", "test": "f", "dtype": "uint8"}, "data.scale: expected raw and no mean/std"),
        (
            {"kind": "images", "test": "f", "mean": [0.5, 0.5]},
            "data.mean: expected 1 or 3 values for color rgb",
        ),
        (
            {"kind": "images", "test": "f", "size": [0, 4]},
            "data.size[0]: expected greater than or equal to 1",
        ),
        ({"kind": "python", "function": "pkg.mod"}, "data.function: expected 'pkg.module:function'"),
        ({"kind": "synthetic", "examples": 10**9}, "data.examples: expected less than or equal to 1000000"),
        (
            {"kind": "synthetic", "inputs": [{"name": "x", "shape": [3], "low": 2, "high": 1}]},
            "data.inputs[0].high: expected a value greater than low (2) (got 1)",
        ),
        ("npz", "data: expected a valid dictionary"),
    ],
)
def test_bad_block_is_one_line_at_its_data_key(data, expected):
    assert expected in _error(data)


@pytest.mark.parametrize("test_size", [0, 1.0, 1.5, -3, True, "0.2"])
def test_split_test_size_is_a_fraction_or_a_count(test_size):
    message = _error({**NPZ, "test": None, "path": "a.npz", "split": {"test_size": test_size}})
    assert "data.split.test_size: expected a fraction between 0 and 1 (exclusive) or a count" in message


def test_split_test_size_keeps_a_count_an_int_and_a_fraction_a_float():
    count = _scenario({**NPZ, "test": None, "path": "a.npz", "split": {"test_size": 30}}).data
    fraction = _scenario({**NPZ, "test": None, "path": "a.npz", "split": {"test_size": 0.3}}).data
    assert count.split.test_size == 30
    assert isinstance(count.split.test_size, int)
    assert fraction.split.test_size == 0.3


def test_json_schema_offers_one_branch_per_kind_with_every_key_described():
    schema = Scenario.model_json_schema()
    union = schema["properties"]["data"]["anyOf"][0]
    assert sorted(union["discriminator"]["mapping"]) == sorted(DATA_KINDS)
    for name, definition in schema["$defs"].items():
        for key, prop in definition.get("properties", {}).items():
            assert prop.get("description"), f"{name}.{key} has no description"
    test_size = schema["$defs"]["SplitSpec"]["properties"]["test_size"]
    assert {branch["type"] for branch in test_size["anyOf"]} == {"integer", "number"}
