"""Gate evaluation: current metrics against limits and baselines."""

from __future__ import annotations

import pytest

from harness.errors import UserError
from harness.gates.evaluate import evaluate


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
    assert v.message == "latency_p95_ms 3.41 > limit 2.20 (baseline 2.00 +10%)"
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
    assert v.message == "latency_p95_ms 2.15 <= limit 2.20 (baseline 2.00 +10%)"


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
    assert v.message == "accuracy 0.93 < limit 0.94 (baseline 0.95 -0.01 abs)"


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


def test_relative_gate_with_baseline_missing_that_metric_gives_no_verdict():
    assert (
        evaluate({"latency_p95_ms": "+10%"}, {"a": {"latency_p95_ms": 9.0}}, {"a": {"accuracy": 0.9}}) == []
    )


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
