"""load_data on real files of every kind but images (test_data_images.py): shapes, dtypes, labels,
splits, subsets, fingerprints, and one-line errors naming the scenario, the data key and the file."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.data.loaders import load_data
from harness.models.digits import load_digits_split
from harness.scenario.applicability import has_train
from tests.unit.data_scenarios import IDS, MASK, data_scenario, load, load_error


def _token_file(path: Path, n: int, seed: int, **extra: np.ndarray) -> None:
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 1000, size=(n, 16), dtype=np.int64)
    mask = (rng.random((n, 16)) < 0.8).astype(np.int64)
    np.savez(path, ids=ids, mask=mask, y=np.arange(n, dtype=np.int64) % 3, **extra)


TOKENS = {"kind": "npz", "inputs": {"input_ids": "ids", "attention_mask": "mask"}, "labels": "y"}


# --- npz -------------------------------------------------------------------------------------------


def test_npz_two_named_int64_inputs_load_in_model_order_with_labels_and_file_hashes(tmp_path):
    _token_file(tmp_path / "test.npz", 30, seed=1)
    _token_file(tmp_path / "train.npz", 60, seed=2)
    data = load(tmp_path, {**TOKENS, "test": "test.npz", "train": "train.npz"}, inputs=[IDS, MASK])
    assert [s.describe() for s in data.inputs] == ["input_ids: int64[16]", "attention_mask: int64[16]"]
    assert data.test.inputs["input_ids"].dtype == np.int64
    assert data.test.inputs["attention_mask"].shape == (30, 16)
    assert len(data.train) == 60
    assert data.calibration is None
    with np.load(tmp_path / "test.npz") as raw:
        np.testing.assert_array_equal(data.test.inputs["input_ids"], raw["ids"])
        np.testing.assert_array_equal(data.test.labels, raw["y"])
    assert data.test.labels.dtype == np.int64
    assert data.num_classes == 3
    described = data.describe()
    digest = hashlib.sha256((tmp_path / "test.npz").read_bytes()).hexdigest()
    assert described["files"]["test"] == {"path": "test.npz", "sha256": digest}
    assert described["kind"] == "npz"
    assert described["train_examples"] == 60


def test_npz_split_placeholder_reads_train_and_test_arrays_of_one_file(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "mnist.npz",
        x_train=rng.random((20, 4, 4)),
        y_train=np.arange(20) % 10,
        x_test=rng.random((8, 4, 4)),
        y_test=np.arange(8) % 10,
    )
    spec = {
        "kind": "npz",
        "test": "mnist.npz",
        "train": "mnist.npz",
        "inputs": "x_{split}",
        "labels": "y_{split}",
    }
    data = load(tmp_path, spec)
    assert (len(data.test), len(data.train)) == (8, 20)
    assert data.inputs[0].name == "inputs"
    assert data.inputs[0].shape == (4, 4)
    assert data.x_test.dtype == np.float32, "float64 features are narrowed to float32"
    assert data.num_classes == 10


def test_npz_keeps_float64_when_model_inputs_declare_it(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.ones((5, 3)), y=np.zeros(5, dtype=np.int64))
    spec = {"kind": "npz", "test": "d.npz", "inputs": "x", "labels": "y"}
    data = load(tmp_path, spec, inputs=[{"name": "features", "shape": [3], "dtype": "float64"}])
    assert data.inputs[0].name == "features"
    assert data.x_test.dtype == np.float64


def test_split_is_stratified_seeded_and_disjoint(tmp_path):
    labels = np.repeat([0, 1, 2], [40, 40, 20])
    np.savez(tmp_path / "all.npz", x=np.arange(100, dtype=np.float32)[:, None], y=labels)
    spec = {"kind": "npz", "path": "all.npz", "inputs": "x", "labels": "y", "split": {"test_size": 0.25}}
    data = load(tmp_path, spec)
    assert np.bincount(data.y_test).tolist() == [10, 10, 5]
    assert np.bincount(data.y_train).tolist() == [30, 30, 15]
    rows = np.concatenate([data.x_test[:, 0], data.x_train[:, 0]])
    assert sorted(rows.tolist()) == list(range(100)), "test and train partition the file"
    again = load(tmp_path, spec)
    other = load(tmp_path, {**spec, "split": {"test_size": 0.25, "seed": 7}})
    assert again.fingerprint() == data.fingerprint() != other.fingerprint()
    assert data.describe()["split"] == {"test_size": 0.25, "seed": 0, "stratified": True}


def test_split_count_and_unstratified_split(tmp_path):
    np.savez(tmp_path / "all.npz", x=np.zeros((50, 2)), y=np.repeat([0, 1], [45, 5]))
    spec = {"kind": "npz", "path": "all.npz", "inputs": "x", "labels": "y"}
    data = load(tmp_path, {**spec, "split": {"test_size": 10, "stratify": False}})
    assert (len(data.test), len(data.train)) == (10, 40)
    assert "data.split.test_size: expected a test part of 1 to 49" in load_error(
        tmp_path, {**spec, "split": {"test_size": 50}}
    )


def test_max_examples_is_a_stratified_seeded_subsample_in_file_order(tmp_path):
    labels = np.repeat([0, 1, 2, 3], 25)  # sorted by class, as folders are read
    np.savez(tmp_path / "t.npz", x=np.arange(100)[:, None].astype(np.float32), y=labels)
    data = load(tmp_path, {"kind": "npz", "test": "t.npz", "inputs": "x", "labels": "y", "max_examples": 20})
    assert np.bincount(data.y_test).tolist() == [5, 5, 5, 5]
    assert np.all(np.diff(data.x_test[:, 0]) > 0), "rows stay in file order"
    assert data.describe()["max_examples"] == {"limit": 20, "of": 100, "stratified": True}


def test_calibration_count_is_drawn_from_train(tmp_path):
    np.savez(tmp_path / "all.npz", x=np.arange(200)[:, None].astype(np.float32), y=np.arange(200) % 2)
    spec = {"kind": "npz", "path": "all.npz", "inputs": "x", "labels": "y", "split": {}, "calibration": 32}
    data = load(tmp_path, spec)
    assert len(data.calibration) == 32
    assert data.calibration_split() is data.calibration
    assert set(data.calibration.inputs["inputs"][:, 0]) <= set(data.x_train[:, 0])
    assert np.bincount(data.calibration.labels).tolist() == [16, 16]
    assert "data.calibration: expected at most the 150 train examples, got 151" in load_error(
        tmp_path, {**spec, "calibration": 151}
    )


def test_fingerprint_changes_when_one_label_or_one_value_changes(tmp_path):
    x, y = np.zeros((10, 3), dtype=np.float32), np.arange(10) % 2
    one_label, one_value = y.copy(), x.copy()
    one_label[3] = 0
    one_value[2, 1] = 0.5
    spec = {"kind": "npz", "test": "d.npz", "inputs": "x", "labels": "y"}
    prints = []
    for xs, ys in ((x, y), (x, one_label), (one_value, y), (x, y)):
        np.savez(tmp_path / "d.npz", x=xs, y=ys)
        prints.append(load(tmp_path, spec).fingerprint())
    assert len(set(prints[:3])) == 3
    assert prints[3] == prints[0]


def test_regression_labels_are_float32_values(tmp_path):
    np.savez(tmp_path / "r.npz", x=np.ones((6, 2)), y=np.linspace(0, 1, 6))
    data = load(tmp_path, {"kind": "npz", "test": "r.npz", "inputs": "x", "labels": "y"}, task="regression")
    assert data.y_test.dtype == np.float32
    assert data.num_classes is None


@pytest.mark.parametrize(
    ("arrays", "spec", "expected"),
    [
        ({"x": np.ones((4, 2))}, {"labels": "y"}, "data.labels: expected an array 'y' in "),
        (
            {"x": np.ones((4, 2)), "y": np.arange(3)},
            {"labels": "y"},
            "data.labels: expected one label per example;",
        ),
        (
            {"ids": np.ones((4, 2)), "mask": np.ones((5, 2)), "y": np.arange(4)},
            {"inputs": {"a": "ids", "b": "mask"}, "labels": "y"},
            "data.inputs.b: expected every input with the same number of examples;",
        ),
        ({"x": np.ones((4, 2)), "y": np.array([0, 1, 0.5, 1])}, {"labels": "y"}, "whole class ids 0..K-1"),
        ({"x": np.ones((4, 2)), "y": np.array([0, 1, -1, 1])}, {"labels": "y"}, "class ids 0..K-1;"),
        (
            {"x": np.ones((4, 2)), "y": np.arange(4)},
            {"labels": "y", "num_classes": 3},
            "data.num_classes: expected",
        ),
        (
            {"x": np.ones((4, 2), dtype=np.int16), "y": np.arange(4)},
            {"labels": "y"},
            "data.inputs: expected one of",
        ),
    ],
)
def test_npz_load_errors_name_key_file_and_expectation(tmp_path, arrays, spec, expected):
    np.savez(tmp_path / "bad.npz", **arrays)
    message = load_error(tmp_path, {"kind": "npz", "test": "bad.npz", "inputs": "x", **spec})
    assert expected in message
    assert "bad.npz" in message or "num_classes" in message


def test_missing_or_unreadable_npz_is_named(tmp_path):
    spec = {"kind": "npz", "test": "nope.npz", "inputs": "x", "labels": "y"}
    assert "data.test: expected an .npz file;" in load_error(tmp_path, spec)
    (tmp_path / "nope.npz").write_text("not a zip")
    assert "data.test: expected an .npz file numpy can read;" in load_error(tmp_path, spec)


def test_shape_other_than_model_inputs_declare_is_refused(tmp_path):
    _token_file(tmp_path / "t.npz", 5, seed=0)
    message = load_error(tmp_path, {**TOKENS, "test": "t.npz"}, inputs=[{**IDS, "shape": [8]}, MASK])
    assert "data.inputs.input_ids: expected examples of shape [8] for input 'input_ids'" in message


# --- table -----------------------------------------------------------------------------------------


def _iris_like(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    species = np.array(["virginica", "setosa", "versicolor"])[np.arange(n) % 3]
    return pd.DataFrame(
        {"sepal": rng.random(n), "petal": rng.random(n), "count": np.arange(n), "species": species}
    )


def test_csv_string_labels_become_sorted_ids_recorded_for_the_report(tmp_path):
    _iris_like(12, 0).to_csv(tmp_path / "iris.csv", index=False)
    data = load(tmp_path, {"kind": "table", "test": "iris.csv", "labels": "species"})
    assert data.inputs[0].shape == (3,)
    assert data.x_test.dtype == np.float32
    assert data.y_test[:3].tolist() == [2, 0, 1]  # virginica, setosa, versicolor
    assert data.describe()["classes"] == ["setosa", "versicolor", "virginica"]
    assert data.num_classes == 3


def test_parquet_with_named_input_columns_declared_dtype_and_train_file(tmp_path):
    _iris_like(30, 1).to_parquet(tmp_path / "train.parquet")
    _iris_like(9, 2).iloc[:6].to_parquet(tmp_path / "test.pq")  # only two species in test
    spec = {
        "kind": "table",
        "test": "test.pq",
        "train": "train.parquet",
        "inputs": {"measures": ["sepal", "petal"], "counts": ["count"]},
        "labels": "species",
        "dtype": "float32",
        "num_classes": 4,
    }
    data = load(tmp_path, spec)
    assert [s.describe() for s in data.inputs] == ["measures: float32[2]", "counts: float32[1]"]
    assert len(data.train) == 30
    assert data.num_classes == 4
    assert data.describe()["classes"] == ["setosa", "versicolor", "virginica"], "ids agree across splits"


def test_table_calibration_file_may_lack_the_label_column(tmp_path):
    _iris_like(12, 0).to_csv(tmp_path / "t.csv", index=False)
    _iris_like(6, 3).drop(columns="species").to_csv(tmp_path / "calib.csv", index=False)
    spec = {"kind": "table", "test": "t.csv", "calibration": "calib.csv", "labels": "species"}
    data = load(tmp_path, spec)
    assert len(data.calibration) == 6
    assert data.calibration.labels is None


@pytest.mark.parametrize(
    ("frame", "spec", "expected"),
    [
        (pd.DataFrame({"a": [1.0, 2.0]}), {"labels": "label"}, "data.labels: expected a column 'label' in"),
        (pd.DataFrame({"a": ["x", "y"], "label": [0, 1]}), {"labels": "label"}, "column 'a' of"),
        (pd.DataFrame({"a": [1.0, None], "label": [0, 1]}), {"labels": "label"}, "column 'a' of"),
        (
            pd.DataFrame({"a": [1.0, 2.0], "label": [0, 1]}),
            {"inputs": ["b"], "labels": "label"},
            "column 'b'",
        ),
        (pd.DataFrame({"label": [0, 1]}), {"labels": "label"}, "data.inputs: expected feature columns in"),
    ],
)
def test_table_errors_name_the_column_and_the_file(tmp_path, frame, spec, expected):
    frame.to_csv(tmp_path / "bad.csv", index=False)
    message = load_error(tmp_path, {"kind": "table", "test": "bad.csv", **spec})
    assert expected in message
    assert "bad.csv" in message


# --- python ----------------------------------------------------------------------------------------


def _module(tmp_path: Path, name: str, body: str) -> None:
    (tmp_path / f"{name}.py").write_text("import numpy as np\n\n" + body)


def test_python_function_returning_arrays_is_split_and_sys_path_is_restored(tmp_path):
    _module(
        tmp_path,
        "arrays_source",
        "def load():\n"
        "    x = np.arange(40, dtype=np.float32).reshape(20, 2)\n"
        "    return x, np.arange(20) % 2\n",
    )
    before = list(sys.path)
    spec = {"kind": "python", "function": "arrays_source:load", "split": {"test_size": 5}}
    data = load(tmp_path, spec)
    assert sys.path == before
    assert (len(data.test), len(data.train)) == (5, 15)
    assert data.num_classes == 2
    assert data.describe()["function"] == "arrays_source:load"
    assert (
        data.describe()["sha256"] == hashlib.sha256((tmp_path / "arrays_source.py").read_bytes()).hexdigest()
    )
    assert has_train(data_scenario(tmp_path, spec).data)


def test_python_function_returning_named_splits_with_named_inputs(tmp_path):
    _module(
        tmp_path,
        "splits_source",
        "def load():\n"
        "    def part(n):\n"
        "        return {'a': np.ones((n, 3)), 'b': np.zeros((n, 2), dtype=np.int64)}\n"
        "    return {'test': (part(4), ['cat', 'dog', 'cat', 'dog']),\n"
        "            'train': (part(6), ['dog'] * 6), 'calibration': part(3)}\n",
    )
    data = load(tmp_path, {"kind": "python", "function": "splits_source:load"})
    assert [s.describe() for s in data.inputs] == ["a: float32[3]", "b: int64[2]"]
    assert (len(data.test), len(data.train), len(data.calibration)) == (4, 6, 3)
    assert data.y_train.tolist() == [1] * 6
    assert data.calibration.labels is None
    assert data.describe()["classes"] == ["cat", "dog"]


def test_python_modules_of_one_name_in_two_scenario_folders_are_each_their_own(tmp_path):
    for folder, rows in (("first", 3), ("second", 5)):
        (tmp_path / folder).mkdir()
        _module(tmp_path / folder, "same_name_source", f"def load():\n    return np.ones(({rows}, 2))\n")
    spec = {"kind": "python", "function": "same_name_source:load"}
    assert len(load(tmp_path / "first", spec).test) == 3
    assert len(load(tmp_path / "second", spec).test) == 5


def test_python_unlabelled_arrays_are_test_only(tmp_path):
    _module(tmp_path, "bare_source", "def load():\n    return np.ones((7, 5))\n")
    data = load(tmp_path, {"kind": "python", "function": "bare_source:load"})
    assert not data.labelled
    assert data.train is None
    assert data.num_classes is None


@pytest.mark.parametrize(
    ("body", "function", "expected"),
    [
        ("", "absent_module:load", "data.function: no module named 'absent_module' in"),
        ("raise RuntimeError('boom')\n", "broken_import:load", "RuntimeError: boom"),
        ("", "no_function:load", "data.function: module 'no_function' ("),
        (
            "def load():\n    raise ValueError('no data here')\n",
            "raising:load",
            "data.function: raising:load raised ValueError: no data here",
        ),
        ("def load():\n    return {'train': np.ones((2, 2))}\n", "no_test:load", "a 'test' entry"),
        ("def load():\n    return np.ones((3, 2)), [0, 1]\n", "short:load", "one label per example"),
    ],
)
def test_python_errors_name_the_function(tmp_path, body, function, expected):
    if not function.startswith("absent"):
        _module(tmp_path, function.split(":")[0], body)
    assert expected in load_error(tmp_path, {"kind": "python", "function": function})


# --- synthetic, digits, has_train --------------------------------------------------------------------


def test_synthetic_follows_model_inputs_is_seeded_and_unlabelled(tmp_path):
    spec = {"kind": "synthetic", "examples": 64, "calibration": 8}
    data = load(tmp_path, spec, inputs=[IDS, {"name": "pixels", "shape": [4, 4], "dtype": "uint8"}])
    assert [s.describe() for s in data.inputs] == ["input_ids: int64[16]", "pixels: uint8[4, 4]"]
    assert len(data.test) == 64
    assert len(data.calibration) == 8
    assert data.train is None
    assert not data.labelled
    assert data.num_classes is None
    assert data.test.inputs["input_ids"].min() >= 0
    assert data.test.inputs["input_ids"].max() <= 9
    no_calibration = load(
        tmp_path, {"kind": "synthetic", "examples": 64}, inputs=[IDS, {**MASK, "name": "pixels"}]
    )
    assert np.array_equal(no_calibration.test.inputs["input_ids"], data.test.inputs["input_ids"])
    assert (
        load(tmp_path, spec, inputs=[IDS]).fingerprint() == load(tmp_path, spec, inputs=[IDS]).fingerprint()
    )


def test_synthetic_declared_inputs_and_ranges(tmp_path):
    spec = {
        "kind": "synthetic",
        "examples": 100,
        "inputs": [
            {"name": "x", "shape": [3], "low": -2, "high": 2},
            {"name": "flag", "shape": [1], "dtype": "bool"},
            {"name": "tok", "shape": [2], "dtype": "int32", "low": 5, "high": 8},
        ],
    }
    data = load(tmp_path, spec)
    x, tok = data.test.inputs["x"], data.test.inputs["tok"]
    assert x.dtype == np.float32
    assert -2 <= x.min() < x.max() < 2
    assert data.test.inputs["flag"].dtype == np.bool_
    assert tok.dtype == np.int32
    assert set(np.unique(tok)) <= {5, 6, 7}
    assert "data.inputs: expected the inputs to generate" in load_error(tmp_path, {"kind": "synthetic"})


def test_no_data_block_is_the_digits_split_of_model_seed(tmp_path):
    assert load_data(data_scenario(tmp_path, None, seed=3), tmp_path) is load_digits_split(3)
    assert load_data(data_scenario(tmp_path, None, dataset="digits"), tmp_path) is load_digits_split(0)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (None, True),
        ({"kind": "npz", "test": "t.npz", "inputs": "x", "labels": "y"}, False),
        ({"kind": "npz", "test": "t.npz", "train": "r.npz", "inputs": "x", "labels": "y"}, True),
        ({"kind": "table", "path": "t.csv", "labels": "y", "split": {}}, True),
        ({"kind": "images", "test": "imgs"}, False),
        ({"kind": "synthetic"}, False),
        ({"kind": "python", "function": "m:f"}, True),
    ],
)
def test_has_train_tells_without_loading(tmp_path, data, expected):
    assert has_train(data_scenario(tmp_path, data).data) is expected
