"""The evidence a verdict carries: which test decided it, with the figures a reader can check.

A tagged union (field `kind`) so that the run record reads each back as its own type; part of
the typed run record (`harness.results`), kept apart because each test adds a kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class ThresholdEvidence:
    """A plain comparison of one number with a limit; `reason` says why no test ran."""

    kind: Literal["threshold"] = "threshold"
    reason: str = ""
    compared: bool = True  # False: the baseline had no value for this metric


@dataclass(frozen=True)
class LatencyEvidence:
    """A latency percentile gate decided by a statistical test (harness.gates.statistics)."""

    test: Literal["windows", "mannwhitney", "bootstrap"]
    alpha: float
    percentile: float
    ratio: float | None  # current / baseline of the compared statistic
    min_ratio: float  # the threshold as a ratio: the smallest change that counts
    ci_low: float | None
    ci_high: float | None
    confidence_level: float | None
    significant: bool
    exceeds_threshold: bool
    n_current: int
    n_baseline: int
    p_value: float | None = None  # rank test only; the window test has an interval instead
    window_quantile: float | None = None  # window test: which quantile of the windows is compared
    current_windows_value: float | None = None
    baseline_windows_value: float | None = None
    fallback: str = ""  # why the window test could not run, when another test decided
    kind: Literal["latency"] = "latency"


@dataclass(frozen=True)
class AccuracyEvidence:
    """The accuracy gate decided by McNemar's exact test on per-example predictions."""

    alpha: float
    p_value: float  # one-sided: the variant is worse
    p_value_two_sided: float
    b: int  # right in the baseline, wrong now
    c: int  # wrong in the baseline, right now
    n: int
    delta: float
    ci_low: float | None
    ci_high: float | None
    confidence_level: float
    significant: bool
    exceeds_threshold: bool
    test: Literal["mcnemar"] = "mcnemar"
    kind: Literal["accuracy"] = "accuracy"


@dataclass(frozen=True)
class BootstrapEvidence:
    """A quality gate (macro F1, MAE, RMSE, KL, output difference) decided by a paired bootstrap
    over the examples both runs predicted (harness.gates.bootstrap); deltas are current - baseline."""

    alpha: float
    n: int  # examples
    resamples: int
    current_value: float
    baseline_value: float
    delta: float
    ci_low: float
    ci_high: float
    confidence_level: float
    significant: bool
    exceeds_threshold: bool
    test: Literal["bootstrap"] = "bootstrap"
    kind: Literal["bootstrap"] = "bootstrap"


Evidence = ThresholdEvidence | LatencyEvidence | AccuracyEvidence | BootstrapEvidence
EVIDENCE_KINDS: dict[str, type[Evidence]] = {
    "threshold": ThresholdEvidence,
    "latency": LatencyEvidence,
    "accuracy": AccuracyEvidence,
    "bootstrap": BootstrapEvidence,
}
