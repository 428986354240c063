"""Which comparisons `harness ab` makes for a variant, and how the model's figures are decided."""

from __future__ import annotations

import numpy as np

from harness.ab.compare import SideFigures, compare_model, load_metrics, min_effect_for
from harness.scenario.schema import GatePolicySpec


def _side(size: float, predictions: list[int], labels: list[int]) -> SideFigures:
    right = np.mean(np.asarray(predictions) == np.asarray(labels))
    return SideFigures(
        metrics={"model_size_bytes": size, "accuracy": float(right)},
        predictions=np.asarray(predictions),
        per_example={},
        labels=np.asarray(labels),
        examples_fingerprint="same-examples",
    )


def _statuses(base: SideFigures, head: SideFigures, gates: dict) -> dict[str, str]:
    rows = compare_model("pruned", gates, GatePolicySpec(), base, head, min_effect=0.05)
    return {c.metric: c.status for c in rows}


def test_load_metrics_are_the_gated_ones_plus_p95_and_throughput():
    assert load_metrics({}) == ["latency_p95_ms", "throughput_rps"]
    assert load_metrics({"latency_p99_ms": "+10%", "accuracy": "-0.01 abs"}) == [
        "latency_p95_ms",
        "latency_p99_ms",
        "throughput_rps",
    ]


def test_a_relative_gate_sets_its_metrics_minimum_effect():
    gates = {"latency_p95_ms": "+12%", "throughput_rps": 100}
    assert min_effect_for("latency_p95_ms", gates, 0.05) == 0.12
    assert min_effect_for("throughput_rps", gates, 0.05) == 0.05  # a bare limit is no effect size


def test_size_and_accuracy_are_compared_even_when_not_gated():
    labels = [i % 3 for i in range(600)]
    base = _side(1000.0, labels, labels)
    same = _statuses(base, _side(1010.0, labels, labels), {})
    assert same == {"model_size_bytes": "unchanged", "accuracy": "unchanged"}
    worse_predictions = [(p + 1) % 3 if i < 60 else p for i, p in enumerate(labels)]  # 10% now wrong
    worse = _statuses(base, _side(1500.0, worse_predictions, labels), {})
    assert worse == {"model_size_bytes": "regressed", "accuracy": "regressed"}
    smaller = _statuses(base, _side(400.0, labels, labels), {})
    assert smaller["model_size_bytes"] == "improved"


def test_the_scenarios_own_quality_gate_replaces_the_default():
    labels = [i % 3 for i in range(600)]
    slightly = [(p + 1) % 3 if i < 12 else p for i, p in enumerate(labels)]  # 2% now wrong
    base, head = _side(1000.0, labels, labels), _side(1000.0, slightly, labels)
    assert _statuses(base, head, {})["accuracy"] == "regressed"  # beyond the default 0.01 drop
    assert _statuses(base, head, {"accuracy": "-0.05 abs"})["accuracy"] == "unchanged"
