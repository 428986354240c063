"""How the reports read the evidence behind a result: measurement validity and gate statistics.

Shared by the HTML, Markdown and JUnit writers so the three say the same thing. Everything here
reads plain dicts defensively (`.get`), because results.json files from older or newer harness
versions may lack or add keys. Pure Python: importing this costs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any

from harness.metrics.catalog import METRICS
from harness.results import RunResult, VariantResult, Verdict

# spellings of the statistical tests a gate may report -> how a reader knows them
TEST_NAMES = {
    "mannwhitney": "Mann-Whitney",
    "mannwhitneyu": "Mann-Whitney",
    "bootstrap": "bootstrap",
    "mcnemar": "McNemar",
    "windows": "window test",
    "none": "no test",
}
# keys an effect size may come under, most specific first
_EFFECT_KEYS = ("ratio", "percentile_ratio", "effect", "delta", "accuracy_delta", "delta_accuracy")


# the metric of the failing verdict harness.gates.judge gives an INVALID measurement
VALIDITY_METRIC = "validity"


@dataclass(frozen=True)
class MeasurementValidity:
    """Whether a variant's gated measurement counts as a result, and why not."""

    valid: bool
    reasons: list[str] = field(default_factory=list)


def validity_of(variant: VariantResult) -> MeasurementValidity | None:
    """The verdict on the gated load point; None for results that predate validity checks."""
    details = variant.details or {}
    validity = details.get("validity")
    if isinstance(validity, Mapping) and "valid" in validity:
        reasons = [str(r) for r in validity.get("reasons") or []]
        return MeasurementValidity(bool(validity.get("valid")), reasons)
    points = details.get("load_points")
    if isinstance(points, list) and points and isinstance(points[-1], Mapping) and "valid" in points[-1]:
        last = points[-1]
        reasons = [str(r) for r in last.get("validity_reasons") or []]
        return MeasurementValidity(bool(last.get("valid")), reasons)
    return None


def as_mapping(value: Any) -> Mapping[str, Any]:
    """`value` if it is a mapping, else an empty one: results.json fields are read, not trusted."""
    return value if isinstance(value, Mapping) else {}


def invalid_variants(result: RunResult) -> list[tuple[str, list[str]]]:
    """(variant, reasons) for every variant whose measurement is INVALID, in run order."""
    out = []
    for variant in result.variants:
        validity = validity_of(variant)
        if validity is not None and not validity.valid:
            out.append((variant.name, validity.reasons or ["no reason recorded"]))
    return out


def gate_failures(result: RunResult) -> list[Verdict]:
    """Failed verdicts, less the `validity` ones that only restate an INVALID measurement (the
    reports list those apart, with their reasons)."""
    invalid = {name for name, _ in invalid_variants(result)}
    return [
        v
        for v in result.verdicts
        if not v.passed and not (v.metric == VALIDITY_METRIC and v.variant in invalid)
    ]


def run_status(result: RunResult) -> str:
    """'error' (did not finish), 'fail' (a gate failed), 'invalid' (a measurement does not count),
    or 'pass'. An invalid measurement is never a pass, even when every gate on it passed."""
    if result.error:
        return "error"
    if gate_failures(result):
        return "fail"
    if invalid_variants(result):
        return "invalid"
    return "fail" if not result.passed else "pass"


def verdict_fields(verdict: Verdict | Mapping[str, Any]) -> dict[str, Any]:
    """A verdict as a dict, whether it is a Verdict or already one (confirmations store dicts)."""
    if is_dataclass(verdict) and not isinstance(verdict, type):
        return asdict(verdict)
    return dict(verdict) if isinstance(verdict, Mapping) else {}


def evidence_of(verdict: Verdict | Mapping[str, Any]) -> dict[str, Any]:
    raw = verdict.get("evidence") if isinstance(verdict, Mapping) else getattr(verdict, "evidence", None)
    return dict(raw) if isinstance(raw, Mapping) else {}


def is_confirmation(verdict: Verdict | Mapping[str, Any]) -> bool:
    """True for a verdict that came from a re-measurement of a failed gate."""
    return bool(evidence_of(verdict).get("confirmation"))


def measurement_number(verdict: Verdict | Mapping[str, Any]) -> int:
    """1 for the first measurement, 2, 3, ... for re-measurements (see gates.merge_confirmation)."""
    number = _number(evidence_of(verdict).get("measurement"))
    return int(number) if number is not None else (2 if is_confirmation(verdict) else 1)


def confirmation_tag(verdict: Verdict | Mapping[str, Any]) -> str:
    """'RE-MEASURE 1' on a re-measurement's verdict; on a first measurement that was re-measured,
    'CONFIRMED' when its failure held and 'NOT CONFIRMED' when it did not; '' otherwise."""
    evidence = evidence_of(verdict)
    if evidence.get("confirmation"):
        return f"RE-MEASURE {max(measurement_number(verdict) - 1, 1)}"
    if evidence.get("confirmed"):
        return "CONFIRMED"
    if "measurement" in evidence and failed_on_its_own(verdict):
        return "NOT CONFIRMED"
    return ""


