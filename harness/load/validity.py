"""Whether a measurement counts as a result: per-window statistics, stability, and the VALID /
INVALID verdict with one reason per broken rule.

A window is a fixed slice of the measured period, counted from `measure_start_s` (warm-up is
everything before it and never enters a window). Requests belong to the window they STARTED in,
as in `harness.load.samples.summarize`. Only complete windows count: a window is complete once
the measurement reached its end (by default, the latest completion among the samples).

Pure: numpy only, no I/O, so the load drivers can call `is_stable` after every window and the
orchestration can call `assess` once at the end.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from operator import attrgetter
from typing import Any

import numpy as np

from harness.load.samples import OK, Sample
from harness.metrics.latency import PERCENTILE_METHOD, PERCENTILES
from harness.scenario.load_spec import LoadSpec, ValiditySpec

# MLPerf LoadGen early stopping: 99% confidence, no tolerance, and at least one over-latency
# query in the tail (loadgen.cc, SingleStream early stopping: find_min_passing(1, p, 0.0, 0.99))
EARLY_STOPPING_CONFIDENCE = 0.99
_TAIL_QUERIES = 1
# a window end this close to the observed end still counts as reached (float rounding)
_EDGE_S = 1e-9


@dataclass(frozen=True)
class WindowStats:
    """One complete measurement window: counts, successful-request throughput, gated percentile."""

    index: int
    start_s: float
    end_s: float
    requests: int  # started in the window, successful + failed
    ok: int
    failures: int
    throughput_rps: float  # successful requests per second, as LoadResult.throughput_rps
    percentile: float  # which percentile latency_ms is, e.g. 95.0
    latency_ms: float | None  # None when no request in the window succeeded

    @property
    def latency_name(self) -> str:
        return f"latency_p{self.percentile:g}_ms"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, with the latency under its metric name (`latency_p95_ms`)."""
        data = asdict(self)
        data[self.latency_name] = data.pop("latency_ms")
        return data


@dataclass
class ValidityVerdict:
    """VALID or INVALID, why, and the figures the decision was made from."""

    valid: bool
    reasons: list[str]
    windows: list[WindowStats]
    facts: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "reasons": list(self.reasons),
            "windows": [w.as_dict() for w in self.windows],
            "facts": dict(self.facts),
        }


# ---- minimum request count -------------------------------------------------------------------


def _tail_odds(h: int, t: int, p: float) -> float:
    """P(at most t of h + t independent requests exceed the p-quantile): LoadGen's odds(h, t, p, 0),
    the binomial CDF BetaRegularized[p, h, 1 + t] written as a finite sum."""
    n = h + t
    return sum(math.comb(n, x) * (1 - p) ** x * p ** (n - x) for x in range(t + 1))


def min_requests_for(percentile: float, confidence: float = EARLY_STOPPING_CONFIDENCE) -> int:
    """Fewest requests from which MLPerf LoadGen's early-stopping rule can bound `percentile`.

    LoadGen (mlcommons/inference loadgen/early_stopping.cc, loadgen.cc) asks for the smallest h with
    P(at most t of h + t requests over the percentile) < 1 - confidence, with t = 1 over-latency
    request, and then requires h + 1 requests: 64 for p90, 662 for p99 (130 for p95). With zero
    requests in the tail (t = 0) the bound alone would need only 44 and 459, but then nothing
    above the percentile has been observed, so LoadGen's floor, used here, is the t = 1 one.
    """
    if not 0 < percentile < 100:
        raise ValueError(f"percentile must be between 0 and 100 (exclusive), got {percentile}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")
    p, alpha = percentile / 100.0, 1.0 - confidence
    # odds fall as h grows: double to bracket, then bisect for the first h that passes
    high = 1
    while _tail_odds(high, _TAIL_QUERIES, p) >= alpha:
        high *= 2
    low = high // 2 + 1 if high > 1 else 1
    while low < high:
        mid = (low + high) // 2
        if _tail_odds(mid, _TAIL_QUERIES, p) < alpha:
            high = mid
        else:
            low = mid + 1
    return low + _TAIL_QUERIES


# ---- windows ---------------------------------------------------------------------------------


class _Columns:
    """The samples as numpy columns, built once per call (a few ms for 20k samples)."""

    def __init__(self, samples: Sequence[Sample]) -> None:
        n = len(samples)
        # map + attrgetter keeps the per-sample work in C: about 1.5 ms for 20k samples
        self.start_s = np.fromiter(map(attrgetter("start_s"), samples), np.float64, n)
        self.latency_ms = np.fromiter(map(attrgetter("latency_ms"), samples), np.float64, n)
        self.ok = np.fromiter(map(OK.__eq__, map(attrgetter("outcome"), samples)), bool, n)

    def last_completion_s(self) -> float | None:
        if self.start_s.size == 0:
            return None
        return float(np.max(self.start_s + self.latency_ms / 1000.0))


