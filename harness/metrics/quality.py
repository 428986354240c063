"""Quality of a model's outputs on the test split: against the labels, and against the reference variant.

`evaluate_outputs` is the one place every quality figure is computed, for the pipeline (in-process)
and for the served measurement alike. What it reports depends on what is known:

- labels, classification: `accuracy` (top-1), `top5_accuracy` (only with more than 5 classes: with
  5 or fewer it is 1 by construction), `macro_f1`;
- labels, regression: `mae`, `rmse`;
- a reference (the uncompressed variant's outputs on the same examples), any labels or none:
  `agreement` and `kl_divergence` (classification), `output_abs_diff_max`, `output_abs_diff_mean`.

Besides the metrics it returns the per-example vectors the paired gate tests need (`PER_EXAMPLE`,
documented there). Every metric that has one is the mean of its vector (`EXAMPLE_MEANS`), so the
gate resamples exactly the number the report shows. numpy only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from harness.data.tensors import OutputKind, Task

TOP_K = 5  # top5_accuracy: the customary k (ImageNet); reported only with more than TOP_K classes
PROBABILITY_TOLERANCE = 1e-3  # a row of probabilities sums to 1 within this (float32 softmax, rounding)
# probabilities are clipped to this before logs: an exact 0 would make the KL infinite for one
# example and so for the whole set, where a tiny mass is what a float32 softmax really means
PROBABILITY_FLOOR = 1e-12

FloatArray = npt.NDArray[np.float64]

# ---- per-example vectors: one float per test example, in test-set order ----------------------------
TOP5_CORRECT = "top5_correct"  # 1.0 if the true class is among the 5 highest outputs, else 0.0
AGREE = "agree"  # 1.0 if the top-1 class equals the reference's, else 0.0
ABS_ERROR = "abs_error"  # |output - label|, averaged over the example's output values
SQUARED_ERROR = "squared_error"  # (output - label)^2, averaged over the example's output values
KL = "kl"  # KL(reference || this) of the example's output distributions, nats
ABS_DIFF = "abs_diff"  # |output - reference output|, averaged over the example's output values

PER_EXAMPLE: tuple[str, ...] = (TOP5_CORRECT, AGREE, ABS_ERROR, SQUARED_ERROR, KL, ABS_DIFF)
BINARY: frozenset[str] = frozenset({TOP5_CORRECT, AGREE})  # 0/1 vectors: McNemar applies
# Top-1 correctness is not a vector here: the served predictions and the labels (which baselines
# already store, as class ids) give it, and accuracy's McNemar test reads them.


@dataclass(frozen=True)
class ExampleMean:
    """A metric that is the mean of one per-example vector, or the square root of that mean (RMSE)."""

    key: str
    root: bool = False

    def over(self, values: FloatArray, rows: npt.NDArray[np.intp]) -> FloatArray:
        """The metric on each resample: `rows` is (resamples, n) indices into `values`."""
        means: FloatArray = values[rows].mean(axis=-1)
        return np.sqrt(means) if self.root else means

    def of(self, values: FloatArray) -> float:
        return float(self.over(values, np.arange(values.size)[np.newaxis])[0])


EXAMPLE_MEANS: dict[str, ExampleMean] = {
    "top5_accuracy": ExampleMean(TOP5_CORRECT),
    "mae": ExampleMean(ABS_ERROR),
    # pooled over every output value (scikit-learn's sqrt(mean_squared_error)), not the mean of
    # per-output RMSEs: pooled, it decomposes into one number per example for the paired bootstrap
    "rmse": ExampleMean(SQUARED_ERROR, root=True),
    "agreement": ExampleMean(AGREE),
    "kl_divergence": ExampleMean(KL),
    "output_abs_diff_mean": ExampleMean(ABS_DIFF),
}


# every metric evaluate_outputs can report, in the order it reports them (labels first, then fidelity)
METRIC_ORDER: tuple[str, ...] = (
    "accuracy",
    "top5_accuracy",
    "macro_f1",
    "mae",
    "rmse",
    "agreement",
    "kl_divergence",
    "output_abs_diff_max",
    "output_abs_diff_mean",
)


@dataclass(frozen=True)
class QualityResult:
    """What `evaluate_outputs` found: the metrics that apply, top-1 classes, per-example vectors."""

    metrics: dict[str, float]
    predictions: npt.NDArray[np.int64] | None  # argmax class per example; None for regression
    per_example: dict[str, FloatArray] = field(default_factory=dict)  # keys from PER_EXAMPLE


@dataclass(frozen=True)
class ExampleVectors:
    """One variant's per-example vectors (keys from PER_EXAMPLE) and which examples they are for.

    A paired test compares two runs example by example, so it runs only when both fingerprints
    are known and equal; the caller names the examples (the dataset's fingerprint)."""

    values: Mapping[str, FloatArray]
    fingerprint: str | None


def detect_output_kind(outputs: np.ndarray, task: Task) -> OutputKind:
    """'values' for regression; for classification 'probabilities' when every row is finite,
    non-negative and sums to 1 within 1e-3, else 'logits'.

    Decide once, on the reference variant's outputs, and use the kind for every variant: an int8
    softmax can drift past the tolerance, and two kinds in one run would compare unlike numbers."""
    if task == "regression":
        return "values"
    scores = _matrix(outputs, "outputs")
    finite = bool(np.all(np.isfinite(scores)))
    if finite and np.all(scores >= 0) and np.all(np.abs(scores.sum(axis=1) - 1.0) <= PROBABILITY_TOLERANCE):
        return "probabilities"
    return "logits"


def evaluate_outputs(
    outputs: np.ndarray,
    *,
    task: Task,
    output_kind: OutputKind,
    labels: np.ndarray | None,
    num_classes: int | None,
    reference: np.ndarray | None,
) -> QualityResult:
    """Every quality metric that applies to `outputs` (n, width), with the per-example vectors.

    `labels`: class ids (n,) for classification, values (n,) or (n, width) for regression; None
    for unlabelled data. `reference`: the reference variant's outputs on the same examples (pass
    the variant's own outputs for the reference itself: agreement 1, divergence and differences
    0). ValueError for non-finite outputs (naming how many rows), mismatched shapes, or a kind
    that does not fit the task."""
    scores = _finite_matrix(outputs, "outputs")
    n, width = scores.shape
    _check_kind(task, output_kind, width)
    ref = None
    if reference is not None:
        ref = _finite_matrix(reference, "reference outputs")
        if ref.shape != scores.shape:
            raise ValueError(f"reference outputs have shape {ref.shape}; the outputs have {scores.shape}")

    metrics: dict[str, float] = {}
    per_example: dict[str, FloatArray] = {}
    predictions = None
    if task == "classification":
        predictions = np.argmax(scores, axis=1).astype(np.int64)
        if labels is not None:
            truth = _class_labels(labels, n, width)
            metrics["accuracy"] = float(np.mean(predictions == truth))
            if (num_classes if num_classes is not None else width) > TOP_K:
                per_example[TOP5_CORRECT] = _in_top_k(scores, truth, TOP_K)
            metrics["macro_f1"] = float(macro_f1(predictions, truth, np.arange(n)[np.newaxis])[0])
        if ref is not None:
            per_example[AGREE] = (predictions == np.argmax(ref, axis=1)).astype(np.float64)
            per_example[KL] = _kl_rows(ref, scores, output_kind)
    elif labels is not None:
        error = scores - _value_labels(labels, n, width)
        per_example[ABS_ERROR] = np.abs(error).mean(axis=1)
        per_example[SQUARED_ERROR] = np.square(error).mean(axis=1)
    if ref is not None:
        diff = np.abs(scores - ref)
        per_example[ABS_DIFF] = diff.mean(axis=1)
        metrics["output_abs_diff_max"] = float(diff.max())
    for metric, mean in EXAMPLE_MEANS.items():
        if mean.key in per_example:
            metrics[metric] = mean.of(per_example[mean.key])
    ordered = {name: metrics[name] for name in METRIC_ORDER if name in metrics}
    return QualityResult(metrics=ordered, predictions=predictions, per_example=per_example)


def macro_f1(
    predictions: npt.NDArray[np.int64], labels: npt.NDArray[np.int64], rows: npt.NDArray[np.intp]
) -> FloatArray:
    """Macro F1 on each resample (`rows`: (resamples, n) indices), vectorised for the bootstrap.

    Per class F1 = 2 TP / (predicted + true); the mean runs over the classes present in the
    resample's labels or predictions, as scikit-learn's f1_score(average='macro') does (a class
    only ever predicted scores 0; one in neither has no F1 and is left out)."""
    classes = int(max(predictions.max(), labels.max())) + 1
    resamples = rows.shape[0]
    offset = (np.arange(resamples) * classes)[:, np.newaxis]
    size = resamples * classes
    pred, true = predictions[rows], labels[rows]

    def count(ids: np.ndarray, weights: np.ndarray | None = None) -> FloatArray:
        flat = (ids + offset).ravel()
        counts = np.bincount(flat, weights=weights, minlength=size).astype(np.float64)
        return counts.reshape(resamples, classes)

    hits = count(true, (pred == true).ravel().astype(np.float64))
    both = count(pred) + count(true)
    present = both > 0
    f1 = np.divide(2.0 * hits, both, out=np.zeros_like(hits), where=present)
    result: FloatArray = f1.sum(axis=1) / present.sum(axis=1)
    return result


# ---- helpers ------------------------------------------------------------------------------------------


def _matrix(array: np.ndarray, what: str) -> FloatArray:
    matrix = np.asarray(array, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError(
            f"{what}: expected a 2-D array (examples, values) with at least one of each, "
            f"got shape {matrix.shape}"
        )
    return matrix


def _finite_matrix(array: np.ndarray, what: str) -> FloatArray:
    matrix = _matrix(array, what)
    bad = ~np.all(np.isfinite(matrix), axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{what}: {int(bad.sum())} of {matrix.shape[0]} rows contain NaN or infinity (first: row "
            f"{first}); the model produced no usable output for them"
        )
    return matrix


def _check_kind(task: Task, kind: OutputKind, width: int) -> None:
    if task == "regression" and kind != "values":
        raise ValueError(f"a regression model's outputs are 'values', not {kind!r}")
    if task == "classification":
        if kind == "values":
            raise ValueError("a classification model's outputs are 'logits' or 'probabilities', not 'values'")
        if width < 2:
            raise ValueError(
                "classification outputs need one column per class; got 1 column (a single sigmoid "
                "output: have the model return [1 - p, p], or [0, logit])"
            )


def _class_labels(labels: np.ndarray, n: int, width: int) -> npt.NDArray[np.int64]:
    raw = np.asarray(labels).reshape(-1)
    if raw.size != n:
        raise ValueError(f"{raw.size} labels for {n} output rows")
    integral = np.issubdtype(raw.dtype, np.integer) or raw.dtype == np.bool_
    if not integral and not (np.all(np.isfinite(raw)) and np.all(raw == np.round(raw))):
        raise ValueError("classification labels must be integer class ids")
    truth = raw.astype(np.int64)
    if truth.min() < 0 or truth.max() >= width:
        raise ValueError(f"labels range {truth.min()}..{truth.max()}; the outputs have {width} classes")
    return truth


def _value_labels(labels: np.ndarray, n: int, width: int) -> FloatArray:
    truth = np.asarray(labels, dtype=np.float64)
    if truth.ndim == 1:
        truth = truth[:, np.newaxis]
    if truth.shape != (n, width):
        raise ValueError(f"labels have shape {np.shape(labels)}; the outputs have {(n, width)}")
    bad = ~np.all(np.isfinite(truth), axis=1)
    if bad.any():
        raise ValueError(f"labels: {int(bad.sum())} of {n} rows contain NaN or infinity")
    return truth


def _in_top_k(scores: FloatArray, truth: npt.NDArray[np.int64], k: int) -> FloatArray:
    """1.0 where the true class ranks among the k highest scores.

    Ties rank as in scikit-learn's top_k_accuracy_score (stable ascending sort, reversed): of
    equal scores the higher class index ranks first. Counting instead of sorting: O(n * classes)."""
    own = scores[np.arange(truth.size), truth][:, np.newaxis]
    above = (scores > own).sum(axis=1)
    later_ties = ((scores == own) & (np.arange(scores.shape[1]) > truth[:, np.newaxis])).sum(axis=1)
    return ((above + later_ties) < k).astype(np.float64)


def _log_distribution(scores: FloatArray, kind: OutputKind) -> FloatArray:
    """Row-wise log probabilities: log-softmax of logits; probabilities clipped and renormalised."""
    if kind == "logits":
        shifted = scores - scores.max(axis=1, keepdims=True)
        result: FloatArray = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return result
    clipped = np.clip(scores, PROBABILITY_FLOOR, 1.0)
    logs: FloatArray = np.log(clipped / clipped.sum(axis=1, keepdims=True))
    return logs


def _kl_rows(reference: FloatArray, scores: FloatArray, kind: OutputKind) -> FloatArray:
    """KL(reference || scores) per row, nats: how much the variant's distribution loses against
    the reference's, weighted by where the reference puts its mass."""
    log_ref = _log_distribution(reference, kind)
    log_cur = _log_distribution(scores, kind)
    kl = np.sum(np.exp(log_ref) * (log_ref - log_cur), axis=1)
    clipped: FloatArray = np.maximum(kl, 0.0)  # rounding can leave -1e-17 where the rows agree
    return clipped
