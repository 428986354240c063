"""Window validity on synthetic samples: stability, request minimums, error budget, generator
CPU, late sends, restarts."""

from __future__ import annotations

import json
import math
import time
from typing import NamedTuple

import numpy as np
import pytest
from scipy.stats import binom

from harness.load.samples import Sample
from harness.load.validity import (
    ValidityVerdict,
    assess,
    is_stable,
    min_requests_for,
    split_windows,
    spread,
)
from harness.scenario.load_spec import ValiditySpec

SPEC = ValiditySpec()
# latencies repeat this pattern, so every window holding a multiple of 10 requests has the same
# percentiles and a stable run is exactly stable
_PATTERN_MS = [5.0, 5.2, 5.4, 5.6, 5.8, 6.0, 6.5, 7.0, 8.0, 12.0]


def _run(
    rates: list[float],
    *,
    window_s: float = 1.0,
    measure_start_s: float = 2.0,
    fail_every: int = 0,
    latency_scale: list[float] | None = None,
) -> list[Sample]:
    """Warm-up at rates[0] req/s, then one window per rate: evenly spaced starts, patterned latencies."""
    samples: list[Sample] = []
    t = 0.0
    while t < measure_start_s:
        samples.append(Sample(t, 50.0, "ok"))  # slow warm-up: never counted
        t += 1.0 / rates[0]
    n = 0
    for i, rate in enumerate(rates):
        count = round(rate * window_s)
        scale = latency_scale[i] if latency_scale else 1.0
        for k in range(count):
            start = measure_start_s + i * window_s + k * window_s / count
            failed = fail_every and n % fail_every == fail_every - 1
            latency = _PATTERN_MS[k % len(_PATTERN_MS)] * scale
            samples.append(Sample(start, latency, "http_status" if failed else "ok", "503" if failed else ""))
            n += 1
    # one request after the last window ends marks the end of the measurement
    samples.append(Sample(measure_start_s + len(rates) * window_s, 5.0, "ok"))
    return samples


def _assess(
    samples: list[Sample], spec: ValiditySpec = SPEC, percentile: float = 95.0, **kw
) -> ValidityVerdict:
    args = {
        "measure_start_s": 2.0,
        "window_s": 1.0,
        "spec": spec,
        "percentile": percentile,
        "warmup_s": 2.0,
        "generator_cpu_percent": [35.0],
        "late_count": None,
        "server_restarted": False,
        "stopped_reason": "stable",
    }
    args.update(kw)
    return assess(samples, **args)


def test_a_stable_run_is_valid_and_records_warmup_windows_and_spreads():
    verdict = _assess(_run([500] * 4))
    assert verdict.valid, verdict.reasons
    assert verdict.reasons == []
    assert [w.index for w in verdict.windows] == [0, 1, 2, 3]
    assert all(w.ok == 500 and w.failures == 0 for w in verdict.windows)
    facts = verdict.facts
    assert facts["warmup_s"] == 2.0
    assert facts["windows"] == 4
    assert facts["spreads"] == {"throughput_rps": 0.0, "latency_ms": 0.0}
    assert facts["stable"] is True
    assert facts["min_requests"] == 130  # p95
    assert facts["requests"] == 2000


def test_throughput_drifting_30_percent_across_windows_is_invalid_with_the_spread_in_the_reason():
    # throughput rises 30% from the first window to the last: spread (max - min) / median = 26%
    samples = _run([400, 460, 520])
    verdict = _assess(samples)
    assert not verdict.valid
    (reason,) = verdict.reasons
    expected = (520 - 400) / 460
    assert reason.startswith("not stable after 3 windows")
    assert f"throughput spread {expected * 100:.1f}%" in reason
    assert "limit 10.0%" in reason
    assert verdict.facts["spreads"]["throughput_rps"] == pytest.approx(expected)


def test_a_drifting_latency_percentile_is_unstable_even_at_constant_throughput():
    samples = _run([300] * 3, latency_scale=[1.0, 1.2, 1.4])
    verdict = _assess(samples)
    assert not verdict.valid
    assert "p95 latency spread" in verdict.reasons[0]
    assert verdict.facts["spreads"]["latency_ms"] == pytest.approx(0.4 / 1.2)
    assert not is_stable(samples, 2.0, window_s=1.0, spec=SPEC, percentile=95.0)


