"""Paired tests of the quality gates: is a quality metric's change from the baseline real?

Both runs scored the same test examples, so each test pairs them example by example, and one
small strategy object per kind of metric decides (`QUALITY_TESTS`, by metric name):
- a 0/1 outcome per example (top-1 correct from the predictions and labels, top-5 correct,
  agreeing with the reference): McNemar's exact test on the discordant examples (`McNemarTest`);
- a metric computed from per-example values (macro F1 from predictions and labels; MAE, RMSE,
  KL divergence, mean absolute output difference from their vectors): a paired bootstrap over
  examples (`BootstrapTest`);
- the largest absolute output difference: no test (`NoTest`). A maximum is one example's
  value; resampling examples cannot say how likely a worse one was, and a bootstrap of it would
  excuse a single bad output as noise, which is exactly what a limit on the maximum forbids.
Each test runs only when both runs kept their per-example data for the same examples; otherwise
the plain comparison decides and says why.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from harness.gates.bootstrap import BootstrapResult, paired_bootstrap
from harness.gates.outcome import decided, finite, plain
from harness.gates.statistics import mcnemar_paired
from harness.gates.thresholds import Threshold
from harness.metrics.quality import (
    AGREE,
    BINARY,
    EXAMPLE_MEANS,
    ExampleMean,
    ExampleVectors,
    macro_f1,
)
from harness.results import AccuracyEvidence, BootstrapEvidence, Verdict
from harness.samples import VariantSamples
from harness.scenario.schema import GatePolicySpec

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class RunExamples:
    """What one run kept per example for one variant: predictions (with the labels or their
    fingerprint, in `samples`) and the per-example vectors of `harness.metrics.quality`."""

    samples: VariantSamples | None = None
    vectors: ExampleVectors | None = None


@dataclass(frozen=True)
class Paired:
    """Per-example values of both runs on the same examples, in the same order."""

    current: np.ndarray
    baseline: np.ndarray
    labels: np.ndarray | None = None  # with predictions: the true class ids


class ExampleSource(ABC):
    """Where a test's per-example values come from, and the check that both runs' are for the
    same examples."""

    @abstractmethod
    def pair(self, cur: RunExamples, base: RunExamples) -> Paired | str:
        """Both runs' values, or why they cannot be paired."""


class PredictedClasses(ExampleSource):
    """Served class ids and the test labels; the baseline's are for the same examples when the
    fingerprint of its labels is this run's."""

    def pair(self, cur: RunExamples, base: RunExamples) -> Paired | str:
        now, before = cur.samples, base.samples
        if now is None or now.predictions is None or now.labels is None or len(now.predictions) == 0:
            return "this run kept no per-example predictions"
        if before is None or before.predictions is None or len(before.predictions) == 0:
            return "the baseline stores no per-example predictions"
        sizes = {len(before.predictions), len(now.predictions), len(now.labels)}
        if before.fingerprint() != now.fingerprint() or len(sizes) != 1:
            return "the baseline's predictions are for other examples"
        return Paired(
            np.asarray(now.predictions, dtype=np.int64),
            np.asarray(before.predictions, dtype=np.int64),
            np.asarray(now.labels, dtype=np.int64),
        )


@dataclass(frozen=True)
class ExampleVector(ExampleSource):
    """One per-example vector (a key of `harness.metrics.quality.PER_EXAMPLE`) from both runs.

    Both sides are compared at float32, the precision a baseline stores them in: an unchanged
    model must give identical vectors, not a difference of rounding that a test could find."""

    key: str

    def pair(self, cur: RunExamples, base: RunExamples) -> Paired | str:
        now = None if cur.vectors is None else cur.vectors.values.get(self.key)
        before = None if base.vectors is None else base.vectors.values.get(self.key)
        if now is None or len(now) == 0:
            return f"this run kept no per-example {self.key} values"
        if before is None or len(before) == 0:
            return f"the baseline stores no per-example {self.key} values"
        assert cur.vectors is not None
        assert base.vectors is not None
        if cur.vectors.fingerprint is None or base.vectors.fingerprint is None:
            return "which examples the per-example values are for is not known"
        if cur.vectors.fingerprint != base.vectors.fingerprint or len(now) != len(before):
            return "the baseline's per-example values are for other examples"
        return Paired(_as_stored(now), _as_stored(before))


class QualityTest(ABC):
    """Decides a quality gate against the baseline from both runs' per-example data."""

    @abstractmethod
    def run(
        self, verdict: Verdict, gate: Threshold, policy: GatePolicySpec, cur: RunExamples, base: RunExamples
    ) -> Verdict:
        """`verdict` (the plain comparison) decided again by the test, or with the reason it could not run."""


