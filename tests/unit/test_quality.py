"""Quality metrics of model outputs: equal to scikit-learn's and scipy's; per-example vectors; kinds."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax
from scipy.stats import entropy
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    top_k_accuracy_score,
)

from harness.metrics.accuracy import accuracy
from harness.metrics.quality import (
    ABS_DIFF,
    ABS_ERROR,
    AGREE,
    EXAMPLE_MEANS,
    KL,
    PER_EXAMPLE,
    SQUARED_ERROR,
    TOP5_CORRECT,
    detect_output_kind,
    evaluate_outputs,
    macro_f1,
)


def _classify(outputs, labels=None, reference=None, kind="logits", num_classes=None):
    return evaluate_outputs(
        outputs,
        task="classification",
        output_kind=kind,
        labels=labels,
        num_classes=num_classes,
        reference=reference,
    )


def _regress(outputs, labels=None, reference=None):
    return evaluate_outputs(
        outputs, task="regression", output_kind="values", labels=labels, num_classes=None, reference=reference
    )


def _tied_logits(rng, n, classes):
    """Small integer logits: most rows have ties, some at the top."""
    return rng.integers(-2, 3, size=(n, classes)).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("classes", [6, 10, 31])
def test_classification_metrics_equal_scikit_learn_on_data_with_ties(seed, classes):
    rng = np.random.default_rng(seed)
    outputs = _tied_logits(rng, 400, classes)
    labels = rng.integers(0, classes, 400)
    result = _classify(outputs, labels)
    predicted = outputs.argmax(axis=1)
    assert result.metrics["accuracy"] == accuracy_score(labels, predicted)
    assert result.metrics["top5_accuracy"] == pytest.approx(
        top_k_accuracy_score(labels, outputs, k=5, labels=np.arange(classes)), abs=1e-12
    )
    assert result.metrics["macro_f1"] == pytest.approx(
        f1_score(labels, predicted, average="macro", zero_division=0), abs=1e-12
    )
    np.testing.assert_array_equal(result.predictions, predicted)


def test_top5_ties_rank_the_later_class_first_as_scikit_learn_does():
    outputs = np.zeros((2, 8), dtype=np.float32)  # all tied: the 5 highest indices rank first
    labels = np.array([2, 3])
    result = _classify(outputs, labels)
    np.testing.assert_array_equal(result.per_example[TOP5_CORRECT], [0.0, 1.0])
    assert result.metrics["top5_accuracy"] == top_k_accuracy_score(labels, outputs, k=5, labels=np.arange(8))


def test_probabilities_give_the_same_classification_metrics_as_their_logits():
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(300, 12))
    labels = rng.integers(0, 12, 300)
    from_logits = _classify(logits, labels)
    from_probs = _classify(softmax(logits, axis=1), labels, kind="probabilities")
    assert from_logits.metrics == pytest.approx(from_probs.metrics)


def test_macro_f1_counts_a_class_only_predicted_as_zero_and_leaves_out_absent_classes():
    labels = np.array([0, 0, 1, 1, 1, 0])
    outputs = np.eye(5)[[0, 3, 1, 1, 0, 0]]  # class 3 predicted but never true; 2 and 4 nowhere
    result = _classify(outputs, labels)
    expected = f1_score(labels, outputs.argmax(axis=1), average="macro", zero_division=0)
    assert result.metrics["macro_f1"] == pytest.approx(expected)


def test_batched_macro_f1_equals_scikit_learn_on_every_resample():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 7, 120)
    predicted = np.where(rng.random(120) < 0.6, labels, rng.integers(0, 7, 120))
    rows = rng.integers(0, 120, size=(25, 120))
    expected = [f1_score(labels[r], predicted[r], average="macro", zero_division=0) for r in rows]
    np.testing.assert_allclose(macro_f1(predicted, labels, rows), expected, rtol=0, atol=1e-12)


def test_top5_is_reported_only_with_more_than_five_classes():
    rng = np.random.default_rng(6)
    five = _classify(rng.normal(size=(50, 5)), rng.integers(0, 5, 50))
    six = _classify(rng.normal(size=(50, 6)), rng.integers(0, 6, 50))
    assert "top5_accuracy" not in five.metrics
    assert TOP5_CORRECT not in five.per_example
    assert "top5_accuracy" in six.metrics


@pytest.mark.parametrize("shape", [(200,), (200, 1), (200, 3)])
def test_regression_metrics_equal_scikit_learn(shape):
    rng = np.random.default_rng(7)
    labels = rng.normal(size=shape).astype(np.float32)
    width = 1 if len(shape) == 1 else shape[1]
    outputs = (labels.reshape(200, width) + rng.normal(scale=0.3, size=(200, width))).astype(np.float32)
    result = _regress(outputs, labels)
    # scikit-learn computes in the inputs' float32; evaluate_outputs in float64
    truth, outputs = labels.reshape(200, width).astype(np.float64), outputs.astype(np.float64)
    assert result.metrics["mae"] == pytest.approx(mean_absolute_error(truth, outputs), rel=1e-12)
    assert result.metrics["rmse"] == pytest.approx(np.sqrt(mean_squared_error(truth, outputs)), rel=1e-12)
    assert result.predictions is None
    assert set(result.metrics) == {"mae", "rmse"}


def test_kl_divergence_is_scipys_entropy_of_the_softmaxes_averaged_over_examples():
    rng = np.random.default_rng(8)
    reference = rng.normal(size=(250, 10)).astype(np.float32)
    outputs = (reference + rng.normal(scale=0.5, size=reference.shape)).astype(np.float32)
    result = _classify(outputs, reference=reference)
    rows = entropy(
        softmax(reference.astype(np.float64), axis=1), softmax(outputs.astype(np.float64), axis=1), axis=1
    )
    np.testing.assert_allclose(result.per_example[KL], rows, rtol=1e-9, atol=1e-15)
    assert result.metrics["kl_divergence"] == pytest.approx(rows.mean(), rel=1e-9)


def test_kl_of_probabilities_clips_zeros_instead_of_going_infinite():
    reference = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    outputs = np.array([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])
    result = _classify(outputs, reference=reference, kind="probabilities")
    clip = np.clip
    expected = entropy(clip(reference, 1e-12, 1), clip(outputs, 1e-12, 1), axis=1)
    np.testing.assert_allclose(result.per_example[KL], expected, rtol=1e-9)
    assert np.isfinite(result.metrics["kl_divergence"])
    assert result.per_example[KL][1] == 0.0


def test_agreement_and_output_differences_against_the_reference():
    rng = np.random.default_rng(9)
    reference = rng.normal(size=(300, 4))
    outputs = reference + rng.normal(scale=0.4, size=reference.shape)
    result = _classify(outputs, reference=reference)
    assert result.metrics["agreement"] == np.mean(outputs.argmax(1) == reference.argmax(1))
    assert result.metrics["output_abs_diff_max"] == np.abs(outputs - reference).max()
    assert result.metrics["output_abs_diff_mean"] == pytest.approx(np.abs(outputs - reference).mean())


def test_the_reference_against_itself_agrees_fully_and_differs_by_exactly_nothing():
    rng = np.random.default_rng(10)
    for kind, outputs in (
        ("logits", rng.normal(size=(50, 7))),
        ("probabilities", rng.dirichlet(np.ones(7), 50)),
    ):
        result = _classify(outputs, reference=outputs, kind=kind)
        assert result.metrics["agreement"] == 1.0
        assert result.metrics["kl_divergence"] == 0.0
        assert result.metrics["output_abs_diff_max"] == result.metrics["output_abs_diff_mean"] == 0.0


def test_unlabelled_data_gets_fidelity_metrics_only():
    rng = np.random.default_rng(11)
    outputs = rng.normal(size=(40, 8))
    result = _classify(outputs, reference=outputs * 1.1)
    assert set(result.metrics) == {
        "agreement",
        "kl_divergence",
        "output_abs_diff_max",
        "output_abs_diff_mean",
    }
    assert set(result.per_example) == {AGREE, KL, ABS_DIFF}
    regression = _regress(outputs[:, :2], reference=outputs[:, :2] + 1.0)
    assert set(regression.metrics) == {"output_abs_diff_max", "output_abs_diff_mean"}
    assert regression.metrics["output_abs_diff_max"] == pytest.approx(1.0)


def test_no_labels_and_no_reference_still_give_the_predicted_classes():
    outputs = np.array([[0.1, 0.9], [0.8, 0.2]])
    result = _classify(outputs)
    assert result.metrics == {}
    assert result.per_example == {}
    np.testing.assert_array_equal(result.predictions, [1, 0])


def test_every_vector_metric_is_the_mean_of_its_per_example_vector():
    rng = np.random.default_rng(12)
    outputs, reference = rng.normal(size=(90, 9)), rng.normal(size=(90, 9))
    labels = rng.integers(0, 9, 90)
    for result in (
        _classify(outputs, labels, reference),
        _regress(outputs[:, :2], rng.normal(size=(90, 2)), reference[:, :2]),
    ):
        assert set(result.per_example) <= set(PER_EXAMPLE)
        for metric, mean in EXAMPLE_MEANS.items():
            if mean.key in result.per_example:
                values = result.per_example[mean.key]
                assert values.shape == (90,)
                assert values.dtype == np.float64
                expected = np.sqrt(values.mean()) if mean.root else values.mean()
                assert result.metrics[metric] == pytest.approx(expected)
    regression = _regress(outputs[:, :2], outputs[:, :2] + 0.5)
    assert set(regression.per_example) == {ABS_ERROR, SQUARED_ERROR}


def test_accuracy_helper_still_agrees_with_evaluate_outputs():
    rng = np.random.default_rng(13)
    outputs, labels = rng.normal(size=(100, 10)), rng.integers(0, 10, 100)
    assert accuracy(outputs.argmax(axis=1), labels) == _classify(outputs, labels).metrics["accuracy"]


def test_detects_probabilities_logits_and_values():
    rng = np.random.default_rng(14)
    logits = rng.normal(size=(30, 5)).astype(np.float32)
    probabilities = softmax(logits, axis=1).astype(np.float32)  # float32 rows sum to 1 within 1e-6
    assert detect_output_kind(probabilities, "classification") == "probabilities"
    assert detect_output_kind(logits, "classification") == "logits"
    assert detect_output_kind(np.abs(logits), "classification") == "logits"  # non-negative, sums != 1
    off = probabilities.copy()
    off[3] *= 1.002  # one row sums to 1.002: beyond the 1e-3 tolerance
    assert detect_output_kind(off, "classification") == "logits"
    negative = probabilities.copy()
    negative[0, :2] = [-0.1, negative[0, 0] + negative[0, 1] + 0.1]
    assert detect_output_kind(negative, "classification") == "logits"
    with_nan = probabilities.copy()
    with_nan[1, 1] = np.nan
    assert detect_output_kind(with_nan, "classification") == "logits"
    assert detect_output_kind(probabilities, "regression") == "values"


def test_non_finite_outputs_are_refused_naming_how_many_rows():
    outputs = np.ones((10, 3), dtype=np.float32)
    outputs[4, 0] = np.nan
    outputs[7, 2] = np.inf
    with pytest.raises(ValueError, match=r"^outputs: 2 of 10 rows contain NaN or infinity \(first: row 4\)"):
        _classify(outputs, np.zeros(10, dtype=np.int64))
    with pytest.raises(ValueError, match=r"^reference outputs: 2 of 10 rows"):
        _classify(np.ones((10, 3)), reference=outputs)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: _classify(np.ones((4, 3)), kind="values"), "not 'values'"),
        (
            lambda: evaluate_outputs(
                np.ones((4, 1)),
                task="regression",
                output_kind="logits",
                labels=None,
                num_classes=None,
                reference=None,
            ),
            "are 'values'",
        ),
        (lambda: _classify(np.ones((4, 1))), "one column per class"),
        (lambda: _classify(np.ones((4, 3)), np.array([0, 1, 2, 3])), "3 classes"),
        (lambda: _classify(np.ones((4, 3)), np.array([0, 1])), "2 labels for 4"),
        (lambda: _classify(np.ones((4, 3)), reference=np.ones((4, 2))), "shape"),
        (lambda: _regress(np.ones((4, 2)), np.ones(4)), "shape"),
        (lambda: _regress(np.ones((4, 1)), np.array([1.0, np.nan, 2.0, 3.0])), "1 of 4 rows"),
        (lambda: _classify(np.ones(4)), "2-D"),
    ],
)
def test_mismatched_inputs_are_refused_with_a_clear_message(call, message):
    with pytest.raises(ValueError, match=message):
        call()
