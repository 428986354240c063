"""Statistical tests behind the gates: is a change both real (significant) and big enough to matter?

A threshold alone cries wolf on a noisy machine; a significance test alone flags a 0.3% change
measured over 100,000 requests. So a regression is a change that is significant at `alpha` AND
beyond the gate's threshold, which acts as the minimum effect size.

- Latency, by default: the window test. Each measurement window (e.g. 1 s) gives one value of
  the gated percentile; the compared value is the lower quartile of those window values and
  significance comes from a bootstrap over windows. On a shared machine interference comes in
  bursts of seconds and only ever adds latency; the quartile ignores bursts that cover up to
  three quarters of the windows, while a slower model or server moves every window.
- Latency, request level (fewer than 8 windows, or chosen): a one-sided Mann-Whitney U test
  (current stochastically greater) or a bootstrap confidence interval of the percentile ratio.
- Accuracy (one prediction per test example, the same examples in both runs): McNemar's exact
  test on the discordant pairs, with Newcombe's interval for the paired accuracy delta.
- Throughput is one number per run, so no test applies to it within a run: its gates stay plain
  comparisons, and the confirmation re-measurement (`harness.gates.decide`)
  is what protects them from a one-off slow run.

Caveat, stated once here: the request-level tests treat requests as independent draws. Requests
of one run are correlated (a noisy neighbour slows a whole second of them), so their p-values are
optimistic and, over thousands of requests, any burst is "significant"; windows are the unit
that is close to independent. `benchmarks/gate_validity.py` measures the false-alarm and
detection rates of each test on this machine.
scipy is imported inside the functions: importing this module costs only numpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from harness.metrics.latency import PERCENTILE_METHOD  # ratios use the report's percentiles
from harness.samples import thin

LatencyMethod = Literal["mannwhitney", "bootstrap"]
LatencyTest = Literal["windows", "mannwhitney", "bootstrap"]  # the window test names its own results

# Fewest windows per side for the window test; below it the gate falls back to the request-level
# test. Eight is where the lower quartile is still an order statistic between the extremes.
MIN_WINDOWS = 8
ArrayLike = Sequence[float] | Sequence[int] | np.ndarray

# The bootstrap costs O(resamples * n); 20,000 evenly spaced order statistics per side keep it
# near one second on a CI core while leaving the interval far narrower than any sane threshold.
BOOTSTRAP_MAX_SAMPLES = 20_000


@dataclass(frozen=True)
class LatencyTestResult:
    """Outcome of `latency_regression`; ratio and CI are current / baseline at `percentile`."""

    method: LatencyTest
    percentile: float
    current_value: float
    baseline_value: float
    ratio: float
    ci_low: float | None  # bootstrap only
    ci_high: float | None
    confidence_level: float | None
    p_value: float | None  # Mann-Whitney only
    significant: bool
    exceeds_threshold: bool
    n_current: int
    n_baseline: int
    message: str

    @property
    def regression(self) -> bool:
        """Both significant and beyond the threshold."""
        return self.significant and self.exceeds_threshold


@dataclass(frozen=True)
class McNemarResult:
    """Outcome of `mcnemar`: b = right before, wrong now; c = wrong before, right now."""

    n: int
    b: int
    c: int
    accuracy_current: float
    accuracy_baseline: float
    delta: float  # accuracy_current - accuracy_baseline
    ci_low: float
    ci_high: float
    confidence_level: float
    p_value: float  # two-sided exact test: any change
    p_value_worse: float  # one-sided exact test: current worse
    significant_drop: bool  # p_value_worse < alpha
    message: str


def latency_regression(
    current_ms: ArrayLike,
    baseline_ms: ArrayLike,
    *,
    percentile: float,
    min_ratio: float,
    alpha: float,
    method: LatencyMethod,
    resamples: int = 2000,
    seed: int = 0,
) -> LatencyTestResult:
    """Is the current latency distribution worse than the baseline, by more than `min_ratio`?

    `min_ratio` is the gate as a ratio ('+10%' -> 1.10) and is compared with the ratio of the
    `percentile`-th percentiles. Significance: 'mannwhitney' is scipy's one-sided U test of
    "current tends to be larger" (p < alpha); 'bootstrap' resamples each sample independently
    (scipy.stats.bootstrap, percentile method, seeded) and needs the lower end of the two-sided
    (1 - 2 alpha) interval of the ratio above 1, i.e. a one-sided (1 - alpha) bound.
    """
    current = _latencies(current_ms, "current")
    baseline = _latencies(baseline_ms, "baseline")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    cur_value = float(np.percentile(current, percentile, method=PERCENTILE_METHOD))
    base_value = float(np.percentile(baseline, percentile, method=PERCENTILE_METHOD))
    ratio = cur_value / base_value if base_value > 0 else math.inf
    exceeds = ratio > min_ratio
    p_value: float | None = None
    ci_low = ci_high = confidence = None
    if method == "mannwhitney":
        from scipy.stats import mannwhitneyu

        p_value = float(mannwhitneyu(current, baseline, alternative="greater").pvalue)
        significant = p_value < alpha
        evidence = f"Mann-Whitney one-sided p={p_value:.3g} {'<' if significant else '>='} alpha {alpha:g}"
    elif method == "bootstrap":
        if min(current.size, baseline.size) < 2:
            raise ValueError("the bootstrap needs at least 2 latency samples on each side")
        ci_low, ci_high, confidence = _bootstrap_ratio_ci(
            current, baseline, percentile, alpha, resamples, seed
        )
        significant = ci_low > 1.0
        where = "above" if significant else "not above"
        evidence = f"bootstrap {confidence:.0%} CI of the ratio [{ci_low:.3f}, {ci_high:.3f}] {where} 1"
    else:
        raise ValueError(f"unknown latency test {method!r}; expected 'mannwhitney' or 'bootstrap'")
    if significant and exceeds:
        verdict = "regression"
    elif significant:
        verdict = "significant but within the threshold"
    elif exceeds:
        verdict = "beyond the threshold but not significant"
    else:
        verdict = "no regression"
    message = (
        f"p{percentile:g} {cur_value:.4g} vs {base_value:.4g} ms (ratio {ratio:.3f}, threshold "
        f"{min_ratio:.3f}); {evidence}: {verdict}"
    )
    return LatencyTestResult(
        method=method,
        percentile=float(percentile),
        current_value=cur_value,
        baseline_value=base_value,
        ratio=ratio,
        ci_low=ci_low,
        ci_high=ci_high,
        confidence_level=confidence,
        p_value=p_value,
        significant=significant,
        exceeds_threshold=exceeds,
        n_current=int(current.size),
        n_baseline=int(baseline.size),
        message=message,
    )


def window_regression(
    current_windows: ArrayLike,
    baseline_windows: ArrayLike,
    *,
    percentile: float,
    min_ratio: float,
    alpha: float,
    quantile: float = 25.0,
    resamples: int = 2000,
    seed: int = 0,
) -> LatencyTestResult:
    """Window test: is the `percentile` worse in the quiet windows of the current run?

    Each argument holds one value per measurement window (e.g. each window's p95). A neighbour on
    a shared machine only ever adds latency, and it does so in bursts of seconds, so the compared
    value is the `quantile`-th percentile of the window values (default: the lower quartile,
    "the p95 of the quieter windows"): a burst covering up to three quarters of the windows
    cannot move it, while a regression in the model or server moves every window. Windows, not
    requests, are the independent units: requests of one window share its interference.
    Significance: the one-sided (1 - alpha) lower bound of a bootstrap over windows (each side
    resampled on its own, percentile method, seeded) must be above 1.
    """
    current = _latencies(current_windows, "current window")
    baseline = _latencies(baseline_windows, "baseline window")
    if min(current.size, baseline.size) < MIN_WINDOWS:
        raise ValueError(
            f"the window test needs at least {MIN_WINDOWS} windows per side, got "
            f"{current.size} current and {baseline.size} baseline"
        )
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    if not 0 < quantile < 100:
        raise ValueError(f"quantile must be in (0, 100), got {quantile}")
    cur_value = float(np.percentile(current, quantile, method=PERCENTILE_METHOD))
    base_value = float(np.percentile(baseline, quantile, method=PERCENTILE_METHOD))
    ratio = cur_value / base_value if base_value > 0 else math.inf
    ci_low, ci_high, confidence = _bootstrap_ratio_ci(current, baseline, quantile, alpha, resamples, seed)
    significant = ci_low > 1.0
    exceeds = ratio > min_ratio
    message = (
        f"q{quantile:g} of {current.size} vs {baseline.size} window p{percentile:g}s "
        f"{cur_value:.4g} vs {base_value:.4g} ms (ratio {ratio:.3f}, threshold {min_ratio:.3f}); "
        f"bootstrap {confidence:.0%} CI [{ci_low:.3f}, {ci_high:.3f}]"
    )
    return LatencyTestResult(
        method="windows",
        percentile=float(percentile),
        current_value=cur_value,
        baseline_value=base_value,
        ratio=ratio,
        ci_low=ci_low,
        ci_high=ci_high,
        confidence_level=confidence,
        p_value=None,
        significant=significant,
        exceeds_threshold=exceeds,
        n_current=int(current.size),
        n_baseline=int(baseline.size),
        message=message,
    )


def _bootstrap_ratio_ci(
    current: npt.NDArray[np.float64],
    baseline: npt.NDArray[np.float64],
    percentile: float,
    alpha: float,
    resamples: int,
    seed: int,
) -> tuple[float, float, float]:
    from scipy.stats import bootstrap

    def ratio(
        cur: npt.NDArray[np.float64], base: npt.NDArray[np.float64], axis: int = -1
    ) -> npt.NDArray[np.float64]:
        top = np.percentile(cur, percentile, axis=axis, method=PERCENTILE_METHOD)
        bottom = np.percentile(base, percentile, axis=axis, method=PERCENTILE_METHOD)
        return np.asarray(top / bottom)

    confidence = 1.0 - 2.0 * alpha
    result = bootstrap(
        (thin(current, BOOTSTRAP_MAX_SAMPLES), thin(baseline, BOOTSTRAP_MAX_SAMPLES)),
        ratio,
        n_resamples=resamples,
        batch=100,  # caps memory at 100 x n per sample instead of resamples x n
        vectorized=True,
        paired=False,
        confidence_level=confidence,
        method="percentile",  # BCa's jackknife is O(n^2) percentiles: minutes at n = 20,000
        rng=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return float(interval.low), float(interval.high), confidence


def mcnemar(
    pred_current: ArrayLike,
    pred_baseline: ArrayLike,
    labels: ArrayLike,
    *,
    alpha: float,
    confidence_level: float | None = None,
) -> McNemarResult:
    """Paired comparison of two classifiers on the same examples (McNemar's exact test).

    A prediction is right when it equals the label; `mcnemar_paired` does the rest.
    """
    cur = np.asarray(pred_current).ravel()
    base = np.asarray(pred_baseline).ravel()
    truth = np.asarray(labels).ravel()
    if not cur.size == base.size == truth.size:
        raise ValueError(
            f"McNemar needs one prediction per example in both runs: {cur.size} current, "
            f"{base.size} baseline, {truth.size} labels"
        )
    return mcnemar_paired(cur == truth, base == truth, alpha=alpha, confidence_level=confidence_level)


def mcnemar_paired(
    right_now: ArrayLike,
    right_before: ArrayLike,
    *,
    alpha: float,
    confidence_level: float | None = None,
) -> McNemarResult:
    """McNemar's exact test on paired 0/1 outcomes: right (top-1 or top-5 correct, agreeing with
    the reference) or not, per example, in the current run and in the baseline.

    Only discordant examples carry information: b (baseline right, current wrong) and c (baseline
    wrong, current right). Under "no change" b ~ Binomial(b + c, 1/2); scipy.stats.binomtest gives
    the exact two-sided p-value and the one-sided one for "current is worse", which decides
    `significant_drop`. The interval of the delta of the proportions right is Newcombe's hybrid
    score interval for paired proportions (Newcombe 1998, Stat. Med. 17:2635, method 10), built
    from scipy's Wilson intervals; it stays sensible where the Wald interval collapses (b = c = 0,
    proportions near 1). Default level 1 - 2 alpha: its lower end is the one-sided bound matching
    the test.
    """
    from scipy.stats import binomtest

    now = np.asarray(right_now).ravel().astype(bool)
    before = np.asarray(right_before).ravel().astype(bool)
    if now.size != before.size:
        raise ValueError(
            f"McNemar needs one outcome per example in both runs: {now.size} current, {before.size} baseline"
        )
    if now.size == 0:
        raise ValueError("McNemar needs at least one example")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    level = 1.0 - 2.0 * alpha if confidence_level is None else confidence_level
    n = int(now.size)
    both = int(np.sum(now & before))
    b = int(np.sum(before & ~now))
    c = int(np.sum(~before & now))
    neither = n - both - b - c
    if b + c == 0:
        p_two = p_worse = 1.0  # no discordant pair: no evidence of any change
    else:
        p_two = float(binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)
        p_worse = float(binomtest(b, b + c, 0.5, alternative="greater").pvalue)
    acc_now, acc_before = (both + c) / n, (both + b) / n
    delta = acc_now - acc_before
    low, high = _newcombe_paired_ci(both, c, b, neither, level)
    drop = p_worse < alpha
    message = (
        f"McNemar exact one-sided p={p_worse:.3g} {'<' if drop else '>='} alpha {alpha:g} "
        f"({b} right->wrong, {c} wrong->right of {n}); accuracy delta {delta:+.4f} "
        f"[{level:.0%} CI {low:+.4f}, {high:+.4f}]: {'significant drop' if drop else 'no significant drop'}"
    )
    return McNemarResult(
        n=n,
        b=b,
        c=c,
        accuracy_current=acc_now,
        accuracy_baseline=acc_before,
        delta=delta,
        ci_low=low,
        ci_high=high,
        confidence_level=level,
        p_value=p_two,
        p_value_worse=p_worse,
        significant_drop=drop,
        message=message,
    )


def _newcombe_paired_ci(e: int, f: int, g: int, h: int, level: float) -> tuple[float, float]:
    """Newcombe's method 10 for p1 - p2 from a paired 2x2 table.

    Cells in Newcombe's notation: e = both right, f = right only in sample 1 (current),
    g = right only in sample 2 (baseline), h = both wrong; p1 = (e + f) / n, p2 = (e + g) / n.
    """
    from scipy.stats import binomtest

    n = e + f + g + h
    p1, p2 = (e + f) / n, (e + g) / n
    w1 = binomtest(e + f, n).proportion_ci(confidence_level=level, method="wilson")
    w2 = binomtest(e + g, n).proportion_ci(confidence_level=level, method="wilson")
    l1, u1, l2, u2 = float(w1.low), float(w1.high), float(w2.low), float(w2.high)
    denominator = (e + f) * (g + h) * (e + g) * (f + h)
    # Newcombe's corrected estimate of the correlation: a positive numerator loses N/2 (and stops
    # at 0), which keeps coverage near nominal when few pairs are discordant
    numerator: float = e * h - f * g
    if numerator > n / 2:
        numerator -= n / 2
    elif numerator >= 0:
        numerator = 0
    phi = numerator / math.sqrt(denominator) if denominator > 0 else 0.0
    down = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    up = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    delta = p1 - p2
    return max(-1.0, delta - down), min(1.0, delta + up)


def _latencies(samples: ArrayLike, which: str) -> npt.NDArray[np.float64]:
    array = np.asarray(samples, dtype=np.float64).ravel()
    if array.size == 0:
        raise ValueError(f"no {which} latency samples")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{which} latency samples contain NaN or infinity")
    return array
