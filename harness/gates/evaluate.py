"""Apply the scenario's gates to a run's metrics, against the stored baseline where one exists.

Every gate compares the current value with a limit (a bare number, or the baseline moved by the
threshold). Where both runs kept their distributions, gates against a baseline also ask whether
the change is real, and fail only if it is significant AND beyond the threshold (the threshold is
the minimum effect size; see `harness.gates.statistics` and `harness.gates.outcome`):
- latency percentile gates: the window test (lower quartile of the per-window percentiles, which
  also decides the threshold) or, with fewer than 8 windows a side or when chosen, Mann-Whitney
  or a bootstrap over requests, per `GatePolicySpec`;
- quality gates (accuracy, top-5, macro F1, MAE, RMSE, agreement, KL divergence, output
  differences): a paired test on the per-example data of both runs, McNemar for 0/1 outcomes and
  a bootstrap over examples otherwise (`harness.gates.quality_tests`).
Without distributions (a format-1 baseline, or a run that kept none) the plain comparison decides
and the message says so. Throughput and the other one-number-per-run metrics are always plain
comparisons; the confirmation re-measurement (`harness.gates.decide`) guards them instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace

from harness.errors import UserError
from harness.gates.outcome import decided, finite, plain
from harness.gates.quality_tests import QUALITY_TESTS, RunExamples
from harness.gates.statistics import (
    MIN_WINDOWS,
    LatencyMethod,
    LatencyTestResult,
    latency_regression,
    window_regression,
)
from harness.gates.thresholds import Threshold, parse_threshold
from harness.metrics.catalog import format_number, format_numbers
from harness.metrics.latency import PERCENTILES
from harness.metrics.quality import ExampleVectors
from harness.results import LatencyEvidence, ThresholdEvidence, Verdict
from harness.samples import VariantSamples
from harness.scenario.schema import GatePolicySpec

Metrics = Mapping[str, float]
Samples = Mapping[str, "VariantSamples"]
Examples = Mapping[str, ExampleVectors]


def parse_gates(thresholds: Mapping[str, str | int | float]) -> list[Threshold]:
    """Parse every gate, turning the first mistake into a UserError (exit 2)."""
    parsed = []
    for metric, text in thresholds.items():
        try:
            parsed.append(parse_threshold(metric, text))
        except ValueError as exc:
            raise UserError(str(exc)) from None
    return parsed


def evaluate(
    thresholds: Mapping[str, str | int | float],
    current: Mapping[str, Metrics],
    baseline: Mapping[str, Metrics] | None,
    *,
    policy: GatePolicySpec | None = None,
    current_dist: Samples | None = None,
    baseline_dist: Samples | None = None,
    current_examples: Examples | None = None,
    baseline_examples: Examples | None = None,
) -> list[Verdict]:
    """One verdict per (variant, gated metric), variants in `current` order, gates in scenario order.

    A relative or absolute gate of a variant absent from `baseline` yields no verdict (the caller
    records a baseline or names the variant); a bare limit always applies. A variant that has a
    baseline without the gated metric (a gate added since it was recorded) gets a passing verdict
    that says "not compared": it must not vanish silently, nor fail a run that could not know.
    A gated metric missing from the current results fails: a run that could not measure latency
    must not pass a latency gate. `policy` defaults to GatePolicySpec()'s defaults.
    `*_dist` hold each variant's latencies and predictions, `*_examples` its per-example quality
    vectors (`harness.metrics.quality`), for the statistical tests.
    """
    gates = parse_gates(thresholds)
    if policy is None:
        policy = GatePolicySpec()
    verdicts: list[Verdict] = []
    for variant, metrics in current.items():
        base_metrics = None if baseline is None else baseline.get(variant)
        for gate in gates:
            base_value = (base_metrics or {}).get(gate.metric)
            if gate.needs_baseline:
                if base_metrics is None:
                    continue
                if base_value is None or not math.isfinite(base_value):
                    verdicts.append(_not_compared(gate, variant, metrics.get(gate.metric)))
                    continue
            verdict = _judge(gate, variant, metrics.get(gate.metric), base_value)
            if gate.needs_baseline and verdict.current is not None and not math.isnan(verdict.current):
                cur = RunExamples((current_dist or {}).get(variant), (current_examples or {}).get(variant))
                base = RunExamples((baseline_dist or {}).get(variant), (baseline_examples or {}).get(variant))
                verdict = _with_test(verdict, gate, policy, cur, base)
            verdicts.append(verdict)
    return verdicts


def _not_compared(gate: Threshold, variant: str, current: float | None) -> Verdict:
    return Verdict(
        variant=variant,
        metric=gate.metric,
        threshold=gate.text,
        current=current,
        baseline=None,
        limit=None,
        status="pass",
        message=f"{gate.metric} not compared: the baseline of variant {variant!r} has no value for it "
        f"(gate {gate.text!r} added after the baseline was recorded?); record one with --update-baselines",
        evidence=ThresholdEvidence(reason="the baseline has no value for this metric", compared=False),
    )


def _with_test(
    verdict: Verdict, gate: Threshold, policy: GatePolicySpec, cur: RunExamples, base: RunExamples
) -> Verdict:
    """The plain verdict, decided again by a statistical test where one applies and can run."""
    if gate.metric in PERCENTILES:
        return _latency_test(verdict, gate, policy, cur.samples, base.samples)
    quality_test = QUALITY_TESTS.get(gate.metric)
    if quality_test is not None:
        return quality_test.run(verdict, gate, policy, cur, base)
    return verdict  # one number per run: no test applies


def _latency_test(
    verdict: Verdict,
    gate: Threshold,
    policy: GatePolicySpec,
    cur: VariantSamples | None,
    base: VariantSamples | None,
) -> Verdict:
    if policy.latency_test == "none":
        return replace(verdict, evidence=ThresholdEvidence(reason="gate_policy.latency_test is none"))
    method: LatencyMethod = "mannwhitney"
    fallback = ""
    if policy.latency_test == "windows":
        windowed = _window_test(verdict, gate, policy, cur, base)
        if isinstance(windowed, Verdict):
            return windowed
        fallback = f" (window test not possible: {windowed})"
    else:
        method = policy.latency_test
    if cur is None or cur.latencies_ms is None or len(cur.latencies_ms) == 0:
        return plain(verdict, "this run kept no latency samples")
    if base is None or base.latencies_ms is None or len(base.latencies_ms) == 0:
        return plain(verdict, "the baseline stores no latency histogram")
    if min(len(cur.latencies_ms), len(base.latencies_ms)) < 2:
        return plain(verdict, "too few latency samples for a test")
    if verdict.baseline is None or verdict.limit is None or verdict.baseline <= 0:
        return plain(verdict, "a baseline of 0 ms gives no ratio to test")

    result = latency_regression(
        cur.latencies_ms,
        base.latencies_ms,
        percentile=PERCENTILES[gate.metric],
        min_ratio=verdict.limit / verdict.baseline,
        alpha=policy.alpha,
        method=method,
        resamples=policy.bootstrap_resamples,
    )
    # The threshold is judged on the reported metrics (the numbers in the message), significance
    # on the samples; the histogram's percentiles differ from the exact ones by < 0.05%.
    beyond = not verdict.passed
    if result.method == "mannwhitney":
        test = f"Mann-Whitney one-sided p={result.p_value:.3g} vs alpha {policy.alpha:g}{fallback}"
    else:
        test = (
            f"bootstrap {result.confidence_level:.0%} CI of the p{result.percentile:g} ratio "
            f"[{result.ci_low:.3f}, {result.ci_high:.3f}]"
        )
    evidence = _latency_evidence(
        result, policy.alpha, verdict.limit / verdict.baseline, beyond, fallback=fallback.strip(" ()")
    )
    return decided(verdict, beyond, result.significant, test, evidence)


def _window_test(
    verdict: Verdict,
    gate: Threshold,
    policy: GatePolicySpec,
    cur: VariantSamples | None,
    base: VariantSamples | None,
) -> Verdict | str:
    """The window test's verdict, or why it cannot run (too few windows on a side).

    Unlike the request-level tests, the threshold is judged here on the windows' lower quartile,
    not on the pooled percentile: the pooled value is exactly what a burst of interference moves.
    """
    cur_w = (cur.window_latencies or {}).get(gate.metric) if cur is not None else None
    base_w = (base.window_latencies or {}).get(gate.metric) if base is not None else None
    n_cur = 0 if cur_w is None else len(cur_w)
    n_base = 0 if base_w is None else len(base_w)
    if base_w is None:
        return "the baseline stores no per-window latencies"
    if cur_w is None:
        return "this run kept no per-window latencies"
    if min(n_cur, n_base) < MIN_WINDOWS:
        return f"it needs {MIN_WINDOWS} windows per side, this run has {n_cur} and the baseline {n_base}"
    if verdict.baseline is None or verdict.limit is None or verdict.baseline <= 0:
        return "a baseline of 0 ms gives no ratio to test"
    min_ratio = verdict.limit / verdict.baseline
    result = window_regression(
        cur_w,
        base_w,
        percentile=PERCENTILES[gate.metric],
        min_ratio=min_ratio,
        alpha=policy.alpha,
        quantile=policy.window_quantile,
        resamples=policy.bootstrap_resamples,
    )
    test = f"window test: {result.message}"
    evidence = replace(
        _latency_evidence(result, policy.alpha, min_ratio, result.exceeds_threshold),
        p_value=None,  # the window test has an interval, not a p-value
        window_quantile=policy.window_quantile,
        current_windows_value=finite(result.current_value),
        baseline_windows_value=finite(result.baseline_value),
    )
    return decided(verdict, result.exceeds_threshold, result.significant, test, evidence)


def _latency_evidence(
    result: LatencyTestResult, alpha: float, min_ratio: float, beyond: bool, *, fallback: str = ""
) -> LatencyEvidence:
    """A latency test's figures, for results.json and the report's evidence column."""
    return LatencyEvidence(
        test=result.method,
        alpha=alpha,
        percentile=result.percentile,
        p_value=finite(result.p_value),
        ci_low=finite(result.ci_low),
        ci_high=finite(result.ci_high),
        confidence_level=finite(result.confidence_level),
        ratio=finite(result.ratio),
        min_ratio=min_ratio,
        significant=bool(result.significant),
        exceeds_threshold=beyond,
        n_current=int(result.n_current),
        n_baseline=int(result.n_baseline),
        fallback=fallback,
    )


def _judge(gate: Threshold, variant: str, current: float | None, base: float | None) -> Verdict:
    limit = gate.limit(base)
    context = f" (baseline {format_number(gate.metric, base)} {gate.text})" if gate.needs_baseline else ""

    def verdict(passed: bool, message: str) -> Verdict:
        return Verdict(
            variant=variant,
            metric=gate.metric,
            threshold=gate.text,
            current=current,
            baseline=base,
            limit=limit,
            status="pass" if passed else "fail",
            message=message,
        )

    if current is None:
        return verdict(
            False, f"{gate.metric} missing from the results of variant {variant!r} (gate {gate.text!r})"
        )
    if math.isnan(current):
        return verdict(False, f"{gate.metric} is NaN for variant {variant!r} (gate {gate.text!r})")
    passed = gate.passes(current, limit)
    failed_op = ">" if gate.better == "lower" else "<"
    op = gate.comparison if passed else failed_op
    shown_current, shown_limit = format_numbers(gate.metric, current, limit)
    return verdict(passed, f"{gate.metric} {shown_current} {op} limit {shown_limit}{context}")
