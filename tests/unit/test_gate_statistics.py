"""The statistical tests behind the gates: latency rank test and bootstrap, McNemar, histograms."""

from __future__ import annotations

import numpy as np
import pytest

from harness.baselines import histogram
from harness.gates.statistics import latency_regression, mcnemar, window_regression
from harness.samples import labels_fingerprint, thin

ALPHA = 0.01


def lognormal(seed: int, n: int, scale: float = 1.0) -> np.ndarray:
    """Latency-like samples: median 5 ms times `scale`, long right tail."""
    return np.random.default_rng(seed).lognormal(np.log(5.0), 0.4, n) * scale


def test_mannwhitney_flags_a_30_percent_slower_distribution():
    result = latency_regression(
        lognormal(1, 2000, 1.3),
        lognormal(2, 2000),
        percentile=95,
        min_ratio=1.10,
        alpha=ALPHA,
        method="mannwhitney",
    )
    assert result.significant
    assert result.exceeds_threshold
    assert result.regression
    assert result.p_value is not None
    assert result.p_value < 1e-6
    assert result.ratio == pytest.approx(1.3, rel=0.08)
    assert (result.n_current, result.n_baseline) == (2000, 2000)
    assert "regression" in result.message


def test_mannwhitney_false_alarms_on_identical_distributions_stay_near_alpha():
    # 200 A/A comparisons at alpha 0.01: about 2 false alarms expected, P(> 6) is about 0.5%
    alarms = sum(
        latency_regression(
            lognormal(2 * trial, 2000),
            lognormal(2 * trial + 1, 2000),
            percentile=95,
            min_ratio=1.0,  # no effect-size guard: this measures the test alone
            alpha=ALPHA,
            method="mannwhitney",
        ).significant
        for trial in range(200)
    )
    assert alarms <= 6


def test_significant_change_below_the_threshold_is_not_a_regression():
    result = latency_regression(
        lognormal(3, 20000, 1.03),
        lognormal(4, 20000),
        percentile=95,
        min_ratio=1.10,
        alpha=ALPHA,
        method="mannwhitney",
    )
    assert result.significant
    assert not result.exceeds_threshold
    assert not result.regression
    assert "within the threshold" in result.message


def test_large_but_insignificant_change_is_not_a_regression():
    baseline = lognormal(5, 40)
    current = baseline.copy()
    current[np.argmax(current)] *= 4  # one slow request moves p99 a lot and the ranks hardly at all
    result = latency_regression(
        current, baseline, percentile=99, min_ratio=1.10, alpha=ALPHA, method="mannwhitney"
    )
    assert result.exceeds_threshold
    assert not result.significant
    assert not result.regression


def test_an_improvement_is_never_significant():
    result = latency_regression(
        lognormal(6, 2000, 0.7),
        lognormal(7, 2000),
        percentile=95,
        min_ratio=1.1,
        alpha=ALPHA,
        method="mannwhitney",
    )
    assert result.p_value is not None
    assert result.p_value > 0.5
    assert not result.regression


def test_bootstrap_interval_contains_the_true_ratio_and_flags_the_shift():
    # scaling a distribution by 1.25 scales every percentile by exactly 1.25
    result = latency_regression(
        lognormal(8, 3000, 1.25),
        lognormal(9, 3000),
        percentile=95,
        min_ratio=1.10,
        alpha=ALPHA,
        method="bootstrap",
        resamples=1000,
        seed=0,
    )
    assert result.ci_low is not None
    assert result.ci_high is not None
    assert result.ci_low < 1.25 < result.ci_high
    assert result.ci_low > 1.0
    assert result.confidence_level == pytest.approx(1 - 2 * ALPHA)
    assert result.regression


def test_bootstrap_is_reproducible_with_a_seed_and_not_significant_on_equal_samples():
    same = lognormal(10, 3000)
    kwargs = {"percentile": 90, "min_ratio": 1.05, "alpha": ALPHA, "method": "bootstrap", "resamples": 500}
    first = latency_regression(same, lognormal(11, 3000), seed=3, **kwargs)
    again = latency_regression(same, lognormal(11, 3000), seed=3, **kwargs)
    assert (first.ci_low, first.ci_high) == (again.ci_low, again.ci_high)
    assert first.ci_low is not None
    assert first.ci_low < 1.0 < first.ci_high
    assert not first.significant