def _complete_windows(measure_start_s: float, window_s: float, end_s: float | None) -> int:
    if end_s is None or end_s <= measure_start_s:
        return 0
    return math.floor((end_s - measure_start_s) / window_s + _EDGE_S)


def _window_stats(
    cols: _Columns, measure_start_s: float, window_s: float, percentile: float, first: int, count: int
) -> list[WindowStats]:
    """Stats of windows first .. first + count - 1."""
    if count <= 0:
        return []
    index = np.floor((cols.start_s - measure_start_s) / window_s).astype(np.int64)
    inside = (index >= first) & (index < first + count)
    index, ok, latency = index[inside], cols.ok[inside], cols.latency_ms[inside]
    requests = np.bincount(index - first, minlength=count)
    oks = np.bincount(index[ok] - first, minlength=count)
    ok_index, ok_latency = index[ok], latency[ok]
    stats = []
    for i in range(count):
        window_latency = ok_latency[ok_index == first + i]
        value = (
            float(np.percentile(window_latency, percentile, method=PERCENTILE_METHOD))
            if window_latency.size
            else None
        )
        start = measure_start_s + (first + i) * window_s
        stats.append(
            WindowStats(
                index=first + i,
                start_s=start,
                end_s=start + window_s,
                requests=int(requests[i]),
                ok=int(oks[i]),
                failures=int(requests[i] - oks[i]),
                throughput_rps=float(oks[i]) / window_s,
                percentile=percentile,
                latency_ms=value,
            )
        )
    return stats


def _check_window_args(window_s: float, percentile: float) -> None:
    if not window_s > 0:
        raise ValueError(f"window_s must be positive, got {window_s}")
    if not 0 < percentile < 100:
        raise ValueError(f"percentile must be between 0 and 100 (exclusive), got {percentile}")


def split_windows(
    samples: Sequence[Sample],
    measure_start_s: float,
    window_s: float,
    percentile: float,
    *,
    end_s: float | None = None,
) -> list[WindowStats]:
    """Every complete window from `measure_start_s` on, in order.

    `end_s` is where the measurement ended (s since the test started); default: the latest
    completion among the samples. Requests started after the last complete window are left out.
    """
    _check_window_args(window_s, percentile)
    cols = _Columns(samples)
    end = cols.last_completion_s() if end_s is None else end_s
    count = _complete_windows(measure_start_s, window_s, end)
    return _window_stats(cols, measure_start_s, window_s, percentile, 0, count)


def window_percentiles(
    samples: Sequence[Sample], measure_start_s: float, window_s: float, windows: int
) -> dict[str, list[float]]:
    """Each latency percentile metric's value in each of the `windows` measured windows, for the window test.

    A window enters a percentile's list only with enough successful requests to bound it
    (`min_requests_for`: 130 for p95), so a quiet window's "p99" is never its maximum.
    """
    if window_s <= 0 or windows <= 0:
        return {}
    cols = _Columns(samples)
    index = np.floor((cols.start_s - measure_start_s) / window_s).astype(np.int64)
    keep = cols.ok & (index >= 0) & (index < windows)
    index, latency = index[keep], cols.latency_ms[keep]
    per_window = [latency[index == i] for i in range(windows)]
    out: dict[str, list[float]] = {}
    for metric, percentile in PERCENTILES.items():
        need = min_requests_for(percentile)
        out[metric] = [
            round(float(np.percentile(w, percentile, method=PERCENTILE_METHOD)), 4)
            for w in per_window
            if w.size >= need
        ]
    return out


def spread(values: Sequence[float | None]) -> float:
    """(max - min) / median; infinite when a value is missing or the median is not positive."""
    if not values or any(v is None or not math.isfinite(v) for v in values):
        return math.inf
    arr = np.asarray(values, dtype=np.float64)
    median = float(np.median(arr))
    if median <= 0:
        return math.inf
    return float((arr.max() - arr.min()) / median)


def window_spreads(windows: Sequence[WindowStats], last: int) -> dict[str, float]:
    """Spreads of throughput and of the gated percentile across the `last` most recent windows."""
    recent = list(windows)[-last:]
    return {
        "throughput_rps": spread([w.throughput_rps for w in recent]),
        "latency_ms": spread([w.latency_ms for w in recent]),
    }


