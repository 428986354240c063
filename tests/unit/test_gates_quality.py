"""Quality gates: top-5, macro F1, MAE, RMSE and fidelity to the reference, with their paired tests."""

from __future__ import annotations

import numpy as np
import pytest

from harness.gates.evaluate import evaluate
from harness.gates.judge import judge_measurement
from harness.gates.quality_tests import QUALITY_TESTS, BootstrapTest, McNemarTest, NoTest
from harness.gates.thresholds import parse_threshold
from harness.metrics.quality import (
    ABS_DIFF,
    ABS_ERROR,
    AGREE,
    KL,
    SQUARED_ERROR,
    TOP5_CORRECT,
    ExampleVectors,
    evaluate_outputs,
)
from harness.results import AccuracyEvidence, BootstrapEvidence, ThresholdEvidence
from harness.samples import VariantSamples, labels_fingerprint
from harness.scenario.schema import GatePolicySpec
from tests.unit.records import measurement

FP = "e" * 16  # the fingerprint of the test examples both runs scored


def one(verdicts):
    assert len(verdicts) == 1, verdicts
    return verdicts[0]


def _vectors(**values) -> ExampleVectors:
    return ExampleVectors(
        values={k: np.asarray(v, dtype=np.float64) for k, v in values.items()}, fingerprint=FP
    )


def _gate(
    metric, threshold, current, baseline, *, policy=None, cur=None, base=None, cur_dist=None, base_dist=None
):
    """One verdict of `metric` with per-example vectors `cur`/`base` (ExampleVectors) or samples
    `cur_dist`/`base_dist` (VariantSamples: predictions and labels) on both sides."""
    return one(
        evaluate(
            {metric: threshold},
            {"v": current},
            None if baseline is None else {"v": baseline},
            policy=policy,
            current_dist=None if cur_dist is None else {"v": cur_dist},
            baseline_dist=None if base_dist is None else {"v": base_dist},
            current_examples=None if cur is None else {"v": cur},
            baseline_examples=None if base is None else {"v": base},
        )
    )


def _binary_case(key, metric, n=500, worse=50):
    """The baseline right on every example, the current run wrong on the first `worse`."""
    before = np.ones(n)
    now = before.copy()
    now[:worse] = 0.0
    metrics = {metric: float(now.mean())}, {metric: float(before.mean())}
    return metrics, _vectors(**{key: now}), _vectors(**{key: before})


# ---- McNemar: agreement and top-5 ------------------------------------------------------------------


def test_agreement_dropping_from_1_to_0_9_on_500_examples_fails():
    (current, baseline), cur, base = _binary_case(AGREE, "agreement")
    v = _gate("agreement", "-0.01 abs", current, baseline, cur=cur, base=base)
    assert not v.passed
    assert isinstance(v.evidence, AccuracyEvidence)
    assert (v.evidence.b, v.evidence.c, v.evidence.n) == (50, 0, 500)
    assert "50 agreeing->differing, 0 differing->agreeing of 500" in v.message
    assert v.message.startswith("agreement 0.9 < limit 0.99 (baseline 1.00 -0.01 abs); McNemar exact")
    assert v.message.endswith("significant: regression")


def test_top5_accuracy_drop_is_judged_by_mcnemar():
    (current, baseline), cur, base = _binary_case(TOP5_CORRECT, "top5_accuracy", worse=30)
    v = _gate("top5_accuracy", "-2%", current, baseline, cur=cur, base=base)
    assert not v.passed
    assert "30 right->wrong, 0 wrong->right of 500" in v.message


def test_a_few_flips_beyond_the_threshold_are_not_significant():
    (current, baseline), cur, base = _binary_case(AGREE, "agreement", n=200, worse=4)  # 2 % drop, p = 1/16
    v = _gate("agreement", "-0.01 abs", current, baseline, cur=cur, base=base)
    assert v.passed
    assert v.message.endswith("not significant: passed")


# ---- bootstrap: MAE, RMSE, KL, mean output difference, macro F1 ---------------------------------------