def test_latency_regression_rejects_bad_input():
    with pytest.raises(ValueError, match="no current latency samples"):
        latency_regression([], [1.0], percentile=95, min_ratio=1.1, alpha=ALPHA, method="mannwhitney")
    with pytest.raises(ValueError, match="NaN"):
        latency_regression(
            [float("nan")], [1.0], percentile=95, min_ratio=1.1, alpha=ALPHA, method="mannwhitney"
        )
    with pytest.raises(ValueError, match="unknown latency test"):
        latency_regression([1.0], [1.0], percentile=95, min_ratio=1.1, alpha=ALPHA, method="ttest")  # type: ignore[arg-type]


def _labels_and_predictions(seed: int = 0, n: int = 450, wrong: int = 15) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    predictions = labels.copy()
    missed = rng.choice(n, wrong, replace=False)
    predictions[missed] = (labels[missed] + 1) % 10
    return labels, predictions


def test_mcnemar_passes_identical_predictions():
    labels, predictions = _labels_and_predictions()
    result = mcnemar(predictions, predictions.copy(), labels, alpha=ALPHA)
    assert (result.b, result.c) == (0, 0)
    assert result.p_value == 1.0
    assert result.p_value_worse == 1.0
    assert result.delta == 0.0
    assert result.ci_low < 0.0 < result.ci_high
    assert not result.significant_drop


def test_mcnemar_flags_a_planted_drop_of_20_right_answers():
    labels, baseline = _labels_and_predictions()
    current = baseline.copy()
    flipped = np.flatnonzero(baseline == labels)[:20]
    current[flipped] = (labels[flipped] + 3) % 10
    result = mcnemar(current, baseline, labels, alpha=ALPHA)
    assert (result.b, result.c, result.n) == (20, 0, 450)
    assert result.delta == pytest.approx(-20 / 450)
    assert result.p_value_worse == pytest.approx(0.5**20)  # all 20 discordant pairs went one way
    assert result.significant_drop
    assert result.ci_low < result.delta < result.ci_high < 0.0
    assert "significant drop" in result.message


def test_mcnemar_does_not_flag_changes_that_cancel_out():
    labels, baseline = _labels_and_predictions()
    current = baseline.copy()
    right = np.flatnonzero(baseline == labels)[:10]
    wrong = np.flatnonzero(baseline != labels)[:10]
    current[right] = (labels[right] + 1) % 10
    current[wrong] = labels[wrong]
    result = mcnemar(current, baseline, labels, alpha=ALPHA)
    assert (result.b, result.c) == (10, 10)
    assert result.delta == 0.0
    assert result.p_value == pytest.approx(1.0)
    assert not result.significant_drop


def test_mcnemar_needs_one_prediction_per_example():
    with pytest.raises(ValueError, match="one prediction per example"):
        mcnemar([1, 2], [1, 2, 3], [1, 2, 3], alpha=ALPHA)


def test_newcombe_interval_widens_with_fewer_examples():
    wide = mcnemar([0] * 5 + [1] * 45, [1] * 50, [1] * 50, alpha=0.025)
    narrow = mcnemar([0] * 50 + [1] * 450, [1] * 500, [1] * 500, alpha=0.025)
    assert wide.delta == narrow.delta == pytest.approx(-0.1)
    assert wide.ci_high - wide.ci_low > narrow.ci_high - narrow.ci_low
    assert -1.0 <= wide.ci_low < -0.1 < wide.ci_high <= 0.0 + 1e-12


def test_labels_fingerprint_names_the_sequence():
    assert labels_fingerprint([1, 2, 3]) == labels_fingerprint(np.array([1, 2, 3], dtype=np.int32))
    assert labels_fingerprint([1, 2, 3]) != labels_fingerprint([1, 3, 2])
    assert len(labels_fingerprint([0])) == 16


@pytest.mark.parametrize("scale_ms", [0.05, 5.0, 400.0])
def test_histogram_round_trip_keeps_percentiles_within_a_tenth_of_a_percent(scale_ms):
    samples = np.random.default_rng(12).lognormal(np.log(scale_ms), 0.6, 20000)
    values, counts = histogram.decode(histogram.encode(samples))
    restored = histogram.expand(values, counts)
    assert restored.size == samples.size
    for p in (50, 90, 95, 99, 100):
        assert np.percentile(restored, p) == pytest.approx(np.percentile(samples, p), rel=1e-3)
    # each sample individually, too: the bucket midpoint is within half a bucket (1/2048)
    assert np.max(np.abs(restored - np.sort(samples)) / np.sort(samples)) <= histogram.MAX_RELATIVE_ERROR


def test_histogram_stays_small():
    text = histogram.encode(lognormal(13, 10000))
    assert text.isascii()
    assert len(text) < 4000


