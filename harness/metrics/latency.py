"""Latency percentiles computed from the exact per-request samples (no histogram buckets).

Percentile method: numpy's default "linear" (Hyndman & Fan type 7, the same as pandas,
`statistics.quantiles(method="inclusive")` and spreadsheet PERCENTILE.INC): the p-th percentile
interpolates linearly between the two nearest order statistics at rank p/100 * (n - 1).
Anyone can reproduce a reported number with `numpy.percentile(samples, p)`. With few samples
the high percentiles sit between the largest observations; the report shows the sample count.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np

PERCENTILES: dict[str, float] = {
    "latency_p50_ms": 50.0,
    "latency_p90_ms": 90.0,
    "latency_p95_ms": 95.0,
    "latency_p99_ms": 99.0,
}
PERCENTILE_METHOD: Final = "linear"


def latency_summary(latencies_ms: Sequence[float]) -> dict[str, float]:
    """p50/p90/p95/p99/max/mean in ms of `latencies_ms`.

    An empty input returns an empty dict, not zeros: a run in which every request failed has no
    latency, and a 0 ms p95 would pass every latency gate.
    """
    samples = np.asarray(latencies_ms, dtype=np.float64)
    if samples.ndim != 1:
        raise ValueError(f"latencies must be a flat sequence, got shape {samples.shape}")
    if samples.size == 0:
        return {}
    if not np.all(np.isfinite(samples)):
        raise ValueError("latencies contain NaN or infinity")
    if np.any(samples < 0):
        raise ValueError("latencies contain negative values")
    values = np.percentile(samples, list(PERCENTILES.values()), method=PERCENTILE_METHOD)
    summary = {name: float(v) for name, v in zip(PERCENTILES, values, strict=True)}
    summary["latency_max_ms"] = float(samples.max())
    summary["latency_mean_ms"] = float(samples.mean())
    return summary
