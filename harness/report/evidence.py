"""How the reports read a run's conclusions: its outcome, validity, and the evidence behind verdicts.

Shared by the HTML, Markdown and JUnit writers so the three say the same thing. Everything here
reads the typed record (harness.results); nothing decides anew what the runner and the gates
decided, it only puts their decisions into words. Pure Python: importing this costs little.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from harness.metrics.catalog import METRICS
from harness.results import (
    AccuracyEvidence,
    BootstrapEvidence,
    Evidence,
    LatencyEvidence,
    Measurement,
    Outcome,
    RunResult,
    ThresholdEvidence,
    VariantResult,
    Verdict,
)

# what each outcome means, for the reader of a report (the CLI's exit code is Outcome.exit_code)
OUTCOME_MEANING = {
    Outcome.PASS: "every gate passed on a valid measurement",
    Outcome.REGRESSION: "a gate failed and the failure held when the variant was measured again",
    Outcome.ERROR: "the run broke or its input was bad: nothing can be concluded from it",
    Outcome.INCONCLUSIVE: "a measurement stayed INVALID after re-measuring: too noisy to decide",
    Outcome.INTERRUPTED: "the run was stopped (Ctrl-C or SIGTERM) before it finished: nothing concluded",
}
STATUS_LABEL = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE"}
TEST_NAMES = {"mannwhitney": "Mann-Whitney", "bootstrap": "bootstrap", "windows": "window test"}


@dataclass(frozen=True)
class InvalidVariant:
    """A variant whose reported measurement does not count as a result, and why."""

    name: str
    reasons: list[str]
    measurements: int  # how many times it was measured


def outcome_line(result: RunResult) -> str:
    """'regression (exit code 1): a gate failed and the failure held ...'."""
    outcome = result.outcome
    return f"{outcome.value} (exit code {outcome.exit_code}): {OUTCOME_MEANING[outcome]}"


def measurement_label(number: int) -> str:
    return "first measurement" if number <= 1 else f"re-measure {number - 1}"


def invalid_reasons(measurement: Measurement) -> list[str]:
    gated = measurement.gated
    if gated is None or gated.validity.valid:
        return []
    return list(gated.validity.reasons) or ["no reason recorded"]


def invalid_variants(result: RunResult) -> list[InvalidVariant]:
    """Every variant whose reported measurement is INVALID, in run order."""
    out = []
    for variant in result.variants:
        reported = variant.reported
        if reported is not None and not reported.valid:
            out.append(InvalidVariant(variant.name, invalid_reasons(reported), len(variant.measurements)))
    return out


NOT_JUDGED = "not judged"


def outcome_label(result: RunResult, variant: VariantResult) -> str:
    """The variant's outcome ('pass', 'regression', ...); 'error' for the variant that broke the
    run; 'not judged' for one the run stopped before deciding."""
    if variant.outcome is not None:
        return variant.outcome.value
    broke = result.failure is not None and result.failure.variant == variant.name
    return Outcome.ERROR.value if broke or variant.error else NOT_JUDGED


def not_judged_reason(result: RunResult) -> str:
    failure = result.failure
    if failure is None:
        return "not judged: the run recorded no decision for this variant"
    what = "was interrupted" if failure.interrupted else "broke"
    return f"not judged: the run {what} at stage {failure.stage}"


def gate_failures(result: RunResult) -> list[Verdict]:
    """The final verdicts that failed: what made the run a regression."""
    return [v for v in result.verdicts if v.failed]


def measurement_outcome(measurement: Measurement) -> str:
    """'fail', 'inconclusive' or 'pass': what this measurement's own verdicts said (before the
    variant's final decision weighed every measurement); '' when it was not judged."""
    statuses = {v.status for v in measurement.verdicts}
    if not measurement.verdicts:
        return "inconclusive" if not measurement.valid else ""
    if "fail" in statuses:
        return "fail"
    if "inconclusive" in statuses or not measurement.valid:
        return "inconclusive"
    return "pass"


def held_tag(variant: VariantResult, verdict: Verdict) -> str:
    """For a final verdict of a re-measured variant: in how many measurements its gate failed
    ('failed 2 of 2'), or '' when the variant was measured once."""
    if len(variant.measurements) < 2:
        return ""
    failed = sum(
        1 for m in variant.measurements for v in m.verdicts if v.metric == verdict.metric and v.failed
    )
    return f"failed {failed} of {len(variant.measurements)}" if failed else ""


