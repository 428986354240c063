"""Search for max_rps_at_slo: the highest throughput whose latency percentile stays under an SLO.

A binary search over the open-loop rate (or the closed-loop user count) between `low` and
`high`: each probe is one measured run; it passes when the chosen percentile is at most
`slo_ms` and the error rate within the budget. The answer is the highest *measured* throughput
of a passing probe (not the probed setting: a server may not deliver the rate it is offered).
Pure logic: the caller supplies the measurement, so tests can use a model of a server.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.load.plan import LoadPoint, point_label
from harness.load.result import LoadResult
from harness.scenario.load_spec import SearchSpec


@dataclass
class SearchResult:
    """The answer (None when even `low` misses the SLO), the point that gave it, and every probe."""

    max_rps_at_slo: float | None
    best_point: LoadPoint | None
    probes: list[dict[str, Any]] = field(default_factory=list)


def default_rate_search_users(spec: SearchSpec) -> int:
    """In-flight slots for a rate search: enough to carry `high` req/s at the SLO latency.

    By Little's law a server meeting the SLO at `high` req/s has high * slo requests in flight;
    more slots could only carry requests that already miss the SLO.
    """
    return max(1, math.ceil(spec.high * spec.slo_ms / 1000.0))


def search_max_rps_at_slo(
    measure: Callable[[LoadPoint], LoadResult],
    spec: SearchSpec,
    percentile_of: Callable[[LoadResult, float], float],
    *,
    users: int | None = None,
    error_budget: float = 0.01,
) -> SearchResult:
    """Binary search between `spec.low` and `spec.high` with at most `spec.iterations` probes.

    Probes `low` first (if it fails there is no answer), then `high` (if it passes, done), then
    halves the interval between the highest pass and the lowest failure. `users` is the open
    loop's in-flight slots in a rate search (default `default_rate_search_users`); a user search
    probes whole user counts. Returns the highest throughput measured by a passing probe.
    """
    if spec.low > spec.high:
        raise ValueError(f"search.low ({spec.low:g}) is above search.high ({spec.high:g})")
    by_users = spec.over == "users"
    slots = users if users is not None else default_rate_search_users(spec)
    probes: list[dict[str, Any]] = []
    passing: list[tuple[float, LoadPoint]] = []

    def probe(value: float) -> bool:
        point = (
            LoadPoint(int(value), None, point_label(int(value), None))
            if by_users
            else LoadPoint(slots, value, point_label(slots, value))
        )
        result = measure(point)
        observed = percentile_of(result, spec.percentile)
        passed = (
            not math.isnan(observed)
            and observed <= spec.slo_ms
            and result.request_count > 0
            and result.error_rate <= error_budget
        )
        probes.append(
            {
                "over": spec.over,
                "value": value,
                "label": point.label,
                "throughput_rps": result.throughput_rps,
                "percentile": spec.percentile,
                "percentile_ms": observed,
                "error_rate": result.error_rate,
                "request_count": result.request_count,
                "passed": passed,
            }
        )
        if passed:
            passing.append((result.throughput_rps, point))
        return passed

    low, high = (math.ceil(spec.low), math.floor(spec.high)) if by_users else (spec.low, spec.high)
    if by_users and low > high:
        raise ValueError(
            f"search over users needs a whole number between low and high, got {spec.low:g}..{spec.high:g}"
        )
    # low must pass for there to be an answer; if high passes too, there is nothing to search
    if probe(low) and len(probes) < spec.iterations and high > low and not probe(high):
        good, bad = low, high
        while len(probes) < spec.iterations:
            mid = (good + bad) // 2 if by_users else (good + bad) / 2.0
            if by_users and mid <= good:
                break  # adjacent user counts: nothing left between them
            if probe(mid):
                good = mid
            else:
                bad = mid
    if not passing:
        return SearchResult(None, None, probes)
    best_rps, best_point = max(passing, key=lambda p: p[0])
    return SearchResult(best_rps, best_point, probes)
