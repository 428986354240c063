"""Per-variant samples shared by measuring, the baseline store and the statistical gates.

`VariantSamples` carries one variant's per-request latencies, per-window percentiles and
per-example predictions. The current run builds it from its measurements, the baseline store
builds it from a stored entry, and `harness.gates.statistics` tests one against the other. It
lives here, below both, so that baselines and gates import it without importing each other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


def labels_fingerprint(labels: Sequence[int] | np.ndarray) -> str:
    """16 hex digits naming a label sequence, so stored predictions pair with the same examples."""
    values = np.asarray(labels).ravel().astype(np.int64)
    text = ",".join(str(v) for v in values.tolist())
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:16]


@dataclass(frozen=True)
class VariantSamples:
    """One variant's per-request latencies and per-example predictions, for the statistical gates.

    The current run passes `labels` (the test-set labels the predictions are for); a baseline
    read back from disk carries only their `labels_fingerprint`, which must match.
    `window_latencies` maps a percentile metric ("latency_p95_ms") to its value in each
    measurement window, for the window test.
    """

    latencies_ms: np.ndarray | None = None
    window_latencies: Mapping[str, np.ndarray] | None = None
    predictions: np.ndarray | None = None
    labels: np.ndarray | None = None
    labels_fingerprint: str | None = None

    def fingerprint(self) -> str | None:
        """The fingerprint of the labels, computed from `labels` when present."""
        if self.labels is not None:
            return labels_fingerprint(self.labels)
        return self.labels_fingerprint


def thin(samples: Sequence[float] | np.ndarray, max_n: int | None = None) -> np.ndarray:
    """`samples` sorted, thinned to at most `max_n` evenly spaced order statistics.

    The order statistics taken have ranks (k + 0.5) * n / max_n, k = 0..max_n-1: the shape of
    the distribution stays, its size does not, so a test run on the thinned sample has the power
    of `max_n` observations and can only be more cautious, never more eager.
    """
    ordered = np.sort(np.asarray(samples, dtype=np.float64))
    if max_n is None or ordered.size <= max_n:
        return ordered
    if max_n < 1:
        raise ValueError(f"max_n must be at least 1, got {max_n}")
    ranks = ((np.arange(max_n) + 0.5) * ordered.size / max_n).astype(np.int64)
    return ordered[ranks]
