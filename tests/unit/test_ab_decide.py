"""The A/B decision rule: paired block log-ratios, the sign-flip p-value, the bootstrap interval,
the threshold, and the error-rate test (harness.ab.decide, harness.ab.schedule)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.ab.decide import (
    bootstrap_mean_ci,
    compare_blocks,
    compare_errors,
    noise_floor_of,
    sign_flip_p,
)
from harness.ab.schedule import (
    best_reachable_alpha,
    block_order,
    check_pairs,
    check_rounds,
    order_text,
    pairs_needed,
    round_sizes,
)
from harness.errors import UserError


def _blocks(n: int, ratio: float, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-block values of two sides; a shared per-block drift that pairing must cancel."""
    rng = np.random.default_rng(seed)
    drift = np.exp(rng.normal(0, 0.3, n))  # the machine's load changes a lot between blocks
    base = 10.0 * drift * np.exp(rng.normal(0, noise, n))
    head = 10.0 * ratio * drift * np.exp(rng.normal(0, noise, n))
    return base, head


def _compare(base: np.ndarray, head: np.ndarray, **kw: float) -> object:
    args = {"better": "lower", "alpha": 0.01, "min_effect": 0.05, "noise_floor": None}
    args.update(kw)
    return compare_blocks("v", "latency_p95_ms", base, head, **args)  # type: ignore[arg-type]


def test_blocks_are_abba_so_each_side_goes_first_equally_often() -> None:
    assert order_text(8) == "AB BA BA AB AB BA BA AB"
    firsts = [a for a, _ in block_order(8)]
    assert firsts.count("base") == firsts.count("head") == 4


def test_alpha_that_the_blocks_cannot_reach_is_refused_with_the_count_needed() -> None:
    assert best_reachable_alpha(5) == pytest.approx(0.0625)
    assert pairs_needed(0.01) == 8  # 2 / 2**8 = 0.0078
    assert pairs_needed(0.05) == 6
    assert pairs_needed(0.2) == 5  # never fewer than five blocks
    with pytest.raises(
        UserError, match=r"--pairs 5 cannot reach alpha 0.01.*smallest possible p-value is 0.0625"
    ):
        check_pairs(5, 0.01)
    assert check_pairs(None, 0.01) == 8
    assert check_pairs(9, 0.01) == 9


def test_rounds_split_the_blocks_evenly_and_the_abba_order_runs_on_across_them() -> None:
    assert round_sizes(16, 2) == [8, 8]
    assert round_sizes(7, 3) == [3, 2, 2]
    # the second round does not restart at AB: over all blocks each side goes first equally often
    assert order_text(6, 2) == "AB BA BA | AB AB BA"
    assert order_text(8, 1) == order_text(8)


def test_default_blocks_let_each_round_reach_alpha_and_too_many_rounds_are_refused() -> None:
    assert check_pairs(None, 0.01, 2) == 16  # 8 alone would decide only when every block agrees
    assert check_pairs(None, 0.05, 2) == 12
    assert check_pairs(6, 0.05, 3) == 6  # alpha is reached by all blocks together
    with pytest.raises(UserError, match=r"--pairs 5 cannot fill --rounds 3: each round needs at least 2"):
        check_pairs(5, 0.2, 3)
    with pytest.raises(UserError, match=r"--rounds: expected 1 to 20"):
        check_rounds(0)


def test_sign_flip_p_is_exact_for_all_blocks_in_one_direction() -> None:
    assert sign_flip_p(np.full(8, 0.1)) == pytest.approx(2 / 2**8)
    assert sign_flip_p(np.array([0.1, -0.1, 0.1, -0.1])) == pytest.approx(1.0)


def test_paired_blocks_detect_fifteen_percent_despite_drift_between_blocks() -> None:
    base, head = _blocks(8, 1.15, 0.03, seed=1)
    result = _compare(base, head)
    assert result.status == "regressed"
    assert result.change == pytest.approx(0.15, abs=0.04)
    assert result.ci_low > 0.05
    assert result.ci_high < 0.3
    assert result.p_value <= 0.01


def test_no_change_is_unchanged_not_a_regression() -> None:
    for seed in range(20):
        base, head = _blocks(8, 1.0, 0.02, seed=seed)
        assert _compare(base, head).status == "unchanged", seed


def test_a_small_significant_change_below_the_threshold_is_unchanged() -> None:
    base, head = _blocks(8, 1.02, 0.002, seed=3)
    result = _compare(base, head)
    assert result.p_value <= 0.01
    assert result.ci_low > 0
    assert result.status == "unchanged"


def test_too_noisy_to_rule_out_the_threshold_is_inconclusive() -> None:
    base, head = _blocks(8, 1.0, 0.4, seed=4)
    result = _compare(base, head)
    assert result.status == "inconclusive"
    assert "too noisy" in result.message


def test_a_noise_floor_above_the_minimum_effect_raises_the_threshold() -> None:
    base, head = _blocks(8, 1.10, 0.01, seed=5)
    assert _compare(base, head).status == "regressed"
    lifted = _compare(base, head, noise_floor=0.2)
    assert lifted.threshold == pytest.approx(0.2)
    assert lifted.status != "regressed"


def test_throughput_direction_is_higher_is_better() -> None:
    base, head = _blocks(8, 0.8, 0.01, seed=6)
    result = compare_blocks(
        "v", "throughput_rps", base, head, better="higher", alpha=0.01, min_effect=0.05, noise_floor=None
    )
    assert result.status == "regressed"
    faster = compare_blocks(
        "v", "throughput_rps", head, base, better="higher", alpha=0.01, min_effect=0.05, noise_floor=None
    )
    assert faster.status == "improved"


def test_a_block_without_a_value_makes_the_metric_inconclusive() -> None:
    base, head = _blocks(8, 1.0, 0.01, seed=7)
    head[2] = math.nan
    result = _compare(base, head)
    assert result.status == "inconclusive"
    assert "1 of 8 blocks" in result.message


def test_bootstrap_interval_covers_the_mean_and_narrows_with_alpha() -> None:
    x = np.random.default_rng(0).normal(0.1, 0.05, 10)
    lo, hi = bootstrap_mean_ci(x, alpha=0.01, resamples=4000)
    lo5, hi5 = bootstrap_mean_ci(x, alpha=0.2, resamples=4000)
    assert lo < x.mean() < hi
    assert lo < lo5 < hi5 < hi


def test_noise_floor_is_what_an_aa_comparison_cannot_exclude() -> None:
    base, twin = _blocks(8, 1.0, 0.05, seed=8)
    floor = noise_floor_of(base, twin, alpha=0.01)
    assert floor is not None
    assert 0.0 < floor < 0.2
    assert noise_floor_of([1.0], [1.0], alpha=0.01) is None


def test_error_rate_compares_pooled_counts() -> None:
    assert compare_errors("v", 0, 1000, 25, 1000, alpha=0.01).status == "regressed"
    assert compare_errors("v", 0, 1000, 1, 1000, alpha=0.01).status == "unchanged"  # one error proves nothing
    assert compare_errors("v", 30, 1000, 0, 1000, alpha=0.01).status == "improved"
    assert compare_errors("v", 0, 0, 0, 1000, alpha=0.01).status == "inconclusive"
