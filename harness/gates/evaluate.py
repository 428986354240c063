"""Apply the scenario's gates to a run's metrics, against the stored baseline where one exists."""

from __future__ import annotations

import math
from collections.abc import Mapping

from harness.errors import UserError
from harness.gates.thresholds import Threshold, parse_threshold
from harness.metrics.catalog import METRICS
from harness.results import Verdict

Metrics = Mapping[str, float]


def parse_gates(thresholds: Mapping[str, str | int | float]) -> list[Threshold]:
    """Parse every gate, turning the first mistake into a UserError (exit 2)."""
    parsed = []
    for metric, text in thresholds.items():
        try:
            parsed.append(parse_threshold(metric, text))
        except ValueError as exc:
            raise UserError(str(exc)) from None
    return parsed


def evaluate(
    thresholds: Mapping[str, str | int | float],
    current: Mapping[str, Metrics],
    baseline: Mapping[str, Metrics] | None,
) -> list[Verdict]:
    """One verdict per (variant, gated metric), variants in `current` order, gates in scenario order.

    A relative or absolute gate whose variant/metric has no baseline value yields no verdict (the
    caller records a baseline instead); a bare limit always applies. A gated metric missing from
    the current results fails: a run that could not measure latency must not pass a latency gate.
    """
    gates = parse_gates(thresholds)
    verdicts: list[Verdict] = []
    for variant, metrics in current.items():
        base_metrics = (baseline or {}).get(variant) or {}
        for gate in gates:
            base_value = base_metrics.get(gate.metric)
            if gate.needs_baseline and (base_value is None or not math.isfinite(base_value)):
                continue
            verdicts.append(_judge(gate, variant, metrics.get(gate.metric), base_value))
    return verdicts


def _judge(gate: Threshold, variant: str, current: float | None, base: float | None) -> Verdict:
    limit = gate.limit(base)
    context = f" (baseline {_fmt(gate.metric, base)} {gate.text})" if gate.needs_baseline else ""

    def verdict(passed: bool, message: str) -> Verdict:
        return Verdict(
            variant=variant,
            metric=gate.metric,
            threshold=gate.text,
            current=current,
            baseline=base,
            limit=limit,
            passed=passed,
            message=message,
        )

    if current is None:
        return verdict(
            False, f"{gate.metric} missing from the results of variant {variant!r} (gate {gate.text!r})"
        )
    if math.isnan(current):
        return verdict(False, f"{gate.metric} is NaN for variant {variant!r} (gate {gate.text!r})")
    passed = gate.passes(current, limit)
    failed_op = ">" if gate.better == "lower" else "<"
    op = gate.comparison if passed else failed_op
    shown_current, shown_limit = _fmt_pair(gate.metric, current, limit)
    return verdict(passed, f"{gate.metric} {shown_current} {op} limit {shown_limit}{context}")


def _fmt(metric: str, value: float | None, digits: int | None = None) -> str:
    """Plain numbers without units, short but precise enough to compare: '3.41', '0.9583', '123456'."""
    if value is None:
        return "none"
    if not math.isfinite(value):
        return str(value)
    spec = METRICS.get(metric)
    if digits is not None:
        return f"{value:.{digits}g}"
    if spec is not None and spec.unit in ("bytes", "count") and value == int(value):
        return str(int(value))
    if value == 0:
        return "0"
    if abs(value) >= 1000:  # throughput 2428 req/s: decimals would only be noise
        return f"{value:.0f}"
    if abs(value) >= 100:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.4g}"


def _fmt_pair(metric: str, current: float, limit: float) -> tuple[str, str]:
    """Format both, adding digits when they would print the same but differ ('2.20 > limit 2.20')."""
    a, b = _fmt(metric, current), _fmt(metric, limit)
    digits = 6
    while a == b and current != limit and digits <= 17:
        a, b = _fmt(metric, current, digits), _fmt(metric, limit, digits)
        digits += 2
    return a, b
