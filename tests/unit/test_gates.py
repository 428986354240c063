"""Gate evaluation: current metrics against limits and baselines."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest

from harness.errors import UserError
from harness.gates.evaluate import evaluate
from harness.metrics.latency import latency_summary
from harness.results import ThresholdEvidence
from harness.samples import VariantSamples, labels_fingerprint
from harness.scenario.schema import GatePolicySpec


def one(verdicts):
    assert len(verdicts) == 1, verdicts
    return verdicts[0]


def test_gate_fails_when_p95_regresses_beyond_threshold():
    v = one(
        evaluate(
            {"latency_p95_ms": "+10%"}, {"int8": {"latency_p95_ms": 3.41}}, {"int8": {"latency_p95_ms": 2.0}}
        )
    )
    assert not v.passed
    assert v.message == (
        "latency_p95_ms 3.41 > limit 2.20 (baseline 2.00 +10%); "
        "plain comparison: this run kept no latency samples"
    )
    assert (v.variant, v.metric, v.threshold, v.current, v.baseline) == (
        "int8",
        "latency_p95_ms",
        "+10%",
        3.41,
        2.0,
    )
    assert v.limit == pytest.approx(2.2)


def test_gate_passes_a_regression_within_threshold():
    v = one(
        evaluate({"latency_p95_ms": "+10%"}, {"a": {"latency_p95_ms": 2.15}}, {"a": {"latency_p95_ms": 2.0}})
    )
    assert v.passed
    assert v.message.startswith("latency_p95_ms 2.15 <= limit 2.20 (baseline 2.00 +10%); plain comparison")


def test_gate_passes_an_improvement():
    v = one(
        evaluate({"latency_p95_ms": "+10%"}, {"a": {"latency_p95_ms": 1.0}}, {"a": {"latency_p95_ms": 2.0}})
    )
    assert v.passed


def test_higher_is_better_relative_gate_fails_on_a_drop_beyond_threshold():
    gates = {"throughput_rps": "-5%"}
    assert not one(evaluate(gates, {"a": {"throughput_rps": 90.0}}, {"a": {"throughput_rps": 100.0}})).passed
    assert one(evaluate(gates, {"a": {"throughput_rps": 96.0}}, {"a": {"throughput_rps": 100.0}})).passed
    assert one(evaluate(gates, {"a": {"throughput_rps": 150.0}}, {"a": {"throughput_rps": 100.0}})).passed


def test_absolute_accuracy_gate_fails_on_a_drop_beyond_delta():
    v = one(evaluate({"accuracy": "-0.01 abs"}, {"a": {"accuracy": 0.93}}, {"a": {"accuracy": 0.95}}))
    assert not v.passed
    assert v.message == (
        "accuracy 0.93 < limit 0.94 (baseline 0.95 -0.01 abs); "
        "plain comparison: this run kept no per-example predictions"
    )


def test_absolute_gate_accepts_a_drop_of_exactly_the_delta_despite_float_noise():
    # 0.95 - 0.01 is 0.9399999999999999 in binary floating point
    assert one(
        evaluate({"accuracy": "-0.01 abs"}, {"a": {"accuracy": 0.94}}, {"a": {"accuracy": 0.95}})
    ).passed


def test_absolute_gate_on_lower_is_better_metric():
    gates = {"model_size_bytes": "+100 abs"}
    assert one(evaluate(gates, {"a": {"model_size_bytes": 1100}}, {"a": {"model_size_bytes": 1000}})).passed
    v = one(evaluate(gates, {"a": {"model_size_bytes": 1101}}, {"a": {"model_size_bytes": 1000}}))
    assert not v.passed
    assert v.message == "model_size_bytes 1101 > limit 1100 (baseline 1000 +100 abs)"


def test_bare_limit_applies_without_a_baseline():
    v = one(evaluate({"error_rate": 0}, {"a": {"error_rate": 0.0123}}, None))
    assert not v.passed
    assert v.baseline is None
    assert v.message == "error_rate 0.0123 > limit 0"
    assert one(evaluate({"error_rate": 0}, {"a": {"error_rate": 0.0}}, None)).passed


def test_bare_limit_is_a_minimum_for_higher_is_better_metrics():
    assert not one(evaluate({"accuracy": 0.9}, {"a": {"accuracy": 0.85}}, None)).passed
    assert one(evaluate({"accuracy": 0.9}, {"a": {"accuracy": 0.95}}, None)).passed


def test_relative_gate_without_baseline_gives_no_verdict_but_limits_still_apply():
    verdicts = evaluate(
        {"latency_p95_ms": "+10%", "error_rate": 0},
        {"a": {"latency_p95_ms": 9.0, "error_rate": 0.0}},
        {"other": {"latency_p95_ms": 1.0}},
    )
    assert [(v.variant, v.metric) for v in verdicts] == [("a", "error_rate")]


def test_gate_added_after_the_baseline_passes_visibly_as_not_compared():
    # behaviour change: this used to yield no verdict at all, so a new gate vanished silently
    v = one(evaluate({"latency_p95_ms": "+10%"}, {"a": {"latency_p95_ms": 9.0}}, {"a": {"accuracy": 0.9}}))
    assert v.passed
    assert (v.current, v.baseline, v.limit) == (9.0, None, None)
    assert "not compared" in v.message
    assert "--update-baselines" in v.message
    assert v.evidence.kind == "threshold"
    assert v.evidence.compared is False


def test_gated_metric_missing_from_current_results_fails_clearly():
    v = one(
        evaluate({"latency_p95_ms": "+10%"}, {"int8": {"accuracy": 0.9}}, {"int8": {"latency_p95_ms": 2.0}})
    )
    assert not v.passed
    assert v.current is None
    assert "latency_p95_ms missing from the results of variant 'int8'" in v.message


def test_missing_metric_fails_a_bare_limit_too():
    v = one(evaluate({"error_rate": 0}, {"a": {}}, None))
    assert not v.passed


def test_nan_current_value_fails():
    v = one(evaluate({"accuracy": 0.5}, {"a": {"accuracy": float("nan")}}, None))
    assert not v.passed
    assert "NaN" in v.message


def test_verdicts_follow_variant_then_gate_order():
    gates = {"error_rate": 0, "accuracy": 0.5}
    current = {"ref": {"error_rate": 0.0, "accuracy": 0.9}, "int8": {"error_rate": 0.1, "accuracy": 0.9}}
    verdicts = evaluate(gates, current, None)
    assert [(v.variant, v.metric, v.passed) for v in verdicts] == [
        ("ref", "error_rate", True),
        ("ref", "accuracy", True),
        ("int8", "error_rate", False),
        ("int8", "accuracy", True),
    ]


def test_values_that_print_alike_get_more_digits():
    v = one(evaluate({"latency_p95_ms": 2.2}, {"a": {"latency_p95_ms": 2.2001}}, None))
    assert not v.passed
    assert v.message == "latency_p95_ms 2.2001 > limit 2.2"


def test_bad_gate_is_a_user_error():
    with pytest.raises(UserError, match="improving direction"):
        evaluate({"latency_p95_ms": "-10%"}, {}, None)
    with pytest.raises(UserError, match="unknown metric"):
        evaluate({"latency": "+10%"}, {}, None)


# --- statistical gates: distributions, policy, confirmation -------------------------------------


def _latency_case(scale: float, n: int = 2000, seed: int = 0):
    """Metrics and samples of a baseline run and a current run `scale` times slower."""
    rng = np.random.default_rng(seed)
    base = rng.lognormal(np.log(5.0), 0.4, n)
    cur = rng.lognormal(np.log(5.0), 0.4, n) * scale
    current = {"a": latency_summary(cur)}
    baseline = {"a": latency_summary(base)}
    return (
        current,
        baseline,
        {"a": VariantSamples(latencies_ms=cur)},
        {"a": VariantSamples(latencies_ms=base)},
    )


def test_latency_gate_with_distributions_fails_a_significant_regression_beyond_threshold():
    current, baseline, cur, base = _latency_case(1.3)
    v = one(evaluate({"latency_p95_ms": "+10%"}, current, baseline, current_dist=cur, baseline_dist=base))
    assert not v.passed
    assert "Mann-Whitney one-sided p=" in v.message
    assert v.message.endswith("significant: regression")
    assert v.evidence.test == "mannwhitney"
    assert v.evidence.p_value < 0.01
    assert v.evidence.min_ratio == pytest.approx(1.1)
    assert (v.evidence.n_current, v.evidence.n_baseline) == (2000, 2000)
    json.dumps(asdict(v.evidence), allow_nan=False)  # results.json refuses NaN and infinity


def test_latency_gate_passes_a_breach_that_is_not_significant():
    rng = np.random.default_rng(1)
    base = rng.lognormal(np.log(5.0), 0.4, 40)
    cur = base.copy()
    cur[np.argmax(cur)] *= 4  # p99 jumps, the rank test sees one value out of 40 move
    current, baseline = {"a": latency_summary(cur)}, {"a": latency_summary(base)}
    plain = one(evaluate({"latency_p99_ms": "+10%"}, current, baseline))
    assert not plain.passed, "precondition: the threshold alone would fail this"
    v = one(
        evaluate(
            {"latency_p99_ms": "+10%"},
            current,
            baseline,
            current_dist={"a": VariantSamples(latencies_ms=cur)},
            baseline_dist={"a": VariantSamples(latencies_ms=base)},
        )
    )
    assert v.passed
    assert v.message.endswith("not significant: passed")
    assert v.evidence.exceeds_threshold is True
    assert v.evidence.significant is False


def test_latency_gate_uses_the_bootstrap_when_the_policy_asks():
    current, baseline, cur, base = _latency_case(1.3, n=1500, seed=2)
    policy = GatePolicySpec(latency_test="bootstrap", bootstrap_resamples=500)
    v = one(
        evaluate(
            {"latency_p95_ms": "+10%"}, current, baseline, policy=policy, current_dist=cur, baseline_dist=base
        )
    )
    assert not v.passed
    assert v.evidence.test == "bootstrap"
    assert v.evidence.ci_low > 1.0
    assert v.evidence.confidence_level == pytest.approx(0.98)
    assert "bootstrap 98% CI of the p95 ratio" in v.message


def test_latency_test_none_keeps_the_plain_comparison():
    current, baseline, cur, base = _latency_case(1.3)
    policy = GatePolicySpec(latency_test="none")
    v = one(
        evaluate(
            {"latency_p95_ms": "+10%"}, current, baseline, policy=policy, current_dist=cur, baseline_dist=base
        )
    )
    assert not v.passed
    assert v.evidence == ThresholdEvidence(reason="gate_policy.latency_test is none")


def test_latency_gate_falls_back_and_says_so_when_the_baseline_has_no_histogram():
    current, baseline, cur, _ = _latency_case(1.3)
    v = one(evaluate({"latency_p95_ms": "+10%"}, current, baseline, current_dist=cur, baseline_dist=None))
    assert not v.passed
    assert v.message.endswith("plain comparison: the baseline stores no latency histogram")
    assert v.evidence.kind == "threshold"


def test_throughput_gate_stays_a_plain_comparison():
    v = one(
        evaluate(
            {"throughput_rps": "-5%"},
            {"a": {"throughput_rps": 90.0}},
            {"a": {"throughput_rps": 100.0}},
            current_dist={"a": VariantSamples(latencies_ms=np.ones(10))},
            baseline_dist={"a": VariantSamples(latencies_ms=np.ones(10))},
        )
    )
    assert not v.passed
    assert v.message == "throughput_rps 90.00 < limit 95.00 (baseline 100.0 -5%)"
    assert v.evidence == ThresholdEvidence()


def _accuracy_case(flip: int, n: int = 450):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 10, n)
    base_pred = labels.copy()
    base_pred[:5] = (labels[:5] + 1) % 10
    cur_pred = base_pred.copy()
    cur_pred[5 : 5 + flip] = (labels[5 : 5 + flip] + 1) % 10
    current = {"a": {"accuracy": float(np.mean(cur_pred == labels))}}
    baseline = {"a": {"accuracy": float(np.mean(base_pred == labels))}}
    cur = {"a": VariantSamples(predictions=cur_pred, labels=labels)}
    base = {"a": VariantSamples(predictions=base_pred, labels_fingerprint=labels_fingerprint(labels))}
    return current, baseline, cur, base


def test_accuracy_gate_fails_a_significant_drop_beyond_threshold():
    current, baseline, cur, base = _accuracy_case(flip=20)
    v = one(evaluate({"accuracy": "-0.01 abs"}, current, baseline, current_dist=cur, baseline_dist=base))
    assert not v.passed
    assert "McNemar exact one-sided p=" in v.message
    assert "20 right->wrong, 0 wrong->right of 450" in v.message
    assert v.evidence.test == "mcnemar"
    assert (v.evidence.b, v.evidence.c, v.evidence.n) == (20, 0, 450)
    assert v.evidence.ci_low < v.evidence.delta < v.evidence.ci_high < 0


def test_accuracy_drop_beyond_threshold_but_not_significant_passes():
    current, baseline, cur, base = _accuracy_case(flip=5)  # -1.1 points: beyond -0.01, p = 1/32
    v = one(evaluate({"accuracy": "-0.01 abs"}, current, baseline, current_dist=cur, baseline_dist=base))
    assert v.passed
    assert v.evidence.exceeds_threshold is True
    assert v.evidence.p_value == pytest.approx(0.5**5)
    assert v.message.endswith("not significant: passed")


def test_accuracy_gate_falls_back_when_predictions_are_for_other_examples():
    current, baseline, cur, base = _accuracy_case(flip=20)
    base = {"a": VariantSamples(predictions=base["a"].predictions, labels_fingerprint="0" * 16)}
    v = one(evaluate({"accuracy": "-0.01 abs"}, current, baseline, current_dist=cur, baseline_dist=base))
    assert not v.passed
    assert v.message.endswith("plain comparison: the baseline's predictions are for other examples")


def _window_case(current_windows: np.ndarray, baseline_windows: np.ndarray):
    """Pooled metrics and samples built from per-window p95s (the pooled p95 is their mean)."""
    current = {"a": {"latency_p95_ms": float(np.mean(current_windows))}}
    baseline = {"a": {"latency_p95_ms": float(np.mean(baseline_windows))}}
    rng = np.random.default_rng(0)
    cur = VariantSamples(
        latencies_ms=rng.lognormal(np.log(0.8), 0.1, 4000)
        * np.mean(current_windows)
        / np.mean(baseline_windows),
        window_latencies={"latency_p95_ms": current_windows},
    )
    base = VariantSamples(
        latencies_ms=rng.lognormal(np.log(0.8), 0.1, 4000),
        window_latencies={"latency_p95_ms": baseline_windows},
    )
    return current, baseline, {"a": cur}, {"a": base}


def test_default_window_test_passes_a_pooled_breach_caused_by_a_burst_in_some_windows():
    rng = np.random.default_rng(7)
    base_w = 0.88 * rng.lognormal(0, 0.02, 20)
    cur_w = 0.88 * rng.lognormal(0, 0.02, 20)
    cur_w[:10] *= 1.6  # half the windows hit by a neighbour
    current, baseline, cur, base = _window_case(cur_w, base_w)
    plain = one(evaluate({"latency_p95_ms": "+7.5%"}, current, baseline))
    assert not plain.passed, "precondition: the pooled value alone would fail"
    v = one(evaluate({"latency_p95_ms": "+7.5%"}, current, baseline, current_dist=cur, baseline_dist=base))
    assert v.passed
    assert v.evidence.test == "windows"
    assert v.evidence.exceeds_threshold is False
    assert (v.evidence.n_current, v.evidence.n_baseline) == (20, 20)
    assert "window test: q25 of 20 vs 20 window p95s" in v.message
    json.dumps(asdict(v.evidence), allow_nan=False)


def test_default_window_test_fails_a_slowdown_of_every_window():
    rng = np.random.default_rng(8)
    base_w = 0.88 * rng.lognormal(0, 0.02, 20)
    cur_w = 0.88 * 1.15 * rng.lognormal(0, 0.02, 20)
    current, baseline, cur, base = _window_case(cur_w, base_w)
    v = one(evaluate({"latency_p95_ms": "+7.5%"}, current, baseline, current_dist=cur, baseline_dist=base))
    assert not v.passed
    assert v.message.endswith("significant: regression")
    assert v.evidence.ratio == pytest.approx(1.15, abs=0.03)


def test_window_test_falls_back_to_the_rank_test_with_too_few_windows_and_says_why():
    current, baseline, cur, base = _window_case(np.full(5, 1.2), np.full(20, 0.9))
    v = one(evaluate({"latency_p95_ms": "+10%"}, current, baseline, current_dist=cur, baseline_dist=base))
    assert v.evidence.test == "mannwhitney"
    assert (
        v.evidence.fallback
        == "window test not possible: it needs 8 windows per side, this run has 5 and the baseline 20"
    )
    assert "(window test not possible: " in v.message
    assert not v.passed