def test_only_the_last_stable_windows_decide_stability():
    samples = _run([200, 400, 400, 400])  # a ramp in window 0, then steady
    assert is_stable(samples, 2.0, window_s=1.0, spec=SPEC, percentile=95.0)
    assert not is_stable(samples[: len(samples) // 2], 2.0, window_s=1.0, spec=SPEC, percentile=95.0)


def test_fewer_windows_than_stable_windows_is_never_stable():
    samples = _run([500, 500])
    assert not is_stable(samples, 2.0, window_s=1.0, spec=SPEC, percentile=95.0)
    verdict = _assess(samples)
    assert "only 2 complete window(s), 3 needed" in verdict.reasons[0]


def test_too_few_requests_for_p99_is_invalid_naming_the_minimum():
    samples = _run([50] * 3)  # 150 successful requests: enough for p90 (64), not for p99 (662)
    at_p99 = _assess(samples, percentile=99.0)
    assert not at_p99.valid
    assert at_p99.reasons == [
        "too few requests for p99: 150 successful, at least 662 needed "
        "(MLPerf LoadGen early-stopping minimum)"
    ]
    assert _assess(samples, percentile=90.0).valid


def test_an_explicit_min_requests_replaces_the_percentile_default():
    samples = _run([50] * 3)
    verdict = _assess(samples, spec=ValiditySpec(min_requests=200), percentile=90.0)
    assert "at least 200 needed" in verdict.reasons[0]
    assert verdict.facts["min_requests"] == 200


def test_failures_beyond_the_error_budget_make_the_run_invalid():
    over = _assess(_run([500] * 3, fail_every=50))  # 2% failed
    assert not over.valid
    assert any(r.startswith("error budget exceeded: 30 of 1500 requests failed (2.0%") for r in over.reasons)
    assert [w.failures for w in over.windows] == [10, 10, 10]
    within = _assess(_run([500] * 3, fail_every=200))  # 0.5%
    assert within.valid, within.reasons
    strict = _assess(_run([500] * 3, fail_every=200), spec=ValiditySpec(error_budget=0.0))
    assert any("error budget exceeded" in r for r in strict.reasons)


def test_a_saturated_load_generator_process_invalidates_the_run():
    verdict = _assess(_run([500] * 3), generator_cpu_percent=[40.0, 96.5])
    assert not verdict.valid
    assert verdict.reasons == [
        "load generator CPU saturated: process 1 at 96% of one core (limit 90%); "
        "the client, not the server, may set the pace"
    ]
    assert verdict.facts["generator_cpu_percent_max"] == 96.5
    assert _assess(_run([500] * 3), generator_cpu_percent=[]).valid  # unknown is not saturated


def test_open_loop_late_sends_above_the_limit_invalidate_the_run():
    samples = _run([500] * 3)
    late = _assess(samples, late_count=45)  # 3% of 1500
    assert not late.valid
    assert late.reasons == [
        "open loop fell behind: 45 of 1500 requests (3.0%) were sent more than 10 ms late (limit 1.0%)"
    ]
    assert late.facts["late_fraction"] == pytest.approx(0.03)
    assert _assess(samples, late_count=10).valid
    assert _assess(samples, late_count=None).valid  # closed loop


def test_a_server_restart_during_the_window_invalidates_the_run():
    samples = _run([500] * 3)
    restarted = _assess(samples, server_restarted=True)
    assert not restarted.valid
    assert "server restarted" in restarted.reasons[0]
    assert _assess(samples, server_restarted=None).valid  # unknown


def test_every_broken_rule_gets_its_own_reason():
    verdict = _assess(
        _run([40, 46, 52], fail_every=10),
        percentile=99.0,
        generator_cpu_percent=[99.0],
        late_count=20,
        server_restarted=True,
    )
    kinds = [r.split(":")[0] for r in verdict.reasons]
    assert kinds == [
        "not stable after 3 windows",
        "too few requests for p99",
        "error budget exceeded",
        "load generator CPU saturated",
        "open loop fell behind",
        "server restarted during the measurement (a server process died or was replaced)",
    ]


def test_no_complete_window_is_invalid():
    samples = [Sample(0.1 * i, 5.0, "ok") for i in range(25)]  # ends at 2.4 s, window is 1 s from 2.0
    verdict = _assess(samples)
    assert not verdict.valid
    assert verdict.reasons[0] == "no complete measurement window of 1 s after the 2 s warm-up"
    assert verdict.windows == []


def test_windows_count_requests_by_start_and_leave_out_the_incomplete_last_window():
    samples = [
        Sample(0.5, 1.0, "ok"),  # warm-up
        Sample(1.2, 900.0, "ok"),  # started in window 0, finished in window 1: counts in window 0
        Sample(1.5, 2.0, "timeout"),
        Sample(2.1, 3.0, "ok"),
        Sample(2.7, 4.0, "ok"),
        Sample(3.05, 1.0, "ok"),  # window 2 is incomplete: the measurement ended at 3.5 s
        Sample(3.4, 100.0, "ok"),
    ]
    windows = split_windows(samples, 1.0, 1.0, 50.0)
    assert [(w.index, w.requests, w.ok, w.failures) for w in windows] == [(0, 2, 1, 1), (1, 2, 2, 0)]
    assert windows[0].latency_ms == 900.0
    assert windows[1].latency_ms == pytest.approx(3.5)
    assert windows[1].throughput_rps == 2.0
    assert [w.index for w in split_windows(samples, 1.0, 1.0, 50.0, end_s=2.5)] == [0]


def test_a_window_without_successes_has_no_latency_and_is_not_stable():
    samples = _run([100] * 3)
    broken = [s._replace(outcome="connection") if 3.0 <= s.start_s < 4.0 else s for s in samples]
    windows = split_windows(broken, 2.0, 1.0, 95.0)
    assert windows[1].latency_ms is None
    assert windows[1].as_dict()["latency_p95_ms"] is None
    assert not is_stable(broken, 2.0, window_s=1.0, spec=SPEC, percentile=95.0)
    verdict = _assess(broken)
    assert "undefined" in verdict.reasons[0]
    assert verdict.facts["stable"] is False
    assert verdict.facts["spreads"]["latency_ms"] is None
    json.dumps(verdict.as_dict(), allow_nan=False)  # results JSON stays strict


def test_window_stats_name_the_latency_after_the_percentile():
    (window, *_) = split_windows(_run([100] * 3), 2.0, 1.0, 99.0)
    data = window.as_dict()
    assert "latency_p99_ms" in data
    assert data["latency_p99_ms"] == pytest.approx(np.percentile(_PATTERN_MS * 10, 99))


def test_samples_with_extra_fields_are_accepted():
    class WiderSample(NamedTuple):
        start_s: float
        latency_ms: float
        outcome: str
        message: str = ""
        scheduled_s: float = 0.0

    samples = [WiderSample(*s[:4]) for s in _run([300] * 3)]
    assert is_stable(samples, 2.0, window_s=1.0, spec=SPEC, percentile=95.0)  # type: ignore[arg-type]


def test_spread_is_max_minus_min_over_median_and_infinite_without_a_positive_median():
    assert spread([90.0, 100.0, 110.0]) == pytest.approx(0.2)
    assert spread([0.0, 0.0, 0.0]) == math.inf
    assert spread([1.0, None, 1.0]) == math.inf


@pytest.mark.parametrize(("percentile", "expected"), [(90, 64), (95, 130), (99, 662)])
def test_min_requests_match_mlperf_loadgen_early_stopping(percentile, expected):
    assert min_requests_for(percentile) == expected


@pytest.mark.parametrize("percentile", [50.0, 90.0, 95.0, 99.0, 99.9])
def test_min_requests_is_the_smallest_n_at_which_one_tail_request_is_unlikely_enough(percentile):
    # independently with scipy: P(at most 1 of n requests above the percentile) < 1%
    n = min_requests_for(percentile)
    tail = 1 - percentile / 100
    assert binom.cdf(1, n, tail) < 0.01
    assert binom.cdf(1, n - 1, tail) >= 0.01


@pytest.mark.parametrize("bad", [0.0, 100.0, -5.0, 150.0])
def test_min_requests_rejects_a_percentile_outside_0_to_100(bad):
    with pytest.raises(ValueError, match="percentile"):
        min_requests_for(bad)


def test_is_stable_is_cheap_on_20k_samples():
    samples = _run([4000] * 5)
    assert len(samples) > 20_000
    is_stable(samples, 2.0, window_s=1.0, spec=SPEC, percentile=95.0)  # warm numpy
    began = time.perf_counter()
    for _ in range(10):
        stable = is_stable(samples, 2.0, window_s=1.0, spec=SPEC, percentile=95.0)
    per_call_ms = (time.perf_counter() - began) / 10 * 1000
    print(f"is_stable on {len(samples)} samples: {per_call_ms:.2f} ms per call")
    assert stable


def test_sub_millisecond_jitter_within_the_latency_floor_counts_as_stable():
    # p95 moves 40% between windows, but at ~0.05 ms that is 0.02 ms of scheduler jitter
    tiny = _run([100, 100, 100], latency_scale=[0.01, 0.014, 0.01])
    assert is_stable(tiny, 2.0, window_s=1.0, spec=SPEC, percentile=95)
    # the same 40% at ~10 ms is 4 ms: a real change, so not stable
    large = _run([100, 100, 100], latency_scale=[1.0, 1.4, 1.0])
    assert not is_stable(large, 2.0, window_s=1.0, spec=SPEC, percentile=95)
    strict = ValiditySpec(latency_floor_ms=0)
    assert not is_stable(tiny, 2.0, window_s=1.0, spec=strict, percentile=95)


def test_window_percentiles_give_one_value_per_window_with_enough_requests():
    import numpy as np

    from harness.load.validity import window_percentiles
    from harness.metrics.latency import PERCENTILE_METHOD

    # three windows of 200, 200 and 100 requests (p95 needs 130, p99 needs 662, p50 needs 5)
    samples = _run([200, 200, 100], latency_scale=[1.0, 2.0, 1.0])
    values = window_percentiles(samples, 2.0, 1.0, 3)
    expected = float(np.percentile(np.array(_PATTERN_MS * 20) * 2.0, 95, method=PERCENTILE_METHOD))
    assert len(values["latency_p95_ms"]) == 2
    assert values["latency_p95_ms"][1] == pytest.approx(expected, abs=1e-4)
    assert values["latency_p95_ms"][1] == pytest.approx(2 * values["latency_p95_ms"][0], abs=1e-3)
    assert len(values["latency_p50_ms"]) == 3
    assert values["latency_p99_ms"] == []
    assert window_percentiles(samples, 2.0, 0.0, 3) == {}


def test_window_percentiles_leave_out_failures_and_the_warm_up():
    from harness.load.validity import window_percentiles

    samples = _run([200, 200], fail_every=2)  # every other request fails: 100 successes per window
    values = window_percentiles(samples, 2.0, 1.0, 2)
    assert values["latency_p95_ms"] == [], "100 successes cannot bound a p95"
    assert max(values["latency_p50_ms"]) < 50.0, "the slow warm-up never counts"


def test_judge_stability_reads_only_the_last_stable_windows_and_names_them():
    from harness.load.validity import judge_stability

    windows = split_windows(_run([200, 400, 400, 400]), 2.0, 1.0, 95.0)
    stability = judge_stability(windows, SPEC)
    assert stability.stable
    assert stability.judged == (1, 2, 3)
    assert stability.spreads == {"throughput_rps": 0.0, "latency_ms": 0.0}
    assert stability.broken == {}
    ramp = judge_stability(windows[:3], SPEC)
    assert not ramp.stable
    assert set(ramp.broken) == {"throughput_rps"}


def test_judge_stability_with_too_few_windows_is_unstable_with_nothing_judged_as_spread():
    from harness.load.validity import judge_stability

    stability = judge_stability(split_windows(_run([500, 500]), 2.0, 1.0, 95.0), SPEC)
    assert not stability.stable
    assert stability.judged == (0, 1)
    assert stability.needed == 3
    assert stability.spreads == {}


def test_judge_stability_refuses_windows_of_different_percentiles():
    from harness.load.validity import judge_stability

    samples = _run([100] * 3)
    mixed = [*split_windows(samples, 2.0, 1.0, 95.0)[:2], split_windows(samples, 2.0, 1.0, 99.0)[2]]
    with pytest.raises(ValueError, match="different percentiles"):
        judge_stability(mixed, SPEC)


@pytest.mark.parametrize(
    ("rates", "scale", "floor_ms"),
    [
        ([500] * 4, None, 0.5),
        ([400, 460, 520], None, 0.5),
        ([200, 400, 400, 400], None, 0.5),
        ([100] * 3, [0.01, 0.014, 0.01], 0.5),
        ([100] * 3, [0.01, 0.014, 0.01], 0.0),
        ([300] * 4, [1.0, 1.0, 1.0, 1.3], 0.5),
        ([500, 500], None, 0.5),
    ],
)
def test_is_stable_and_the_verdict_agree_on_the_same_windows(rates, scale, floor_ms):
    spec = ValiditySpec(latency_floor_ms=floor_ms)
    samples = _run(rates, latency_scale=scale)
    end_s = 2.0 + len(rates)
    live = is_stable(samples, 2.0, window_s=1.0, spec=spec, percentile=95.0, end_s=end_s)
    verdict = _assess(samples, spec=spec, end_s=end_s)
    assert live == verdict.facts["stable"]
    assert verdict.facts["windows"] == len(rates)


def test_an_unstable_verdict_after_a_stable_stop_says_what_the_stop_rule_could_not_see():
    samples = _run([300] * 4, latency_scale=[1.0, 1.0, 1.0, 1.4])
    verdict = _assess(samples, end_s=6.0, stopped_reason="stable")
    assert verdict.reasons[0].startswith("not stable after 4 windows:")
    assert "before the last window's slowest requests had finished" in verdict.reasons[0]
    assert verdict.facts["judged_windows"] == [1, 2, 3]
    plain = _assess(samples, end_s=6.0, stopped_reason="max_windows")
    assert "slowest requests" not in plain.reasons[0]