def failed_on_its_own(verdict: Verdict | Mapping[str, Any]) -> bool:
    """Whether this measurement alone broke the gate, before confirmation had its say.

    `gates.evaluate.merge_confirmation` turns a failure that a re-measurement did not reproduce into
    a pass; this recovers the measurement's own outcome from its evidence (beyond the threshold and
    significant) or, for a plain comparison, from current against limit.
    """
    fields = verdict_fields(verdict)
    if fields.get("passed") is False:
        return True
    evidence = evidence_of(verdict)
    if has_statistics(evidence):
        return evidence.get("exceeds_threshold") is True and evidence.get("significant") is True
    current, limit = _number(fields.get("current")), _number(fields.get("limit"))
    spec = METRICS.get(str(fields.get("metric")))
    return spec is not None and current is not None and limit is not None and spec.is_worse(current, limit)


def has_statistics(evidence: Mapping[str, Any]) -> bool:
    """Whether a statistical test decided the verdict (not a plain comparison)."""
    test = evidence.get("test") or evidence.get("test_name") or evidence.get("method")
    return bool(test) and str(test).lower() != "none"


def evidence_text(metric: str, evidence: Mapping[str, Any]) -> str:
    """One short line: 'Mann-Whitney p=0.003 (significant), ratio 1.18 [1.10, 1.27], n 5,000 vs 4,800'
    or 'McNemar p=0.5, Δacc -0.4 pp [-1.2, +0.4], 3 right→wrong / 1 wrong→right of 450'."""
    if not evidence:
        return ""
    if not has_statistics(evidence):
        if evidence.get("compared") is False:
            return "not compared"
        reason = evidence.get("reason")
        return f"no test: {reason}" if reason else "no test"
    test = evidence.get("test") or evidence.get("test_name") or evidence.get("method")
    head = _test_name(test)
    p_value = _number(evidence.get("p_value"))
    if p_value is not None:
        head += f" {_p(p_value)}"
    if isinstance(evidence.get("significant"), bool):
        head += " (significant)" if evidence["significant"] else " (not significant)"
    parts = [head, _effect_text(metric, evidence)]
    n_cur, n_base, n = (_number(evidence.get(k)) for k in ("n_current", "n_baseline", "n"))
    b, c = _number(evidence.get("b")), _number(evidence.get("c"))
    if b is not None and c is not None:
        of = f" of {n:,.0f}" if n is not None else ""
        parts.append(f"{b:,.0f} right→wrong / {c:,.0f} wrong→right{of}")
    elif n_cur is not None and n_base is not None and str(test) == "windows":
        parts.append(f"{n_cur:,.0f} vs {n_base:,.0f} windows")
    elif n_cur is not None and n_base is not None:
        parts.append(f"n {n_cur:,.0f} vs {n_base:,.0f}")
    elif n_cur is not None or n is not None:
        parts.append(f"n {n_cur if n_cur is not None else n:,.0f}")
    return ", ".join(p for p in parts if p)


def evidence_tooltip(evidence: Mapping[str, Any]) -> str:
    """Every evidence field as 'key=value', for a hover text (new keys show up without code changes)."""
    return "; ".join(f"{k}={_short(v)}" for k, v in evidence.items())


def _test_name(test: Any) -> str:
    key = str(test).lower().replace("-", "").replace("_", "").replace(" ", "")
    return TEST_NAMES.get(key, str(test))


def _p(p_value: float) -> str:
    return "p<0.001" if p_value < 0.001 else f"p={p_value:.2g}"


def _effect_text(metric: str, evidence: Mapping[str, Any]) -> str:
    low, high = _number(evidence.get("ci_low")), _number(evidence.get("ci_high"))
    key = next((k for k in _EFFECT_KEYS if _number(evidence.get(k)) is not None), None)
    spec = METRICS.get(metric)
    is_ratio = key is not None and "ratio" in key
    in_points = not is_ratio and spec is not None and spec.unit == "fraction"

    def show(value: float) -> str:
        # ratios near 1 need two decimals to show a 1% change; accuracy deltas read in points
        return f"{value * 100:+.1f}" if in_points else f"{value:.2f}" if is_ratio else f"{value:.3g}"

    ci = f" [{show(low)}, {show(high)}]" if low is not None and high is not None else ""
    unit = " pp" if in_points else ""
    if key is None:
        return f"CI{ci}{unit}" if ci else ""
    value = _number(evidence.get(key))
    assert value is not None
    if is_ratio:
        return f"ratio {show(value)}{ci}"
    name = "Δacc" if metric.startswith("accuracy") else "Δ"
    return f"{name} {show(value)}{unit}{ci}"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."