def _value_case(key, metric, *, scale=1.0, n=500, seed=0, root=False):
    """Per-example values of the baseline, and the current run's scaled by `scale` (same examples)."""
    rng = np.random.default_rng(seed)
    before = rng.gamma(2.0, 0.1, n)
    now = before * scale
    value = (lambda x: float(np.sqrt(x.mean()))) if root else (lambda x: float(x.mean()))
    metrics = {metric: value(now)}, {metric: value(before)}
    return metrics, _vectors(**{key: now}), _vectors(**{key: before})


@pytest.mark.parametrize(
    ("key", "metric", "root"),
    [
        (ABS_ERROR, "mae", False),
        (SQUARED_ERROR, "rmse", True),
        (KL, "kl_divergence", False),
        (ABS_DIFF, "output_abs_diff_mean", False),
    ],
)
def test_bootstrap_detects_a_20_percent_rise_beyond_a_10_percent_gate(key, metric, root):
    scale = 1.2**2 if root else 1.2  # squared errors 1.44 times larger: RMSE 1.2 times
    (current, baseline), cur, base = _value_case(key, metric, scale=scale, root=root)
    v = _gate(metric, "+10%", current, baseline, cur=cur, base=base)
    assert not v.passed
    assert "paired bootstrap over 500 examples (2000 resamples)" in v.message
    assert v.message.endswith("significant: regression")
    assert isinstance(v.evidence, BootstrapEvidence)
    assert v.evidence.significant
    assert v.evidence.exceeds_threshold
    assert v.evidence.ci_low > 0
    assert v.evidence.n == 500


@pytest.mark.parametrize(
    ("key", "metric"),
    [(ABS_ERROR, "mae"), (SQUARED_ERROR, "rmse"), (KL, "kl_divergence"), (ABS_DIFF, "output_abs_diff_mean")],
)
def test_identical_vectors_raise_no_alarm(key, metric):
    (current, baseline), cur, base = _value_case(key, metric, scale=1.0, root=metric == "rmse")
    v = _gate(metric, "+0%", current, baseline, cur=cur, base=base)
    assert v.passed
    assert "CI [+0, +0]" in v.message
    assert v.message.endswith("within the threshold, not significant")


@pytest.mark.parametrize(("key", "metric"), [(AGREE, "agreement"), (TOP5_CORRECT, "top5_accuracy")])
def test_identical_binary_vectors_raise_no_alarm(key, metric):
    (current, _), cur, _ = _binary_case(key, metric, worse=25)
    v = _gate(metric, "-0 abs", current, dict(current), cur=cur, base=cur)
    assert v.passed
    assert (v.evidence.b, v.evidence.c) == (0, 0)


def test_a_rise_beyond_the_threshold_from_one_example_is_not_significant():
    before = np.ones(10)
    now = before.copy()
    now[3] = 2.5  # +15 % on average, all of it from one example of ten
    current, baseline = {"mae": float(now.mean())}, {"mae": float(before.mean())}
    v = _gate("mae", "+10%", current, baseline, cur=_vectors(abs_error=now), base=_vectors(abs_error=before))
    assert v.message.startswith("mae 1.15 > limit 1.10")
    assert v.passed
    assert v.message.endswith("not significant: passed")


def test_bootstrap_verdicts_are_deterministic():
    (current, baseline), cur, base = _value_case(KL, "kl_divergence", scale=1.05, seed=5)
    first = _gate("kl_divergence", "+1%", current, baseline, cur=cur, base=base)
    again = _gate("kl_divergence", "+1%", current, baseline, cur=cur, base=base)
    assert first == again


def test_bootstrap_resamples_follow_the_policy():
    (current, baseline), cur, base = _value_case(ABS_ERROR, "mae", scale=1.2)
    v = _gate(
        "mae", "+10%", current, baseline, policy=GatePolicySpec(bootstrap_resamples=300), cur=cur, base=base
    )
    assert "(300 resamples)" in v.message


