"""Verdicts of one measurement of a run's variants: dead and INVALID measurements, then the gates.

An INVALID measurement (harness.load.validity) is never compared with a baseline as if it were
a result: its load-dependent gates are left out and one failing `validity` verdict carries the
reasons. Latency and accuracy gates get the stored distributions for their statistical tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.results import VariantResult, Verdict

if TYPE_CHECKING:
    from harness.scenario.schema import Scenario


def judge_variants(
    variants: list[VariantResult],
    scenario: Scenario,
    baseline: dict[str, dict[str, float]] | None,
    baseline_dist: dict[str, Any] | None,
    labels: Any,
) -> list[Verdict]:
    """Verdicts for `variants`: dead and INVALID measurements first, then the scenario's gates.

    Load-dependent gates of an INVALID measurement are left out: its numbers are not a result."""
    import numpy as np

    from harness.gates.evaluate import evaluate
    from harness.gates.statistics import VariantSamples

    invalid = {v.name for v in variants if not v.details.get("validity", {}).get("valid", True)}
    current = {
        v.name: {k: x for k, x in v.metrics.items() if v.name not in invalid or not is_load_metric(k)}
        for v in variants
    }
    current_dist = {
        v.name: VariantSamples(
            latencies_ms=np.asarray(v.latencies_ms) if v.latencies_ms else None,
            window_latencies={k: np.asarray(w) for k, w in v.window_latencies.items()} or None,
            predictions=np.asarray(v.predictions) if v.predictions else None,
            labels=labels if v.predictions else None,
        )
        for v in variants
    }
    verdicts = evaluate(
        dict(scenario.gates),
        current,
        baseline,
        policy=scenario.gate_policy,
        current_dist=current_dist,
        baseline_dist=baseline_dist,
    )
    verdicts = [v for v in verdicts if not (v.variant in invalid and is_load_metric(v.metric))]
    return [*dead_variant_verdicts(variants), *invalid_verdicts(variants), *verdicts]


def is_load_metric(metric: str) -> bool:
    """Metrics that come from the load window (and mean nothing when the window is INVALID)."""
    from harness.metrics.catalog import METRICS

    static = {"accuracy", "accuracy_inprocess", "accuracy_drop_vs_reference", "model_size_bytes"}
    static |= {"model_size_gzip_bytes", "sparsity", "param_count"}
    return metric in METRICS and metric not in static


def invalid_verdicts(variants: list[VariantResult]) -> list[Verdict]:
    return [
        Verdict(
            variant=v.name,
            metric="validity",
            threshold="a VALID measurement",
            current=None,
            baseline=None,
            limit=None,
            passed=False,
            message="measurement INVALID, not compared with the baseline: "
            + "; ".join(v.details["validity"].get("reasons") or ["no reason recorded"]),
        )
        for v in variants
        if v.latencies_ms and not v.details.get("validity", {}).get("valid", True)
    ]


def dead_variant_verdicts(variants: list[VariantResult]) -> list[Verdict]:
    """A variant with no successful request has no latency to gate: it fails rather than passing silently."""
    return [
        Verdict(
            variant=v.name,
            metric="request_count",
            threshold="at least one successful request",
            current=v.metrics.get("request_count"),
            baseline=None,
            limit=None,
            passed=False,
            message="no request succeeded in the measurement window; nothing could be measured",
        )
        for v in variants
        if not v.latencies_ms
    ]
