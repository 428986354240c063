"""Top-1 accuracy, and running a served artifact in this process on the test set.

numpy only at import time; the framework that reads the artifact (its descriptor's runner) is
imported inside the call.
"""

from __future__ import annotations

import numpy as np

from harness.artifacts import ServedArtifact
from harness.frameworks import framework


def accuracy(labels_pred: np.ndarray, labels_true: np.ndarray) -> float:
    """Fraction of predictions equal to the true labels (0..1)."""
    pred = np.asarray(labels_pred).reshape(-1)
    true = np.asarray(labels_true).reshape(-1)
    if pred.shape != true.shape:
        raise ValueError(f"{pred.size} predictions for {true.size} labels")
    if true.size == 0:
        raise ValueError("accuracy of an empty set is undefined")
    return float(np.mean(pred.astype(np.int64) == true.astype(np.int64)))


def predict_artifact(artifact: ServedArtifact, x: np.ndarray) -> np.ndarray:
    """Labels the artifact, loaded fresh from its file in this process, predicts for `x`."""
    runner = framework(artifact.framework).runner(artifact)
    return np.asarray(runner.predict_labels(x))


def artifact_accuracy(artifact: ServedArtifact, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of the served file itself (not of the in-memory model it was exported from)."""
    return accuracy(predict_artifact(artifact, x), y)