@dataclass(frozen=True)
class Stability:
    """What the stability rule (`judge_stability`) decided, and the figures it decided from."""

    stable: bool
    judged: tuple[int, ...]  # indices of the windows compared: the last `stable_windows` complete ones
    needed: int  # spec.stable_windows: fewer complete windows than this are never stable
    spreads: dict[str, float]  # "throughput_rps" / "latency_ms" -> (max - min) / median across them
    broken: dict[str, float]  # the spreads beyond spec.max_spread once the latency floor is applied


def judge_stability(windows: Sequence[WindowStats], spec: ValiditySpec) -> Stability:
    """THE stability rule, applied by the live stop rule (`is_stable`) and by the verdict (`assess`).

    Of `windows` (complete windows in order; only the last `spec.stable_windows` are read) the last
    `spec.stable_windows` are stable when throughput and the gated percentile each spread at most
    `spec.max_spread` ((max - min) / median). A latency range within `spec.latency_floor_ms`
    passes whatever its relative spread: at sub-millisecond latencies a few scheduler ticks are
    tens of percent and say nothing about the model. A window without successes has no latency,
    so its latency spread is infinite. Fewer windows than `spec.stable_windows`: not stable.
    """
    need = spec.stable_windows
    recent = list(windows)[-need:]
    if len({w.percentile for w in recent}) > 1:
        raise ValueError("windows of different percentiles cannot be judged together")
    judged = tuple(w.index for w in recent)
    if len(recent) < need:
        return Stability(False, judged, need, {}, {})
    spreads = window_spreads(recent, need)
    broken = {k: v for k, v in spreads.items() if v > spec.max_spread}
    latencies = [w.latency_ms for w in recent]
    if "latency_ms" in broken and all(v is not None and math.isfinite(v) for v in latencies):
        values = [float(v) for v in latencies if v is not None]
        if max(values) - min(values) <= spec.latency_floor_ms:
            del broken["latency_ms"]
    return Stability(not broken, judged, need, spreads, broken)


def unstable_spreads(windows: Sequence[WindowStats], spec: ValiditySpec) -> dict[str, float]:
    """The spreads of the last `spec.stable_windows` windows that break the limit (`judge_stability`)."""
    return judge_stability(windows, spec).broken


def is_stable(
    samples: Sequence[Sample],
    measure_start_s: float,
    *,
    window_s: float,
    spec: ValiditySpec,
    percentile: float,
    end_s: float | None = None,
) -> bool:
    """`judge_stability` on the complete windows before `end_s`: cheap enough to call after every
    window (only the last `spec.stable_windows` windows are computed).

    `end_s` is where the measured windows end; pass it when known (`StabilityStopRule` does). The
    default, the latest completion among `samples`, falls short of the last window whenever its
    last requests were still in flight, and then judges the windows before it.
    """
    _check_window_args(window_s, percentile)
    cols = _Columns(samples)
    end = cols.last_completion_s() if end_s is None else end_s
    count = _complete_windows(measure_start_s, window_s, end)
    need = spec.stable_windows
    if count < need:
        return False
    recent = _window_stats(cols, measure_start_s, window_s, percentile, count - need, need)
    return judge_stability(recent, spec).stable


@dataclass(frozen=True)
class StabilityStopRule:
    """The live stop rule of a load run: stop once the measured windows are stable.

    A `harness.load.plan.WindowStopRule`: `WindowPlan.decide` passes the end of the measured
    windows, so this judges exactly the windows the verdict (`assess` with the same `end_s`) judges,
    by the same rule (`judge_stability`), spec and percentile. What it cannot see is a request of
    the last window still in flight when it decides; the drivers wait a grace period for those.
    """

    spec: ValiditySpec
    window_s: float
    percentile: float

    @classmethod
    def for_load(cls, load: LoadSpec, percentile: float) -> StabilityStopRule:
        """The rule for `load`'s windows and validity, judging `percentile` (the gated one)."""
        return cls(load.validity, load.effective_window_s(), percentile)

    def should_stop(self, samples: Sequence[Sample], measure_start_s: float, end_s: float) -> bool:
        return is_stable(
            samples,
            measure_start_s,
            window_s=self.window_s,
            spec=self.spec,
            percentile=self.percentile,
            end_s=end_s,
        )


# ---- verdict ---------------------------------------------------------------------------------


def _pct(fraction: float) -> str:
    return f"{fraction * 100:.1f}%"


