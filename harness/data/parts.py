"""What every data reader hands to the loader: a `Part` (one file's examples, inputs fetched by row)
and a `DataProblem` (what is wrong, at which `data.` key).

Readers know files, not the scenario file's name; `load_data` and `check_data` turn a DataProblem
into the one-line UserError that names the scenario. Labels are read first and inputs fetched only
for the rows a split keeps, so `max_examples` on a large image folder decodes just those images.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.data.tensors import batch_take
from harness.scenario.data_spec import FileDataSpec
from harness.scenario.schema import ModelSpec

ALL = "all"  # the part of data.path (or a python function's arrays) before data.split divides it
PART_KEYS = {ALL: "data.path", "test": "data.test", "train": "data.train", "calibration": "data.calibration"}
DEFAULT_INPUT = "inputs"  # the built-in models' input name


class DataProblem(Exception):
    """Bad data, found by a reader: `key` is the scenario key (data.labels), the message says what was
    expected and what the file holds."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Part:
    """The examples of one file, folder or returned set: labels as read (any dtype), inputs on demand."""

    size: int
    labels: np.ndarray | None
    fetch: Callable[[np.ndarray], dict[str, np.ndarray]]  # row indices -> named input arrays
    record: dict[str, Any]  # where it came from, for Dataset.source: path, sha256
    label_key: str  # the key a label problem is reported at
    class_names: tuple[str, ...] = ()  # classes known without examples: empty image folders
    where: str = field(default="")  # how messages name it: the file, or the function

    @classmethod
    def from_arrays(
        cls,
        inputs: Mapping[str, np.ndarray],
        labels: np.ndarray | None,
        *,
        record: dict[str, Any],
        label_key: str,
        input_key: Callable[[str], str],
        where: str,
    ) -> Part:
        """A part of in-memory arrays; DataProblem unless every input and the labels have one length."""
        if not inputs:
            raise DataProblem(input_key(""), f"at least one input array; {where} gives none")
        lengths = {name: _rows(array) for name, array in inputs.items()}
        size = next(iter(lengths.values()))
        for name, rows in lengths.items():
            if rows != size:
                raise DataProblem(
                    input_key(name),
                    f"every input with the same number of examples; {where} gives "
                    + ", ".join(f"{n}: {r}" for n, r in lengths.items()),
                )
        if labels is not None and _rows(labels) != size:
            raise DataProblem(
                label_key, f"one label per example; {where} has {_rows(labels)} labels for {size}"
            )
        arrays = dict(inputs)
        return cls(size, labels, lambda rows: batch_take(arrays, rows), record, label_key, where=where)


def _rows(array: np.ndarray) -> int:
    return int(array.shape[0]) if array.ndim else 1


def default_input_name(model: ModelSpec) -> str:
    """The input a one-input data kind feeds: the model's first declared input, else 'inputs'."""
    return model.inputs[0].name if model.inputs else DEFAULT_INPUT


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_record(written: str, path: Path) -> dict[str, Any]:
    """The report's line for one data file: the path as the scenario wrote it and its content hash."""
    return {"path": written, "sha256": sha256_file(path)}


def file_parts(spec: FileDataSpec) -> dict[str, str]:
    """Part name -> path as written, for the kinds read from files: data.path alone ('all'), or
    data.test with data.train and a calibration file when given."""
    if spec.path is not None:
        return {ALL: spec.path}
    assert spec.test is not None  # the schema requires data.test without data.path
    parts = {"test": spec.test}
    if spec.train is not None:
        parts["train"] = spec.train
    if isinstance(spec.calibration, str):
        parts["calibration"] = spec.calibration
    return parts
