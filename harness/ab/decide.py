"""The one rule of `harness ab`: when is a metric's change between base and head real?

Load metrics (latency percentiles, throughput) are paired by block: each block measured both
sides back to back, so r_i = log(head_i / base_i) cancels whatever slowed the machine during
block i. Their mean is tested two ways, and a change counts only if both agree:
- an exact sign-flip permutation test of the mean (its p-value can never go below
  `schedule.best_reachable_alpha`, which is why too few blocks are refused up front);
- a bootstrap confidence interval of the mean at 1 - alpha, which gives the change's range.
Then, in the metric's worse direction, with `threshold` = max(minimum effect, noise floor):
- regressed: p <= alpha, the interval excludes zero, and the change is at least the threshold;
- improved: the same in the better direction;
- unchanged: the interval's worse end stays below the threshold (a relevant regression is ruled
  out, whether or not some smaller change is significant);
- inconclusive: anything else: the data cannot rule a relevant regression in or out.
The error rate is compared on pooled request counts with Fisher's exact test instead: it is
usually zero, and a ratio of zeros says nothing.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from harness.ab.record import ChangeStatus, Comparison

BLOCK_TEST = "block log-ratio (sign-flip + bootstrap)"
EXACT_SIGN_FLIPS = 16  # up to 2**16 sign patterns enumerated; beyond, sampled
SAMPLED_SIGN_FLIPS = 20_000


def compare_blocks(
    variant: str,
    metric: str,
    base: Sequence[float],
    head: Sequence[float],
    *,
    better: str,
    alpha: float,
    min_effect: float,
    noise_floor: float | None,
    resamples: int = 4000,
    seed: int = 0,
) -> Comparison:
    """Head against base on one load metric, from one value per side per block."""
    a, b = np.asarray(base, dtype=np.float64), np.asarray(head, dtype=np.float64)
    usable = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
    threshold = max(min_effect, noise_floor or 0.0)
    row = Comparison(
        variant=variant,
        metric=metric,
        base_value=_median(a[usable]),
        head_value=_median(b[usable]),
        change=None,
        change_kind="relative",
        ci_low=None,
        ci_high=None,
        threshold=threshold,
        min_effect=min_effect,
        noise_floor=noise_floor,
        status="inconclusive",
        test=BLOCK_TEST,
        n=int(usable.sum()),
        message="",
        better="lower" if better == "lower" else "higher",
    )
    if usable.sum() < len(a) or len(a) < 2:
        missing = len(a) - int(usable.sum())
        return replace(
            row,
            message=f"{metric}: {missing} of {len(a)} blocks have no value on a side (no request "
            "succeeded); cannot pair them",
        )
    ratios = np.log(b / a)
    mean = float(ratios.mean())
    p_value = sign_flip_p(ratios, seed=seed)
    lo, hi = bootstrap_mean_ci(ratios, alpha=alpha, resamples=resamples, seed=seed)
    sign = 1.0 if better == "lower" else -1.0  # worse = a larger log-ratio for lower-is-better
    worse, worse_lo, worse_hi = sign * mean, min(sign * lo, sign * hi), max(sign * lo, sign * hi)
    limit = math.log1p(threshold)
    status: ChangeStatus
    if p_value <= alpha and worse_lo > 0 and worse >= limit:
        status = "regressed"
    elif p_value <= alpha and worse_hi < 0 and -worse >= limit:
        status = "improved"
    elif worse_hi < limit:
        status = "unchanged"
    else:
        status = "inconclusive"
    change, ci_low, ci_high = math.expm1(mean), math.expm1(lo), math.expm1(hi)
    message = (
        f"{metric} {change:+.1%} (CI [{ci_low:+.1%}, {ci_high:+.1%}], p={p_value:.3g}, {len(a)} blocks; "
        f"threshold {threshold:.1%}): {_meaning(status, threshold, better)}"
    )
    return replace(
        row, change=change, ci_low=ci_low, ci_high=ci_high, status=status, message=message, p_value=p_value
    )


def compare_errors(
    variant: str,
    base_failures: int,
    base_requests: int,
    head_failures: int,
    head_requests: int,
    *,
    alpha: float,
    min_effect: float = 0.0,
) -> Comparison:
    """Head's error rate against base's on pooled counts, Fisher's exact test (one-sided each way)."""
    from scipy.stats import fisher_exact

    base_rate = base_failures / base_requests if base_requests else math.nan
    head_rate = head_failures / head_requests if head_requests else math.nan
    table = [[head_failures, head_requests - head_failures], [base_failures, base_requests - base_failures]]
    counted = bool(base_requests and head_requests)
    worse_p = float(fisher_exact(table, alternative="greater").pvalue) if counted else 1.0
    better_p = float(fisher_exact(table, alternative="less").pvalue) if counted else 1.0
    change = head_rate - base_rate
    status: ChangeStatus
    if not counted:
        status = "inconclusive"
    elif worse_p <= alpha and change > min_effect:
        status = "regressed"
    elif better_p <= alpha and -change > min_effect:
        status = "improved"
    else:
        status = "unchanged"
    p_value = worse_p if change >= 0 else better_p
    message = (
        f"error_rate {head_failures}/{head_requests} against {base_failures}/{base_requests} "
        f"(Fisher exact p={p_value:.3g}): {_meaning(status, min_effect, 'lower', absolute=True)}"
    )
    return Comparison(
        variant=variant,
        metric="error_rate",
        base_value=base_rate,
        head_value=head_rate,
        change=change,
        change_kind="absolute",
        ci_low=None,
        ci_high=None,
        threshold=min_effect,
        min_effect=min_effect,
        noise_floor=None,
        status=status,
        test="Fisher exact",
        n=base_requests + head_requests,
        message=message,
        p_value=p_value,
        better="lower",
    )


