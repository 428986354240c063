"""Top-1 accuracy, and running a served artifact in this process on the test set.

numpy only at import time; the framework that reads the artifact (its descriptor's runner) is
imported inside the call.
"""

from __future__ import annotations

import numpy as np

from harness.artifacts import ServedArtifact
from harness.data.tensors import Batch, as_batch, predict_in_chunks
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


def predict_artifact(artifact: ServedArtifact, x: Batch | np.ndarray) -> np.ndarray:
    """Labels the artifact, loaded fresh from its file in this process, predicts for `x` (a batch,
    or the array of a one-input model)."""
    runner = framework(artifact.framework).runner(artifact)
    batch = as_batch(x, artifact.signature.inputs)
    return predict_in_chunks(runner.predict_outputs, batch).argmax(axis=1)


def artifact_accuracy(artifact: ServedArtifact, x: Batch | np.ndarray, y: np.ndarray) -> float:
    """Accuracy of the served file itself (not of the in-memory model it was exported from)."""
    return accuracy(predict_artifact(artifact, x), y)