def _macro_case(wrong: int, n: int = 600):
    rng = np.random.default_rng(11)
    labels = rng.integers(0, 6, n)
    before = labels.copy()
    now = labels.copy()
    now[:wrong] = (labels[:wrong] + 1) % 6
    f1 = {
        "v": lambda p: float(
            evaluate_outputs(
                np.eye(6)[p],
                task="classification",
                output_kind="probabilities",
                labels=labels,
                num_classes=6,
                reference=None,
            ).metrics["macro_f1"]
        )
    }
    current, baseline = {"macro_f1": f1["v"](now)}, {"macro_f1": f1["v"](before)}
    cur = VariantSamples(predictions=now, labels=labels)
    base = VariantSamples(predictions=before, labels_fingerprint=labels_fingerprint(labels))
    return current, baseline, cur, base


def test_macro_f1_drop_is_found_by_a_bootstrap_over_predictions():
    current, baseline, cur, base = _macro_case(wrong=60)
    v = _gate("macro_f1", "-0.02 abs", current, baseline, cur_dist=cur, base_dist=base)
    assert not v.passed
    assert "paired bootstrap over 600 examples" in v.message


def test_macro_f1_unchanged_predictions_pass():
    current, baseline, cur, _ = _macro_case(wrong=0)
    base = VariantSamples(predictions=cur.predictions, labels_fingerprint=labels_fingerprint(cur.labels))
    v = _gate("macro_f1", "-0 abs", current, baseline, cur_dist=cur, base_dist=base)
    assert v.passed
    assert "CI [+0, +0]" in v.message


# ---- falling back to the plain comparison ------------------------------------------------------------


def test_vectors_for_other_examples_fall_back_to_the_plain_comparison():
    (current, baseline), cur, base = _binary_case(AGREE, "agreement")
    other = ExampleVectors(values=base.values, fingerprint="f" * 16)
    v = _gate("agreement", "-0.01 abs", current, baseline, cur=cur, base=other)
    assert not v.passed
    assert v.message.endswith("plain comparison: the baseline's per-example values are for other examples")


@pytest.mark.parametrize(
    ("cur", "base", "reason"),
    [
        (None, _vectors(kl=[0.1]), "this run kept no per-example kl values"),
        (_vectors(kl=[0.1]), None, "the baseline stores no per-example kl values"),
        (_vectors(kl=[0.1]), _vectors(agree=[1.0]), "the baseline stores no per-example kl values"),
        (ExampleVectors({"kl": np.ones(1)}, None), _vectors(kl=[0.1]), "which examples"),
    ],
)
def test_missing_vectors_fall_back_and_say_why(cur, base, reason):
    v = _gate("kl_divergence", "+10%", {"kl_divergence": 1.0}, {"kl_divergence": 0.1}, cur=cur, base=base)
    assert not v.passed
    assert reason in v.message
    assert isinstance(v.evidence, ThresholdEvidence)
    assert reason in v.evidence.reason


def test_the_largest_output_difference_has_no_paired_test():
    v = _gate(
        "output_abs_diff_max",
        "+10%",
        {"output_abs_diff_max": 0.5},
        {"output_abs_diff_max": 0.2},
        cur=_vectors(abs_diff=[0.1]),
        base=_vectors(abs_diff=[0.1]),
    )
    assert not v.passed
    assert "plain comparison: a maximum over examples has no paired test" in v.message


def test_every_quality_metric_has_its_kind_of_test():
    kinds = {metric: type(test) for metric, test in QUALITY_TESTS.items()}
    assert kinds == {
        "accuracy": McNemarTest,
        "top5_accuracy": McNemarTest,
        "agreement": McNemarTest,
        "macro_f1": BootstrapTest,
        "mae": BootstrapTest,
        "rmse": BootstrapTest,
        "kl_divergence": BootstrapTest,
        "output_abs_diff_mean": BootstrapTest,
        "output_abs_diff_max": NoTest,
    }