def noise_floor_of(
    base: Sequence[float], twin: Sequence[float], *, alpha: float, seed: int = 0
) -> float | None:
    """What noise alone moves a metric by: the larger end, in absolute value, of the A/A blocks'
    confidence interval of the mean log-ratio, as a relative change. None without usable blocks."""
    a, b = np.asarray(base, dtype=np.float64), np.asarray(twin, dtype=np.float64)
    usable = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
    if usable.sum() < 2:
        return None
    lo, hi = bootstrap_mean_ci(np.log(b[usable] / a[usable]), alpha=alpha, resamples=4000, seed=seed)
    return math.expm1(max(abs(lo), abs(hi)))


def sign_flip_p(ratios: npt.NDArray[np.float64], *, seed: int = 0) -> float:
    """Two-sided p-value of "the mean log-ratio is zero": the share of sign patterns whose mean is
    at least as far from zero as the observed one (exact up to EXACT_SIGN_FLIPS blocks)."""
    x = np.asarray(ratios, dtype=np.float64)
    observed = abs(x.mean())
    if len(x) <= EXACT_SIGN_FLIPS:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(x))))
    else:
        rng = np.random.default_rng(seed)
        signs = rng.choice((1.0, -1.0), size=(SAMPLED_SIGN_FLIPS, len(x)))
        signs[0] = 1.0  # the observed pattern counts, so p is never zero
    means = np.abs(signs @ x) / len(x)
    return float(np.mean(means >= observed - 1e-12))


def bootstrap_mean_ci(
    ratios: npt.NDArray[np.float64], *, alpha: float, resamples: int, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean at confidence 1 - alpha (two-sided)."""
    x = np.asarray(ratios, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def _median(values: npt.NDArray[np.float64]) -> float | None:
    return float(np.median(values)) if len(values) else None


def _meaning(status: ChangeStatus, threshold: float, better: str, *, absolute: bool = False) -> str:
    amount = f"{threshold:g}" if absolute else f"{threshold:.1%}"
    worse = "higher" if better == "lower" else "lower"
    if absolute and threshold == 0:
        return {
            "regressed": f"significantly {worse}",
            "improved": "significantly better",
            "unchanged": "no significant difference",
            "inconclusive": "nothing to compare: a side sent no request",
        }[status]
    return {
        "regressed": f"significantly {worse}, by at least the threshold",
        "improved": "significantly better, by at least the threshold",
        "unchanged": f"no change of {amount} or more in the worse direction",
        "inconclusive": f"cannot rule out a change of {amount} or more: too noisy to decide",
    }[status]
