"""Change points: steps in a metric's nightly series, each with a magnitude and a significance.

The rule, in one place (`detect_steps`):
1. Work on log values, so a step is a ratio whatever the metric's scale (raw values when some are
   zero or negative).
2. ruptures proposes splits: optimal partitioning (PELT) of the mean under an L2 cost, on the
   series scaled by a robust noise estimate (the MAD of first differences, which one step barely
   moves), with a penalty of 3 log n. This stage is deliberately generous.
3. Each proposed split is tested on the window between its neighbouring splits: a permutation test
   of the largest standardised difference of means over every split position in the window. Taking
   the maximum over positions in each permutation too accounts for the split having been chosen by
   looking at the data, so p is honest where a fixed-split test would be far too small.
4. A split is kept when p < alpha / (splits still standing) (Bonferroni: each is a test),
   |after/before - 1| >= min_effect (medians), and both segments have >= min_after points.
   Otherwise the weakest split is dropped, its neighbours' windows merge and are tested again,
   until every remaining split passes.
A series shorter than min_history gives none: too few points to tell a step from the noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.history.acks import Ack, segment_start
from harness.history.record import ChangePoint, HistoryRecord
from harness.history.store import all_series, series

MIN_HISTORY = 10
MIN_AFTER = 3
ALPHA = 0.01
MIN_EFFECT = 0.05
PERMUTATIONS = 2000
MIN_SEGMENT = 2  # ruptures' smallest segment: one point is an outlier, not a level
# a little above BIC (2 log n) on unit-variance data: fewer noise splits, same power (stage 3 filters)
PENALTY_PER_LOG_N = 3.0
_MAD_TO_SIGMA = 1.4826  # MAD of a normal sample -> its standard deviation


@dataclass(frozen=True)
class Step:
    """A step at `index` (the first point of the new level) and the evidence for it."""

    index: int
    before_median: float
    after_median: float
    magnitude: float  # after_median / before_median - 1
    p_value: float
    points_before: int
    points_after: int


def detect_steps(
    values: Sequence[float],
    *,
    min_history: int = MIN_HISTORY,
    min_after: int = MIN_AFTER,
    alpha: float = ALPHA,
    min_effect: float = MIN_EFFECT,
    permutations: int = PERMUTATIONS,
    seed: int = 0,
) -> list[Step]:
    """The significant steps of one series (finite values in time order), by the module's rule."""
    x = np.asarray(values, dtype=np.float64)
    n = x.size
    if n < max(min_history, 2 * min_after, 2 * MIN_SEGMENT):
        return []
    if not np.all(np.isfinite(x)):
        raise ValueError("detect_steps needs finite values")
    y = np.log(x) if np.all(x > 0) else x
    sigma = _noise_sigma(y)
    if sigma == 0.0:
        return []  # a constant series has no step
    splits = _proposed_splits((y - np.median(y)) / sigma)
    rng = np.random.default_rng(seed)
    cache: dict[tuple[int, int, int], tuple[Step, bool]] = {}
    while True:
        bounds = [0, *splits, n]
        tested = []
        for i, split in enumerate(splits):
            window = (bounds[i], split, bounds[i + 2])
            if window not in cache:
                cache[window] = _test(x, y, *window, rng, permutations, min_effect, min_after)
            tested.append(cache[window])
        # Bonferroni over the splits still standing: each is a test of its own window
        level = alpha / max(len(splits), 1)
        failing = [i for i, (step, ok) in enumerate(tested) if not (ok and step.p_value < level)]
        if not failing:
            return [step for step, _ in tested]
        # drop the weakest failure first: its neighbours then gain points and are tested again
        weakest = max(failing, key=lambda i: (tested[i][0].p_value, -abs(tested[i][0].magnitude)))
        del splits[weakest]


def _noise_sigma(y: np.ndarray) -> float:
    diffs = np.diff(y)
    sigma = _MAD_TO_SIGMA * float(np.median(np.abs(diffs))) / math.sqrt(2.0)
    if sigma == 0.0:
        # mostly repeated values (a model size): the spread of the differences still sees a step
        sigma = float(np.std(diffs)) / math.sqrt(2.0)
    return sigma


def _proposed_splits(z: np.ndarray) -> list[int]:
    import ruptures

    # KernelCPD with a linear kernel is PELT under the L2 cost, in C: ruptures' Python Pelt takes
    # seconds on a year of nightly points, this takes milliseconds
    algo = ruptures.KernelCPD(kernel="linear", min_size=MIN_SEGMENT).fit(z.reshape(-1, 1))
    ends = algo.predict(pen=PENALTY_PER_LOG_N * math.log(z.size))
    return [int(e) for e in ends[:-1]]