# ---- limits without a baseline ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "limit", "value", "passed", "message"),
    [
        ("agreement", 0.99, 0.9, False, "agreement 0.9 < limit 0.99"),
        ("agreement", 0.99, 0.995, True, "agreement 0.995 >= limit 0.99"),
        ("kl_divergence", 0.01, 0.02, False, "kl_divergence 0.02 > limit 0.01"),
        ("kl_divergence", "0.01", 0.004, True, "kl_divergence 0.004 <= limit 0.01"),
        ("output_abs_diff_max", 0, 0.0, True, "output_abs_diff_max 0 <= limit 0"),
        ("mae", 0.5, 0.7, False, "mae 0.7 > limit 0.5"),
        ("top5_accuracy", 0.9, 0.95, True, "top5_accuracy 0.95 >= limit 0.9"),
        ("macro_f1", 0.8, 0.7, False, "macro_f1 0.7 < limit 0.8"),
    ],
)
def test_absolute_limits_apply_without_a_baseline_in_the_catalogs_direction(
    metric, limit, value, passed, message
):
    v = _gate(metric, limit, {metric: value}, None)
    assert v.passed is passed
    assert v.message == message


def test_a_fraction_limit_beyond_one_is_refused():
    with pytest.raises(ValueError, match=r"agreement is a fraction \(0\.\.1\): write 0\.99 for 99 %"):
        parse_threshold("agreement", 99)
    assert parse_threshold("agreement", 1).amount == 1.0
    assert parse_threshold("kl_divergence", 2.5).amount == 2.5  # nats: no upper bound


def test_fidelity_gates_on_the_reference_variant_itself_pass():
    rng = np.random.default_rng(2)
    outputs = rng.normal(size=(200, 10)).astype(np.float32)
    quality = evaluate_outputs(
        outputs, task="classification", output_kind="logits", labels=None, num_classes=None, reference=outputs
    )
    gates = {"agreement": 1.0, "kl_divergence": 0, "output_abs_diff_max": 0, "output_abs_diff_mean": 0}
    verdicts = evaluate(gates, {"reference": quality.metrics}, None)
    assert [v.status for v in verdicts] == ["pass"] * 4
    # and against its own baseline, with the paired tests
    vectors = ExampleVectors(values=quality.per_example, fingerprint=FP)
    relative = {"agreement": "-0 abs", "kl_divergence": "+0 abs", "output_abs_diff_mean": "+0 abs"}
    verdicts = evaluate(
        relative,
        {"reference": quality.metrics},
        {"reference": quality.metrics},
        current_examples={"reference": vectors},
        baseline_examples={"reference": vectors},
    )
    assert [v.status for v in verdicts] == ["pass"] * 3
    assert all("not significant" in v.message for v in verdicts)


# ---- through judge_measurement -----------------------------------------------------------------------


def _judge_agreement(m, baseline_agree, *, examples_fingerprint=None):
    """The one verdict of judge_measurement on `m` for agreement -0.01 abs from a baseline of 1.0,
    whose per-example agreement values are `baseline_agree`."""
    verdicts = judge_measurement(
        "v",
        m,
        {"agreement": "-0.01 abs"},
        GatePolicySpec(),
        {"agreement": 1.0},
        None,
        None,
        examples_fingerprint=examples_fingerprint,
        baseline_examples=_vectors(agree=baseline_agree),
    )
    return one(verdicts)


def test_judge_pairs_the_measurements_vectors_with_the_baselines():
    m = measurement()
    now = np.ones(500)
    now[:50] = 0.0
    m.per_example = {AGREE: now.tolist()}
    m.metrics["agreement"] = 0.9
    v = _judge_agreement(m, np.ones(500), examples_fingerprint=FP)
    assert v.failed
    assert "McNemar" in v.message
    assert v.measurement == 1


def test_judge_without_a_fingerprint_falls_back_to_the_plain_comparison():
    m = measurement()
    m.per_example = {AGREE: [1.0, 0.0]}
    m.metrics["agreement"] = 0.5
    v = _judge_agreement(m, [1.0, 1.0])
    assert v.failed
    assert "which examples the per-example values are for is not known" in v.message