def test_histogram_of_nothing_is_empty_and_bad_values_are_refused():
    assert histogram.encode([]) == ""
    values, counts = histogram.decode("")
    assert values.size == counts.size == 0
    with pytest.raises(ValueError, match="negative"):
        histogram.encode([1.0, -1.0])
    with pytest.raises(ValueError, match="one hour"):
        histogram.encode([4_000_000.0])
    with pytest.raises(ValueError, match="not an HdrHistogram"):
        histogram.decode("not a histogram")


def test_expand_thins_to_evenly_spaced_order_statistics():
    values, counts = np.array([1.0, 2.0, 3.0]), np.array([50, 30, 20])
    assert histogram.expand(values, counts).tolist() == [1.0] * 50 + [2.0] * 30 + [3.0] * 20
    thinned = histogram.expand(values, counts, max_n=10)
    assert thinned.tolist() == [1.0] * 5 + [2.0] * 3 + [3.0] * 2
    assert thin([3.0, 1.0, 2.0, 4.0], max_n=2).tolist() == [2.0, 4.0]  # ranks 1 and 3 of 0..3


def test_bootstrap_refuses_a_single_sample_clearly():
    with pytest.raises(ValueError, match="at least 2 latency samples"):
        latency_regression([1.0, 2.0], [1.0], percentile=95, min_ratio=1.1, alpha=ALPHA, method="bootstrap")


def test_comparing_raw_samples_with_a_stored_histogram_adds_no_false_alarms():
    # the baseline side goes through the histogram (bucket midpoints), the current side is raw;
    # a biased quantisation would show up as a shift the rank test detects at n = 2000
    alarms = 0
    for trial in range(100):
        stored = histogram.encode(lognormal(1000 + 2 * trial, 2000, 0.06))  # 0.3 ms: fine ns grid matters
        baseline = histogram.expand(*histogram.decode(stored))
        alarms += latency_regression(
            lognormal(1001 + 2 * trial, 2000, 0.06),
            baseline,
            percentile=95,
            min_ratio=1.0,
            alpha=ALPHA,
            method="mannwhitney",
        ).significant
    assert alarms <= 4  # about 1 expected; P(more than 4) is about 0.3%


# --- the window test ----------------------------------------------------------------------------


def _windows(n: int = 20, level: float = 0.88, seed: int = 0) -> np.ndarray:
    """Per-window p95s of a quiet machine: about 2% apart, as measured on the 2-core VM."""
    return level * np.random.default_rng(seed).lognormal(0.0, 0.02, n)


def test_window_test_ignores_a_burst_of_interference_in_most_windows():
    baseline = _windows(seed=1)
    current = _windows(seed=2)
    current[3:15] *= 1.5  # a neighbour slowed 12 of 20 windows by half: pooled p95 moves, code did not
    assert np.median(current) / np.median(baseline) > 1.3, "precondition: the median is fooled"
    result = window_regression(current, baseline, percentile=95, min_ratio=1.075, alpha=0.01)
    assert result.method == "windows"
    assert result.ratio == pytest.approx(1.0, abs=0.04)
    assert not result.regression


def test_window_test_flags_a_shift_of_every_window_beyond_the_threshold():
    baseline = _windows(seed=3)
    current = _windows(seed=4) * 1.15
    result = window_regression(current, baseline, percentile=95, min_ratio=1.075, alpha=0.01)
    assert result.ratio == pytest.approx(1.15, abs=0.03)
    assert result.ci_low > 1.0
    assert (result.significant, result.exceeds_threshold, result.regression) == (True, True, True)
    assert "q25 of 20 vs 20 window p95s" in result.message


def test_window_test_needs_significance_as_well_as_the_threshold():
    baseline = _windows(n=8, seed=5)
    current = baseline.copy()
    current[[0, 1, 2, 3, 4, 5, 6]] *= 1.2  # 7 of 8 windows slower: the quartile moves, one window did not
    current[7] *= 0.5
    result = window_regression(current, baseline, percentile=95, min_ratio=1.075, alpha=0.01)
    assert result.exceeds_threshold
    assert result.ci_low <= 1.0, "the lowest window drags the bootstrap below 1"
    assert not result.regression


def test_window_test_refuses_too_few_windows_and_bad_quantiles():
    with pytest.raises(ValueError, match="at least 8 windows per side, got 7 current and 20 baseline"):
        window_regression(_windows(n=7), _windows(), percentile=95, min_ratio=1.1, alpha=0.01)
    with pytest.raises(ValueError, match="quantile"):
        window_regression(_windows(), _windows(), percentile=95, min_ratio=1.1, alpha=0.01, quantile=0)