# ---- evidence ---------------------------------------------------------------------------------


def evidence_text(metric: str, evidence: Evidence) -> str:
    """One short line a reader can check, e.g. 'Mann-Whitney p=0.003 (significant), ratio 1.18
    [1.10, 1.27], n 5,000 vs 4,800' or 'McNemar p=0.5 (not significant), Δacc -0.40 pp ...'."""
    if isinstance(evidence, LatencyEvidence):
        return _latency_text(evidence)
    if isinstance(evidence, AccuracyEvidence):
        return _accuracy_text(metric, evidence)
    if isinstance(evidence, BootstrapEvidence):
        return _bootstrap_text(evidence)
    return _threshold_text(evidence)


def evidence_tooltip(evidence: Evidence) -> str:
    """Every evidence field as 'key=value', for a hover text."""
    return "; ".join(f"{k}={_short(v)}" for k, v in asdict(evidence).items())


def _threshold_text(evidence: ThresholdEvidence) -> str:
    if not evidence.compared:
        return "not compared: the baseline has no value"
    return f"no test: {evidence.reason}" if evidence.reason else "plain comparison"


def _latency_text(e: LatencyEvidence) -> str:
    head = TEST_NAMES.get(e.test, e.test)
    if e.p_value is not None:
        head += f" {_p(e.p_value)}"
    head += " (significant)" if e.significant else " (not significant)"
    parts = [head]
    if e.ratio is not None and math.isfinite(e.ratio):
        ci = ""
        if e.ci_low is not None and e.ci_high is not None:
            level = f" {e.confidence_level * 100:.0f} %" if e.confidence_level is not None else ""
            ci = f" [{e.ci_low:.2f}, {e.ci_high:.2f}]{level}"
        parts.append(f"ratio {e.ratio:.2f}{ci}, threshold {e.min_ratio:.2f}")
    if e.test == "windows":
        quantile = f"q{e.window_quantile * 100:.0f} of " if e.window_quantile is not None else ""
        if e.current_windows_value is not None and e.baseline_windows_value is not None:
            parts.append(
                f"{quantile}window p{e.percentile:g} {e.current_windows_value:.2f} vs "
                f"{e.baseline_windows_value:.2f} ms"
            )
        parts.append(f"{e.n_current:,} vs {e.n_baseline:,} windows")
    else:
        parts.append(f"n {e.n_current:,} vs {e.n_baseline:,}")
    if e.fallback:
        parts.append(f"window test not used: {e.fallback}")
    return ", ".join(parts)


def _accuracy_text(metric: str, e: AccuracyEvidence) -> str:
    head = f"McNemar {_p(e.p_value)}" + (" (significant)" if e.significant else " (not significant)")
    spec = METRICS.get(metric)
    label = "Δ" + (spec.title if spec is not None else metric) if metric != "accuracy" else "Δacc"
    points = spec is None or spec.unit == "fraction"

    def show(value: float) -> str:
        return f"{value * 100:+.2f}" if points else f"{value:+.3g}"

    unit = " pp" if points else ""
    ci = f" [{show(e.ci_low)}, {show(e.ci_high)}]" if e.ci_low is not None and e.ci_high is not None else ""
    return f"{head}, {label} {show(e.delta)}{unit}{ci}, {e.b:,} right→wrong / {e.c:,} wrong→right of {e.n:,}"


def _bootstrap_text(e: BootstrapEvidence) -> str:
    head = "paired bootstrap" + (" (significant)" if e.significant else " (not significant)")
    level = f" {e.confidence_level * 100:.0f} %"
    return (
        f"{head}, Δ {e.delta:+.4g} [{e.ci_low:+.4g}, {e.ci_high:+.4g}]{level}, "
        f"{e.current_value:.4g} vs {e.baseline_value:.4g}, n {e.n:,}, {e.resamples:,} resamples"
    )


def _p(p_value: float) -> str:
    return "p<0.001" if p_value < 0.001 else f"p={p_value:.2g}"


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."