def _stability_reason(
    windows: list[WindowStats],
    stability: Stability,
    percentile: float,
    spec: ValiditySpec,
    stopped_reason: str | None,
) -> str | None:
    if stability.stable:
        return None
    need = stability.needed
    if len(windows) < need:
        return f"not stable: only {len(windows)} complete window(s), {need} needed to judge stability"
    label = {"throughput_rps": "throughput", "latency_ms": f"p{percentile:g} latency"}
    figures = ", ".join(
        f"{label[k]} spread {_pct(v) if math.isfinite(v) else 'undefined (a window had no successes)'}"
        for k, v in stability.spreads.items()
    )
    reason = (
        f"not stable after {len(windows)} windows: {figures} across the last {need} "
        f"(limit {_pct(spec.max_spread)}, or a latency range within {spec.latency_floor_ms:g} ms)"
    )
    if stopped_reason == "stable":
        # same rule, same windows: only requests still in flight when the stop rule decided differ
        reason += "; the stop rule found them stable before the last window's slowest requests had finished"
    return reason


def assess(
    samples: Sequence[Sample],
    *,
    measure_start_s: float,
    window_s: float,
    spec: ValiditySpec,
    percentile: float,
    warmup_s: float,
    generator_cpu_percent: Sequence[float],
    late_count: int | None,
    server_restarted: bool | None,
    stopped_reason: str | None,
    end_s: float | None = None,
) -> ValidityVerdict:
    """The verdict on the measured windows; every broken rule adds one human-readable reason.

    generator_cpu_percent: CPU of each load-generator process over the measurement, in percent of
    one core. late_count: open loop only, requests in the measured windows sent more than
    `spec.late_ms` after their scheduled time (None for closed loop). server_restarted: from the
    host sampler (None when unknown). stopped_reason: why the driver stopped, recorded as a fact.
    """
    windows = split_windows(samples, measure_start_s, window_s, percentile, end_s=end_s)
    stability = judge_stability(windows, spec)
    requests = sum(w.requests for w in windows)
    ok = sum(w.ok for w in windows)
    failures = requests - ok
    min_requests = spec.min_requests or min_requests_for(percentile)
    error_rate = failures / requests if requests else 0.0
    cpu = [float(c) for c in generator_cpu_percent]
    cpu_limit = spec.max_generator_cpu * 100.0
    late_fraction = late_count / requests if late_count is not None and requests else None

    reasons: list[str] = []
    if not windows:
        reasons.append(f"no complete measurement window of {window_s:g} s after the {warmup_s:g} s warm-up")
    else:
        unstable = _stability_reason(windows, stability, percentile, spec, stopped_reason)
        if unstable:
            reasons.append(unstable)
    if ok < min_requests:
        reasons.append(
            f"too few requests for p{percentile:g}: {ok} successful, at least {min_requests} needed "
            f"(MLPerf LoadGen early-stopping minimum)"
        )
    if requests and error_rate > spec.error_budget:
        reasons.append(
            f"error budget exceeded: {failures} of {requests} requests failed ({_pct(error_rate)}, "
            f"budget {_pct(spec.error_budget)})"
        )
    saturated = [(i, c) for i, c in enumerate(cpu) if c > cpu_limit]
    if saturated:
        detail = ", ".join(f"process {i} at {c:.0f}%" for i, c in saturated)
        reasons.append(
            f"load generator CPU saturated: {detail} of one core (limit {cpu_limit:.0f}%); "
            "the client, not the server, may set the pace"
        )
    if late_fraction is not None and late_fraction > spec.max_late_fraction:
        reasons.append(
            f"open loop fell behind: {late_count} of {requests} requests ({_pct(late_fraction)}) were "
            f"sent more than {spec.late_ms:g} ms late (limit {_pct(spec.max_late_fraction)})"
        )
    if server_restarted:
        reasons.append("server restarted during the measurement (a server process died or was replaced)")

    facts: dict[str, Any] = {
        "warmup_s": warmup_s,
        "measure_start_s": measure_start_s,
        "window_s": window_s,
        "windows": len(windows),
        "stable_windows": spec.stable_windows,
        "max_windows": spec.max_windows,
        "percentile": percentile,
        # None rather than infinity (a window without successes), so the facts stay valid JSON
        "spreads": {k: (v if math.isfinite(v) else None) for k, v in stability.spreads.items()},
        "stable": stability.stable,
        "judged_windows": list(stability.judged),
        "max_spread": spec.max_spread,
        "min_requests": min_requests,
        "requests": requests,
        "ok": ok,
        "failures": failures,
        "error_rate": error_rate,
        "generator_cpu_percent": cpu,
        "generator_cpu_percent_max": max(cpu) if cpu else None,
        "late_count": late_count,
        "late_fraction": late_fraction,
        "server_restarted": server_restarted,
        "stopped_reason": stopped_reason,
    }
    return ValidityVerdict(valid=not reasons, reasons=reasons, windows=windows, facts=facts)
