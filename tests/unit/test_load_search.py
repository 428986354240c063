"""max_rps_at_slo binary search against models of a server (no real load)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.load.plan import LoadPoint
from harness.load.result import FAILURE_CLASSES, LoadResult
from harness.load.search import default_rate_search_users, search_max_rps_at_slo
from harness.scenario.load_spec import SearchSpec

MEASURE_S = 10.0


def result_with(latencies_s: np.ndarray, throughput_rps: float, failed: int = 0) -> LoadResult:
    failures = dict.fromkeys(FAILURE_CLASSES, 0)
    failures["http_status"] = failed
    return LoadResult(
        latencies_ms=list(latencies_s * 1000.0),
        failures=failures,
        measure_s=len(latencies_s) / throughput_rps if throughput_rps else MEASURE_S,
        warmup_s=1.0,
        generator="model",
        users=1,
        request_batch_size=1,
    )


class QueueModel:
    """An M/M/1 server with `capacity_rps`: sojourn times are exponential with rate capacity - load."""

    def __init__(self, capacity_rps: float = 200.0) -> None:
        self.capacity_rps = capacity_rps
        self.points: list[LoadPoint] = []

    def __call__(self, point: LoadPoint) -> LoadResult:
        self.points.append(point)
        rate = point.rate_rps
        assert rate is not None
        if rate >= self.capacity_rps:  # unstable queue: latency grows without bound
            return result_with(np.full(100, 30.0), self.capacity_rps)
        quantiles = (np.arange(1000) + 0.5) / 1000
        return result_with(-np.log(1 - quantiles) / (self.capacity_rps - rate), rate)


def percentile_of(result: LoadResult, q: float) -> float:
    return float(np.percentile(result.latencies_ms, q)) if result.latencies_ms else math.inf


def knee(capacity: float, slo_ms: float, percentile: float) -> float:
    """The highest M/M/1 load whose percentile sojourn time is the SLO."""
    return capacity + math.log(1 - percentile / 100) / (slo_ms / 1000)


def test_rate_search_finds_the_knee_within_one_step() -> None:
    spec = SearchSpec(slo_ms=50.0, percentile=95.0, low=10.0, high=400.0, iterations=8)
    model = QueueModel(200.0)

    found = search_max_rps_at_slo(model, spec, percentile_of, users=32)

    expected = knee(200.0, 50.0, 95.0)  # about 140 req/s
    step = (spec.high - spec.low) / 2 ** (spec.iterations - 2)
    assert found.max_rps_at_slo is not None
    assert expected - step <= found.max_rps_at_slo <= expected
    assert found.best_point is not None
    assert found.best_point.rate_rps == found.max_rps_at_slo
    assert len(found.probes) == spec.iterations
    assert [p["value"] for p in found.probes[:2]] == [10.0, 400.0]
    assert all(p.users == 32 and p.mode == "open" for p in model.points)
    assert all(p["passed"] == (p["percentile_ms"] <= 50.0) for p in found.probes)


def test_search_reports_none_when_even_the_lowest_load_misses_the_slo() -> None:
    spec = SearchSpec(slo_ms=5.0, percentile=99.0, low=150.0, high=400.0)
    model = QueueModel(200.0)

    found = search_max_rps_at_slo(model, spec, percentile_of, users=8)

    assert found.max_rps_at_slo is None
    assert found.best_point is None
    assert len(found.probes) == 1
    assert found.probes[0]["passed"] is False


def test_search_stops_at_high_when_high_already_meets_the_slo() -> None:
    spec = SearchSpec(slo_ms=100.0, low=10.0, high=100.0, iterations=6)

    found = search_max_rps_at_slo(QueueModel(1000.0), spec, percentile_of, users=8)

    assert found.max_rps_at_slo == pytest.approx(100.0)
    assert len(found.probes) == 2


def test_the_answer_is_the_highest_measured_throughput_not_the_probed_rate() -> None:
    spec = SearchSpec(slo_ms=1000.0, low=10.0, high=500.0)

    def saturating(point: LoadPoint) -> LoadResult:
        assert point.rate_rps is not None
        return result_with(np.full(200, 0.01), min(point.rate_rps, 120.0))  # never serves above 120

    found = search_max_rps_at_slo(saturating, spec, percentile_of, users=8)

    assert found.max_rps_at_slo == pytest.approx(120.0)


def test_a_probe_beyond_the_error_budget_fails_even_with_low_latency() -> None:
    spec = SearchSpec(slo_ms=50.0, low=10.0, high=200.0, iterations=8)

    def errors_above_100(point: LoadPoint) -> LoadResult:
        assert point.rate_rps is not None
        failed = 50 if point.rate_rps > 100 else 0
        return result_with(np.full(1000, 0.002), point.rate_rps, failed=failed)

    found = search_max_rps_at_slo(errors_above_100, spec, percentile_of, users=4, error_budget=0.01)

    assert found.max_rps_at_slo is not None
    assert 100.0 - (190.0 / 64) <= found.max_rps_at_slo <= 100.0
    assert all(p["passed"] == (p["error_rate"] <= 0.01) for p in found.probes)


def test_user_search_probes_whole_user_counts_in_a_closed_loop() -> None:
    spec = SearchSpec(slo_ms=20.0, over="users", low=1, high=64, iterations=10)
    seen: list[LoadPoint] = []

    def closed_loop(point: LoadPoint) -> LoadResult:
        # 5 ms per request up to a 1000 req/s server: beyond 5 users requests queue (Little's law)
        seen.append(point)
        throughput = min(point.users / 0.005, 1000.0)
        return result_with(np.full(500, point.users / throughput), throughput)

    found = search_max_rps_at_slo(closed_loop, spec, percentile_of)

    assert found.max_rps_at_slo == pytest.approx(1000.0)
    assert found.best_point is not None
    assert 5 <= found.best_point.users <= 20
    assert all(p.rate_rps is None and isinstance(p.users, int) for p in seen)
    assert len({p.users for p in seen}) == len(seen)  # no count probed twice
    assert len(seen) <= spec.iterations


def test_rate_search_defaults_to_enough_slots_for_high_at_the_slo() -> None:
    spec = SearchSpec(slo_ms=50.0, low=10.0, high=400.0, iterations=1)
    model = QueueModel()

    search_max_rps_at_slo(model, spec, percentile_of)

    assert default_rate_search_users(spec) == 20
    assert model.points[0].users == 20


def test_low_above_high_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"low at most high \(got low 50, high 10\)"):
        SearchSpec(slo_ms=5, low=50, high=10)
    # a spec built without validation is still refused by the search itself
    unchecked = SearchSpec.model_construct(slo_ms=5, low=50, high=10, over="rate", iterations=6, probe_s=1)
    with pytest.raises(ValueError, match=r"above search\.high"):
        search_max_rps_at_slo(QueueModel(), unchecked, percentile_of)