@dataclass(frozen=True)
class McNemarTest(QualityTest):
    """McNemar's exact test on a 0/1 outcome per example (right/wrong, agreeing/differing)."""

    source: ExampleSource
    right: str = "right"  # how the message names the two outcomes
    wrong: str = "wrong"

    def run(
        self, verdict: Verdict, gate: Threshold, policy: GatePolicySpec, cur: RunExamples, base: RunExamples
    ) -> Verdict:
        paired = self.source.pair(cur, base)
        if isinstance(paired, str):
            return plain(verdict, paired)
        if paired.labels is not None:  # class ids: right where they equal the label
            now, before = paired.current == paired.labels, paired.baseline == paired.labels
        else:
            now, before = paired.current > 0.5, paired.baseline > 0.5
        result = mcnemar_paired(now, before, alpha=policy.alpha)
        beyond = not verdict.passed
        test = (
            f"McNemar exact one-sided p={result.p_value_worse:.3g} vs alpha {policy.alpha:g} "
            f"({result.b} {self.right}->{self.wrong}, {result.c} {self.wrong}->{self.right} of {result.n}; "
            f"delta {result.delta:+.4f}, {result.confidence_level:.0%} CI "
            f"[{result.ci_low:+.4f}, {result.ci_high:+.4f}])"
        )
        evidence = AccuracyEvidence(
            alpha=policy.alpha,
            p_value=float(result.p_value_worse),
            p_value_two_sided=float(result.p_value),
            b=int(result.b),
            c=int(result.c),
            n=int(result.n),
            delta=float(result.delta),
            ci_low=finite(result.ci_low),
            ci_high=finite(result.ci_high),
            confidence_level=float(result.confidence_level),
            significant=bool(result.significant_drop),
            exceeds_threshold=beyond,
        )
        return decided(verdict, beyond, result.significant_drop, test, evidence)


# values on each resample: (the run's values, the labels or None, (resamples, n) indices) -> (resamples,)
Statistic = Callable[[np.ndarray, np.ndarray | None, npt.NDArray[np.intp]], FloatArray]


@dataclass(frozen=True)
class BootstrapTest(QualityTest):
    """A paired bootstrap over examples of `statistic`, recomputed for both runs on each resample."""

    source: ExampleSource
    statistic: Statistic

    def run(
        self, verdict: Verdict, gate: Threshold, policy: GatePolicySpec, cur: RunExamples, base: RunExamples
    ) -> Verdict:
        paired = self.source.pair(cur, base)
        if isinstance(paired, str):
            return plain(verdict, paired)
        labels, statistic = paired.labels, self.statistic
        result = paired_bootstrap(
            lambda rows: statistic(paired.current, labels, rows),
            lambda rows: statistic(paired.baseline, labels, rows),
            len(paired.current),
            better=gate.better,
            alpha=policy.alpha,
            resamples=policy.bootstrap_resamples,
        )
        beyond = not verdict.passed
        evidence = _bootstrap_evidence(result, policy.alpha, beyond)
        return decided(verdict, beyond, result.significant, result.message, evidence)


@dataclass(frozen=True)
class NoTest(QualityTest):
    """No test fits the metric: the plain comparison decides, and says why."""

    reason: str

    def run(
        self, verdict: Verdict, gate: Threshold, policy: GatePolicySpec, cur: RunExamples, base: RunExamples
    ) -> Verdict:
        return plain(verdict, self.reason)


def _bootstrap_evidence(result: BootstrapResult, alpha: float, beyond: bool) -> BootstrapEvidence:
    return BootstrapEvidence(
        alpha=alpha,
        n=result.n,
        resamples=result.resamples,
        current_value=result.current_value,
        baseline_value=result.baseline_value,
        delta=result.delta,
        ci_low=result.ci_low,
        ci_high=result.ci_high,
        confidence_level=result.confidence_level,
        significant=result.significant,
        exceeds_threshold=beyond,
    )


def _mean_of(mean: ExampleMean) -> Statistic:
    return lambda values, _labels, rows: mean.over(values, rows)


def _macro_f1(predictions: np.ndarray, labels: np.ndarray | None, rows: npt.NDArray[np.intp]) -> FloatArray:
    assert labels is not None  # PredictedClasses always pairs them with the labels
    return macro_f1(predictions, labels, rows)


def _as_stored(values: np.ndarray) -> FloatArray:
    stored: FloatArray = np.asarray(values, dtype=np.float32).astype(np.float64)
    return stored


def _vector_test(mean: ExampleMean) -> QualityTest:
    source = ExampleVector(mean.key)
    if mean.key in BINARY and not mean.root:
        if mean.key == AGREE:
            return McNemarTest(source, right="agreeing", wrong="differing")
        return McNemarTest(source)
    return BootstrapTest(source, _mean_of(mean))


QUALITY_TESTS: Mapping[str, QualityTest] = {
    "accuracy": McNemarTest(PredictedClasses()),
    "macro_f1": BootstrapTest(PredictedClasses(), _macro_f1),
    **{metric: _vector_test(mean) for metric, mean in EXAMPLE_MEANS.items()},
    "output_abs_diff_max": NoTest(
        "a maximum over examples has no paired test (one example decides it; the limit is the contract)"
    ),
}
