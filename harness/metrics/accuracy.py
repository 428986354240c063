"""Top-1 accuracy, and running a served artifact in this process on the test set.

numpy only at import time; the framework that reads the artifact is imported inside the call.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

import numpy as np

from harness.errors import UserError

if TYPE_CHECKING:
    from harness.artifacts import ServedArtifact

# framework -> "module:Class" of a runner with `__init__(artifact)` and `predict_labels(x)`
ARTIFACT_RUNNERS: dict[str, str] = {
    "torch": "harness.compression.torch.export:TorchArtifactRunner",
    "tensorflow": "harness.compression.tensorflow.runner:TfArtifactRunner",
}


def accuracy(labels_pred: np.ndarray, labels_true: np.ndarray) -> float:
    """Fraction of predictions equal to the true labels (0..1)."""
    pred = np.asarray(labels_pred).reshape(-1)
    true = np.asarray(labels_true).reshape(-1)
    if pred.shape != true.shape:
        raise ValueError(f"{pred.size} predictions for {true.size} labels")
    if true.size == 0:
        raise ValueError("accuracy of an empty set is undefined")
    return float(np.mean(pred.astype(np.int64) == true.astype(np.int64)))


def artifact_runner(artifact: ServedArtifact) -> object:
    """A loaded in-process runner for `artifact`, chosen by its framework."""
    try:
        module_name, _, attr = ARTIFACT_RUNNERS[artifact.framework].partition(":")
    except KeyError:
        known = ", ".join(sorted(ARTIFACT_RUNNERS))
        message = f"no in-process runner for {artifact.framework!r} artifacts; known: {known}"
        raise UserError(message) from None
    return getattr(importlib.import_module(module_name), attr)(artifact)


def predict_artifact(artifact: ServedArtifact, x: np.ndarray) -> np.ndarray:
    """Labels the artifact, loaded fresh from its file in this process, predicts for `x`."""
    runner = artifact_runner(artifact)
    return np.asarray(runner.predict_labels(x))  # type: ignore[attr-defined]


def artifact_accuracy(artifact: ServedArtifact, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of the served file itself (not of the in-memory model it was exported from)."""
    return accuracy(predict_artifact(artifact, x), y)
