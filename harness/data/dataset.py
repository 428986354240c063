"""The evaluation data of a run: named input arrays and labels, split into test, train and calibration.

Every data kind (`harness.data.loaders`) ends in a `Dataset`. The test split is what accuracy and
fidelity are measured on and what load requests are drawn from; `train` feeds fine-tuning and
distillation, `calibration` the recipes that calibrate (PTQ representative data, PT2E observers).
Arrays are read-only: one dataset is shared by every variant of a run.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.data.tensors import Task, TensorSpec, batch_len, batch_take, fingerprint_arrays


@dataclass(frozen=True)
class Split:
    """One subset: a batch of named inputs and, unless the data is unlabelled, one label per row
    (int64 class ids for classification, float32 values of shape (n,) or (n, k) for regression)."""

    inputs: Mapping[str, np.ndarray]
    labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        frozen = {name: _frozen(array) for name, array in self.inputs.items()}
        object.__setattr__(self, "inputs", frozen)
        if self.labels is not None:
            if len(self.labels) != batch_len(frozen):
                raise ValueError(f"{len(self.labels)} labels for {batch_len(frozen)} examples")
            object.__setattr__(self, "labels", _frozen(self.labels))

    def __len__(self) -> int:
        return batch_len(self.inputs)

    def take(self, rows: np.ndarray) -> Split:
        labels = None if self.labels is None else self.labels[np.asarray(rows, dtype=np.int64)]
        return Split(batch_take(self.inputs, rows), labels)

    def head(self, n: int) -> Split:
        return self if n >= len(self) else self.take(np.arange(n))

    def only_input(self) -> np.ndarray:
        """The array of a one-input dataset; ValueError for several inputs (recipes written for a
        single tensor say so instead of guessing)."""
        if len(self.inputs) != 1:
            raise ValueError(f"this needs a model with one input; the data has {sorted(self.inputs)}")
        return next(iter(self.inputs.values()))


@dataclass(frozen=True)
class Dataset:
    """The data a scenario is evaluated on."""

    name: str  # the data kind: "digits", "npz", "table", "images", "python", "synthetic"
    inputs: tuple[TensorSpec, ...]
    task: Task
    test: Split
    train: Split | None = None  # None: recipes that fine-tune or distil refuse (validate says so)
    calibration: Split | None = None  # None: calibrating recipes use `train`
    num_classes: int | None = None  # classification with labels; None for regression or unlabelled
    seed: int = 0
    source: dict[str, Any] = field(default_factory=dict)  # files, split settings: for the report

    @property
    def labelled(self) -> bool:
        return self.test.labels is not None

    def calibration_split(self) -> Split | None:
        """Data for calibration: the declared calibration subset, else the training split."""
        return self.calibration if self.calibration is not None else self.train

    def fingerprint(self) -> str:
        """sha256 over the exact bytes of every split's inputs and labels, and the input specs and
        task: part of every variant's configuration id and of built-in models' cache keys."""
        return self._fingerprint

    @functools.cached_property
    def _fingerprint(self) -> str:
        # computed once: the arrays are read-only, and a run asks for it per variant and per gate
        digest = hashlib.sha256()
        digest.update(repr((self.task, self.num_classes, [s.as_dict() for s in self.inputs])).encode())
        for label, split in (("test", self.test), ("train", self.train), ("calibration", self.calibration)):
            digest.update(label.encode())
            if split is None:
                continue
            fingerprint_arrays(digest, split.inputs)
            if split.labels is not None:
                fingerprint_arrays(digest, {"__labels__": split.labels})
        return digest.hexdigest()

    def describe(self) -> dict[str, Any]:
        """What the report and results.json say about the data."""
        return {
            "kind": self.name,
            "task": self.task,
            "inputs": [spec.as_dict() for spec in self.inputs],
            "num_classes": self.num_classes,
            "test_examples": len(self.test),
            "train_examples": len(self.train) if self.train is not None else 0,
            "calibration_examples": len(self.calibration) if self.calibration is not None else 0,
            "labelled": self.labelled,
            "fingerprint": self.fingerprint(),
            **self.source,
        }

    # One-input shorthands for code written for a single float tensor (built-in models, recipes
    # that train an MLP); they raise ValueError for a multi-input dataset.

    @property
    def x_test(self) -> np.ndarray:
        return self.test.only_input()

    @property
    def y_test(self) -> np.ndarray:
        return _labels(self.test, "test")

    @property
    def x_train(self) -> np.ndarray:
        return _need(self.train, "train").only_input()

    @property
    def y_train(self) -> np.ndarray:
        return _labels(_need(self.train, "train"), "train")

    @property
    def input_shape(self) -> tuple[int, ...]:
        if len(self.inputs) != 1:
            raise ValueError(f"this needs a model with one input; the data has {len(self.inputs)}")
        return self.inputs[0].shape


def _need(split: Split | None, name: str) -> Split:
    if split is None:
        raise ValueError(f"the data has no {name} split")
    return split


def _labels(split: Split, name: str) -> np.ndarray:
    if split.labels is None:
        raise ValueError(f"the {name} split has no labels")
    return split.labels


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    if array.flags.writeable:
        array = array.copy() if array.base is not None else array
        array.setflags(write=False)
    return array
