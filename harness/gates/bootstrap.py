"""The paired bootstrap over examples: is a quality metric worse than the baseline's on the same examples?

Both runs scored the same test examples, so each resample draws example indices once and
computes the metric of both runs on those same indices; the interval is that of the difference
(current - baseline). Pairing removes the between-example variance both runs share: a variant that
errs a little more on every example is detected with far fewer examples than two independent
samples would need. The metric is anything computed from a resample's indices (a mean of
per-example values, RMSE, macro F1), so one bootstrap serves all of them.

numpy only: the interval is the plain percentile interval of the resampled differences, seeded,
so the same inputs always give the same verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from harness.metrics.catalog import Better

# A metric on resamples: (resamples, n) example indices -> one value per resample.
RowStatistic = Callable[[npt.NDArray[np.intp]], npt.NDArray[np.float64]]

# Resamples are drawn in batches of at most this many indices (8 bytes each, plus the gathered
# values): about 16 MB whatever the test set's size, instead of resamples x n at once.
_MAX_CELLS = 1_000_000


@dataclass(frozen=True)
class BootstrapResult:
    """Outcome of `paired_bootstrap`; `delta` and its interval are current - baseline."""

    n: int  # examples
    resamples: int
    current_value: float
    baseline_value: float
    delta: float
    ci_low: float
    ci_high: float
    confidence_level: float
    significant: bool  # the interval lies wholly on the worse side of 0
    message: str


def paired_bootstrap(
    current: RowStatistic,
    baseline: RowStatistic,
    n: int,
    *,
    better: Better,
    alpha: float,
    resamples: int = 2000,
    seed: int = 0,
) -> BootstrapResult:
    """Bootstrap the change of a metric over `n` paired examples.

    Significance is one-sided, like the McNemar and latency tests: the two-sided (1 - 2 alpha)
    percentile interval of current - baseline must lie wholly on the worse side of 0 (above it
    when lower is better, below it when higher is better). Identical runs give the interval
    [0, 0]: never significant.
    """
    if n < 1:
        raise ValueError("the paired bootstrap needs at least one example")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    everything = np.arange(n)[np.newaxis]
    cur_value = float(current(everything)[0])
    base_value = float(baseline(everything)[0])
    rng = np.random.default_rng(seed)
    batch = max(1, min(resamples, _MAX_CELLS // n))
    deltas = np.empty(resamples)
    for start in range(0, resamples, batch):
        stop = min(start + batch, resamples)
        rows = rng.integers(0, n, size=(stop - start, n))
        deltas[start:stop] = current(rows) - baseline(rows)
    level = 1.0 - 2.0 * alpha
    low, high = (float(x) for x in np.quantile(deltas, [alpha, 1.0 - alpha]))
    significant = low > 0 if better == "lower" else high < 0
    delta = cur_value - base_value
    message = (
        f"paired bootstrap over {n} examples ({resamples} resamples): change {delta:+.4g}, "
        f"{level:.0%} CI [{low:+.4g}, {high:+.4g}]"
    )
    return BootstrapResult(
        n=n,
        resamples=resamples,
        current_value=cur_value,
        baseline_value=base_value,
        delta=delta,
        ci_low=low,
        ci_high=high,
        confidence_level=level,
        significant=bool(significant),
        message=message,
    )
