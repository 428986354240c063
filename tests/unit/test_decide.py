"""decide(): one rule from a variant's measurements to its final verdicts and outcome."""

from __future__ import annotations

from harness.gates.decide import decide, needs_remeasure
from harness.gates.judge import judge_measurement
from harness.results import Outcome
from harness.scenario.schema import GatePolicySpec
from tests.unit.records import measurement, verdict

GATES = {"latency_p95_ms": "+10%", "accuracy": "-0.01 abs"}


def judged(m, baseline=None):
    m.verdicts = judge_measurement("v", m, GATES, GatePolicySpec(latency_test="none"), baseline, None, None)
    return m


def test_a_valid_remeasure_clears_a_first_invalid_measurement():
    first = judged(measurement(1, valid=False))
    assert [v.status for v in first.verdicts if v.metric == "validity"] == ["inconclusive"]
    second = judged(measurement(2, valid=True))
    verdicts, outcome = decide([first, second])
    assert outcome is Outcome.PASS
    assert outcome.exit_code == 0
    assert not [v for v in verdicts if v.metric == "validity"]


def test_still_invalid_after_remeasuring_is_inconclusive_not_a_regression():
    ms = [judged(measurement(1, valid=False)), judged(measurement(2, valid=False))]
    verdicts, outcome = decide(ms)
    assert outcome is Outcome.INCONCLUSIVE
    assert outcome.exit_code == 3
    (validity,) = [v for v in verdicts if v.metric == "validity"]
    assert validity.status == "inconclusive"
    assert "INVALID in all 2 measurements" in validity.message


def test_an_invalid_measurement_judges_model_gates_but_not_load_gates():
    baseline = {"latency_p95_ms": 0.1, "accuracy": 0.99}  # 12x slower and 2 points less accurate
    m = judged(measurement(1, valid=False), baseline)
    metrics = {v.metric for v in m.verdicts}
    assert "latency_p95_ms" not in metrics
    assert "accuracy" in metrics
    _verdicts, outcome = decide([m])
    assert outcome is Outcome.REGRESSION, "an accuracy drop is a regression whatever the load noise"


def test_a_failure_must_hold_in_every_valid_measurement():
    first = measurement(1, verdicts=[verdict("latency_p95_ms", "fail", 1)])
    second = measurement(2, verdicts=[verdict("latency_p95_ms", "pass", 2)])
    verdicts, outcome = decide([first, second])
    assert outcome is Outcome.PASS
    (v,) = verdicts
    assert v.passed
    assert v.measurement == 2
    assert "not confirmed" in v.message


def test_a_held_failure_is_a_regression_named_once():
    ms = [measurement(n, verdicts=[verdict("latency_p95_ms", "fail", n)]) for n in (1, 2)]
    verdicts, outcome = decide(ms)
    assert outcome is Outcome.REGRESSION
    (v,) = verdicts
    assert v.failed
    assert v.measurement == 2
    assert "failed in all 2 measurements" in v.message


def test_an_invalid_remeasure_does_not_confirm_or_clear_a_load_failure():
    first = measurement(1, verdicts=[verdict("latency_p95_ms", "fail", 1)])
    second = judged(measurement(2, valid=False))
    verdicts, outcome = decide([first, second])
    assert outcome is Outcome.REGRESSION
    assert [v.measurement for v in verdicts if v.metric == "latency_p95_ms"] == [1]


def test_remeasure_only_when_it_could_change_the_decision():
    assert needs_remeasure([measurement(1, valid=False)])
    assert needs_remeasure([measurement(1, verdicts=[verdict("throughput_rps", "fail")])])
    # a failed gate on the model itself will fail again: measuring the load again is wasted time
    assert not needs_remeasure([measurement(1, verdicts=[verdict("accuracy", "fail")])])
    assert not needs_remeasure([measurement(1, verdicts=[verdict("latency_p95_ms", "pass")])])
