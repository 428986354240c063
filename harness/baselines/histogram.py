"""Latency distributions in a few kilobytes: HdrHistogram encode/decode for baselines.

A baseline keeps the whole latency distribution of a run, not just its percentiles, so the next
run can be compared with a rank test or a bootstrap (see `harness.gates.statistics`). Storing
every sample would make baseline files grow with the run length; an HdrHistogram with 3
significant digits takes 1.3-2.6 KB of text for 10,000 samples and 2.7-5.3 KB for 100,000
(narrow to wide lognormal spreads): its size follows the number of distinct buckets, not samples.

Values are recorded in integer **nanoseconds** (format version 2 of the baseline file fixes the
unit). 3 significant digits means each value lands in a bucket no wider than 1/1024 of its value;
`decode` returns the bucket midpoints, so every value read back is within 0.05% of the value
recorded (and a percentile within the same bound). Nanoseconds rather than microseconds keep that
bound for in-process targets, whose latencies of 30-100 us would lose up to 1.7% to a 1 us grid.
The text is HdrHistogram's standard V2 "HISTF" base64 encoding, readable by any HdrHistogram port.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

UNIT_NS_PER_MS = 1_000_000
SIGNIFICANT_DIGITS = 3
HIGHEST_TRACKABLE_NS = 3_600 * 1_000_000_000  # one hour; a longer "latency" is a bug upstream
# Worst-case relative error of a decoded value: half a bucket of width value/2^10 (3 digits).
MAX_RELATIVE_ERROR = 2.0**-11


def encode(latencies_ms: Sequence[float] | np.ndarray) -> str:
    """The HdrHistogram of `latencies_ms` as base64 text ('' for no samples).

    Raises ValueError on NaN, negative or longer-than-an-hour values, which
    `HdrHistogram.record_value` would otherwise drop silently.
    """
    from hdrh.histogram import HdrHistogram

    samples = np.asarray(latencies_ms, dtype=np.float64)
    if samples.ndim != 1:
        raise ValueError(f"latencies must be a flat sequence, got shape {samples.shape}")
    if samples.size == 0:
        return ""
    if not np.all(np.isfinite(samples)) or np.any(samples < 0):
        raise ValueError("latencies contain NaN, infinity or negative values")
    nanos = np.rint(samples * UNIT_NS_PER_MS).astype(np.int64)
    if int(nanos.max()) > HIGHEST_TRACKABLE_NS:
        raise ValueError(f"latency {samples.max():.0f} ms is beyond the histogram's range of one hour")
    histogram = HdrHistogram(1, HIGHEST_TRACKABLE_NS, SIGNIFICANT_DIGITS)
    # one call per distinct value: repeated values (common at coarse clocks) are counted in one go
    values, counts = np.unique(nanos, return_counts=True)
    for value, count in zip(values.tolist(), counts.tolist(), strict=True):
        histogram.record_value(value, count)
    encoded: bytes = histogram.encode()
    return encoded.decode("ascii")


def decode(text: str) -> tuple[np.ndarray, np.ndarray]:
    """(values_ms, counts) of an encoded histogram: ascending bucket midpoints and their counts.

    Raises ValueError if `text` is not an HdrHistogram encoding.
    """
    if not text:
        return np.empty(0, dtype=np.float64), np.empty(0, dtype=np.int64)
    from hdrh.histogram import HdrHistogram

    try:
        histogram = HdrHistogram.decode(text.encode("ascii"))
    except Exception as exc:  # hdrh raises TypeError, zlib.error or its own exception classes
        raise ValueError(f"not an HdrHistogram encoding ({type(exc).__name__}: {exc})") from None
    all_counts = np.ctypeslib.as_array(histogram.counts).astype(np.int64)
    indices = np.flatnonzero(all_counts)
    lowest = np.array([histogram.get_value_from_index(int(i)) for i in indices], dtype=np.float64)
    highest = np.array([histogram.get_highest_equivalent_value(int(v)) for v in lowest], dtype=np.float64)
    midpoints_ns = (lowest + highest) / 2.0
    return midpoints_ns / UNIT_NS_PER_MS, all_counts[indices]


def expand(values: np.ndarray, counts: np.ndarray, max_n: int | None = None) -> np.ndarray:
    """The samples a histogram stands for, ascending; at most `max_n` of them.

    Above `max_n`, evenly spaced order statistics are taken (ranks (k + 0.5) * n / max_n), which
    keeps the shape of the distribution but not its size: a test run on the thinned sample has the
    power of `max_n` observations, so it can only be more cautious, never more eager.
    """
    values = np.asarray(values, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.int64)
    if values.shape != counts.shape:
        raise ValueError(f"values and counts differ in shape: {values.shape} vs {counts.shape}")
    if np.any(counts < 0):
        raise ValueError("counts must not be negative")
    total = int(counts.sum())
    if max_n is None or total <= max_n:
        return np.repeat(values, counts)
    if max_n < 1:
        raise ValueError(f"max_n must be at least 1, got {max_n}")
    ranks = ((np.arange(max_n) + 0.5) * total / max_n).astype(np.int64)
    # the sample at rank r is the first value whose cumulative count exceeds r
    return values[np.searchsorted(np.cumsum(counts), ranks, side="right")]