def _test(
    x: np.ndarray,
    y: np.ndarray,
    lo: int,
    split: int,
    hi: int,
    rng: np.random.Generator,
    permutations: int,
    min_effect: float,
    min_after: int,
) -> tuple[Step, bool]:
    """The step at `split` between `lo` and `hi`, and whether it passes all but the p-value rule."""
    before = float(np.median(x[lo:split]))
    after = float(np.median(x[split:hi]))
    magnitude = after / before - 1.0 if before > 0 else math.nan  # undefined from zero: not reported
    p_value = _permutation_p(y[lo:hi], rng, permutations)
    step = Step(split, before, after, magnitude, p_value, split - lo, hi - split)
    ok = (
        math.isfinite(magnitude)
        and abs(magnitude) >= min_effect
        and step.points_before >= min_after
        and step.points_after >= min_after
    )
    return step, ok


def _permutation_p(window: np.ndarray, rng: np.random.Generator, permutations: int) -> float:
    """P(max over split positions of the standardised difference of means >= the observed one)
    when the order of the window's points is random (no change)."""
    m = window.size
    if m < 2 * MIN_SEGMENT:
        return 1.0
    shuffled = rng.permuted(np.tile(window, (permutations, 1)), axis=1)
    observed = _max_split_statistic(window[np.newaxis, :])[0]
    null = _max_split_statistic(shuffled)
    # the observed order counts as one permutation, so p is never 0; the tolerance absorbs rounding
    exceed = int(np.count_nonzero(null >= observed * (1 - 1e-9)))
    return (1 + exceed) / (1 + permutations)


def _max_split_statistic(rows: np.ndarray) -> np.ndarray:
    m = rows.shape[1]
    t = np.arange(MIN_SEGMENT, m - MIN_SEGMENT + 1)
    sums = np.cumsum(rows, axis=1)
    left = sums[:, t - 1] / t
    right = (sums[:, -1:] - sums[:, t - 1]) / (m - t)
    return np.max(np.abs(left - right) * np.sqrt(t * (m - t) / m), axis=1)


# ---- over the history ----------------------------------------------------------------------------


def usable(
    series_records: Sequence[HistoryRecord], acks: Sequence[Ack], run_times: dict[str, str]
) -> list[int]:
    """Positions in `series_records` whose points feed detection: VALID and in the current
    segment (at or after the latest ack). INVALID points are shown, never used: they are noise."""
    start = segment_start(series_records, acks, run_times)
    return [i for i in range(start, len(series_records)) if series_records[i].valid]


def run_times(records: Sequence[HistoryRecord]) -> dict[str, str]:
    """run id -> its time, over the whole store (to place an ack on a testbed that never ran it)."""
    return {r.run_id: r.time for r in records}


def series_change_points(
    points: Sequence[HistoryRecord],
    acks: Sequence[Ack],
    times: dict[str, str],
    **params: Any,
) -> list[ChangePoint]:
    """The change points of one series (its records in time order); indices are positions in it.
    `params` are detect_steps' keywords."""
    used = usable(points, acks, times)
    steps = detect_steps([points[i].value for i in used], **params)
    return [
        _change_point(points, points[used[s.index - 1]], points[used[s.index]], used[s.index], s)
        for s in steps
    ]


def _change_point(
    points: Sequence[HistoryRecord], last: HistoryRecord, first: HistoryRecord, index: int, step: Step
) -> ChangePoint:
    names = sorted(set(last.annotations) | set(first.annotations))
    changed = {
        name: [last.annotations.get(name, ""), first.annotations.get(name, "")]
        for name in names
        if last.annotations.get(name) != first.annotations.get(name)
    }
    return ChangePoint(
        scenario=first.scenario,
        variant=first.variant,
        metric=first.metric,
        testbed=first.testbed,
        index=index,
        run_id=first.run_id,
        time=first.time,
        before=step.before_median,
        after=step.after_median,
        magnitude=step.magnitude,
        p_value=step.p_value,
        points_before=step.points_before,
        points_after=step.points_after,
        annotations_changed=changed,
        commit_before=last.commit,
        commit_after=first.commit,
    )


def find_change_points(
    records: Sequence[HistoryRecord], acks: Sequence[Ack] = (), **params: Any
) -> list[ChangePoint]:
    """The change points of every series (scenario, variant, metric, testbed) in `records`, using
    its VALID points after its latest ack; `params` are detect_steps' keywords."""
    times = run_times(records)
    found = []
    for points in all_series(records).values():
        found += series_change_points(points, acks, times, **params)
    return found


def noise_floor(
    records: Sequence[HistoryRecord],
    scenario: str,
    variant: str,
    metric: str,
    testbed: str,
    *,
    acks: Sequence[Ack] = (),
    min_history: int = MIN_HISTORY,
) -> float | None:
    """The typical relative run-to-run change of the series in its current segment (after its
    latest ack and its latest change point): exp(median |log(x_t / x_t-1)|) - 1.

    None with fewer than `min_history` VALID points there, or with a value <= 0 (no ratio)."""
    points = series(records, (scenario, variant, metric, testbed))
    times = run_times(records)
    used = usable(points, acks, times)
    changes = series_change_points(points, acks, times, min_history=min_history)
    if changes:
        used = [i for i in used if i >= changes[-1].index]
    values = np.array([points[i].value for i in used], dtype=np.float64)
    if values.size < min_history or np.any(values <= 0):
        return None
    return float(math.expm1(np.median(np.abs(np.diff(np.log(values))))))
