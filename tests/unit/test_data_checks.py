"""check_data: what `harness validate` finds about the data without loading it or running user code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.unit.data_scenarios import IDS, MASK, check, check_error

TOKENS = {
    "kind": "npz",
    "test": "t.npz",
    "inputs": {"input_ids": "ids", "attention_mask": "mask"},
    "labels": "y",
}


def _tokens(path: Path, rows: int = 6, mask_rows: int | None = None, width: int = 16) -> None:
    np.savez(
        path,
        ids=np.zeros((rows, width), dtype=np.int64),
        mask=np.ones((mask_rows or rows, width), dtype=np.int64),
        y=np.zeros(rows, dtype=np.int64),
    )


def test_valid_files_of_each_kind_pass(tmp_path):
    check(tmp_path, None)
    _tokens(tmp_path / "t.npz")
    check(tmp_path, TOKENS, inputs=[IDS, MASK])
    pd.DataFrame({"a": [1.0], "label": ["x"]}).to_parquet(tmp_path / "t.parquet")
    check(tmp_path, {"kind": "table", "test": "t.parquet", "inputs": ["a"], "labels": "label"})
    (tmp_path / "imgs" / "cat").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "imgs" / "cat" / "0.png")
    check(tmp_path, {"kind": "images", "test": "imgs"}, inputs=[{"name": "x", "shape": [4, 4, 3]}])
    check(tmp_path, {"kind": "synthetic"}, inputs=[IDS])


@pytest.mark.parametrize(
    ("npz", "data", "model_inputs", "expected"),
    [
        (None, TOKENS, [IDS, MASK], "data.test: expected an .npz file; "),
        (
            {},
            {**TOKENS, "inputs": {"input_ids": "ids", "attention_mask": "mask2"}},
            None,
            "an array 'mask2' in",
        ),
        ({}, {**TOKENS, "labels": "labels"}, None, "data.labels: expected an array 'labels' in"),
        ({"mask_rows": 5}, TOKENS, None, "expected arrays of one length in"),
        ({"width": 8}, TOKENS, [IDS, MASK], "data.inputs.input_ids: expected examples of shape [16]"),
        (
            {},
            {**TOKENS, "inputs": "ids"},
            [IDS, MASK],
            "data.inputs: expected the inputs model.inputs declares",
        ),
    ],
)
def test_npz_problems_are_found_from_headers(tmp_path, npz, data, model_inputs, expected):
    if npz is not None:
        _tokens(tmp_path / "t.npz", **npz)
    model = {"inputs": model_inputs} if model_inputs else {}
    assert expected in check_error(tmp_path, data, **model)


def test_npz_split_placeholder_is_checked_per_file(tmp_path):
    np.savez(tmp_path / "d.npz", x_test=np.zeros((2, 3)), y_test=np.zeros(2))
    spec = {"kind": "npz", "test": "d.npz", "train": "d.npz", "inputs": "x_{split}", "labels": "y_{split}"}
    assert "data.inputs: expected an array 'x_train' in" in check_error(tmp_path, spec)


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_table_columns_are_checked_from_the_header(tmp_path, suffix):
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0], "label": [0, 1]})
    file = tmp_path / f"t.{suffix}"
    frame.to_csv(file, index=False) if suffix == "csv" else frame.to_parquet(file)
    spec = {"kind": "table", "test": file.name, "labels": "label"}
    check(tmp_path, spec)
    assert "data.labels: expected a column 'species' in" in check_error(
        tmp_path, {**spec, "labels": "species"}
    )
    message = check_error(tmp_path, {**spec, "inputs": {"x": ["a", "c"]}})
    assert "data.inputs.x: expected a column 'c' in" in message
    assert "'a', 'b', 'label'" in message


def test_images_folder_layout_task_and_shape_are_checked(tmp_path):
    spec = {"kind": "images", "test": "imgs", "size": [4, 4]}
    (tmp_path / "imgs").mkdir()
    assert "data.test: expected one subfolder of images per class in" in check_error(tmp_path, spec)
    (tmp_path / "imgs" / "cat").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "imgs" / "cat" / "0.png")
    assert "data.kind: expected model.task classification for images" in check_error(
        tmp_path, spec, task="regression"
    )
    assert "data.size: expected [height, width]" in check_error(tmp_path, {**spec, "size": None})
    message = check_error(tmp_path, {**spec, "layout": "NCHW"}, inputs=[{"name": "x", "shape": [4, 4, 3]}])
    assert "data.size: expected images of the shape model.inputs declares, [4, 4, 3]" in message
    assert "data.input: expected the inputs model.inputs declares (x)" in check_error(
        tmp_path, {**spec, "input": "pixels"}, inputs=[{"name": "x", "shape": [4, 4, 3]}]
    )


def test_python_module_is_not_imported_at_validate_time(tmp_path):
    (tmp_path / "explodes_on_import.py").write_text("raise SystemExit('imported at validate time')\n")
    check(tmp_path, {"kind": "python", "function": "explodes_on_import:load"})
    check(tmp_path, {"kind": "python", "function": "no.such.module:load"})


def test_synthetic_needs_inputs_within_memory_and_matching_the_model(tmp_path):
    assert "data.inputs: expected the inputs to generate" in check_error(tmp_path, {"kind": "synthetic"})
    huge = {"kind": "synthetic", "examples": 1_000_000, "inputs": [{"name": "x", "shape": [1000]}]}
    assert "data.examples: expected at most 2,147,483,648 bytes of generated data" in check_error(
        tmp_path, huge
    )
    declared = {"kind": "synthetic", "inputs": [{"name": "input_ids", "shape": [8], "dtype": "int64"}]}
    assert "data.inputs[0].shape: expected [16] as model.inputs declares" in check_error(
        tmp_path, declared, inputs=[IDS]
    )
    narrow = {"kind": "synthetic", "inputs": [{"name": "x", "shape": [1], "dtype": "uint8", "high": 300}]}
    assert "data.inputs[0].low: expected values within uint8's 0..255" in check_error(tmp_path, narrow)


def test_classes_are_refused_for_regression(tmp_path):
    _tokens(tmp_path / "t.npz")
    message = check_error(tmp_path, {**TOKENS, "num_classes": 3}, task="regression")
    assert "data.num_classes: expected no classes with model.task regression" in message
