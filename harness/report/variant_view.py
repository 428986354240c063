"""The report's view of one variant beyond its numbers: what each compression step did, and every
measurement of it when it was measured more than once (a failed gate or an INVALID measurement is
measured again before it counts).

Compression step reports (`harness.compression.base.StepReport.as_dict`) are shown as their notes
first, a distillation summary when the step distilled, then their details as short key: value
lines; the raw JSON stays available in a collapsed block.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from harness.metrics.catalog import METRICS, format_bytes, format_value
from harness.report.evidence import (
    OUTCOME_MEANING,
    STATUS_LABEL,
    evidence_text,
    evidence_tooltip,
    invalid_reasons,
    measurement_label,
    measurement_outcome,
    outcome_label,
)
from harness.report.metrics_view import finite
from harness.results import Measurement, RunResult, VariantResult

DISTILL_KEYS = (
    "teacher_accuracy",
    "student_accuracy",
    "student_alone_accuracy",
    "teacher_param_count",
    "student_param_count",
)
MAX_VALUE_CHARS = 160  # a details value longer than this is cut; the JSON block has it whole
FALLBACK_METRICS = ("latency_p95_ms", "throughput_rps", "accuracy")
VALIDITY_METRIC = "validity"  # a verdict that only restates an INVALID measurement has no column


# ---- compression steps ------------------------------------------------------------------------


def compression_steps(variant: VariantResult) -> list[dict[str, Any]]:
    """One readable block per applied step."""
    steps = []
    for step in variant.compression:
        if not isinstance(step, Mapping):
            continue
        details = step.get("details")
        details = details if isinstance(details, Mapping) else {}
        seconds = step.get("seconds")
        facts = [
            (key, format_value("sparsity", float(step[key])))
            for key in ("sparsity", "sparsity_all_params")
            if isinstance(step.get(key), int | float)
        ]
        distill = distillation_line(details)
        shown = set(DISTILL_KEYS) if distill else set()
        facts += [(str(k), _value_text(v, str(k))) for k, v in details.items() if k not in shown]
        steps.append(
            {
                "recipe": str(step.get("recipe") or "step"),
                "seconds": f"{seconds:.2f} s" if isinstance(seconds, int | float) else "",
                "params": _compact(step.get("params") or {}),
                "notes": [str(n) for n in step.get("notes") or []],
                "distill": distill,
                "facts": facts,
                "json": json.dumps(step, indent=2, default=str, sort_keys=False),
            }
        )
    return steps


def distillation_line(details: Mapping[str, Any]) -> str:
    """'student 95.11 % vs the same student trained alone 93.33 % (teacher 97.11 %) ...', or ''."""
    student, alone = details.get("student_accuracy"), details.get("student_alone_accuracy")
    if not isinstance(student, int | float) or not isinstance(alone, int | float):
        return ""
    acc = format_value("accuracy", float(student))
    text = f"student {acc} vs the same student trained alone {format_value('accuracy', float(alone))}"
    teacher = details.get("teacher_accuracy")
    if isinstance(teacher, int | float):
        text += f" (teacher {format_value('accuracy', float(teacher))})"
    text += f": distillation {(student - alone) * 100:+.2f} pp"
    s_params, t_params = details.get("student_param_count"), details.get("teacher_param_count")
    if isinstance(s_params, int | float) and isinstance(t_params, int | float) and t_params:
        text += f"; {s_params:,.0f} parameters vs the teacher's {t_params:,.0f} ({s_params / t_params:.0%})"
    return text


def _value_text(value: Any, key: str = "") -> str:
    """Short rendering of a details value, by what its name says it is (accuracy as %, seconds,
    bytes); flat dicts as 'k: v, ...'; anything deeper as compact JSON, cut at MAX_VALUE_CHARS."""
    if isinstance(value, bool) or value is None:
        return str(value).lower() if isinstance(value, bool) else "-"
    if isinstance(value, int | float):
        if "accuracy" in key and 0.0 <= value <= 1.0:
            return format_value("accuracy", float(value))
        if key.endswith("_seconds"):
            return f"{value:.2f} s"
        if key.endswith("_bytes"):
            return format_bytes(value)
        return f"{value:,}" if isinstance(value, int) else f"{value:.4g}"
    if isinstance(value, Mapping) and all(not isinstance(v, Mapping | list) for v in value.values()):
        text = ", ".join(f"{k}: {_value_text(v)}" for k, v in value.items())
    elif isinstance(value, str):
        text = value
    else:
        text = _compact(value)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def _compact(value: Any) -> str:
    return json.dumps(value, default=str, separators=(", ", ": "))


# ---- measurements -----------------------------------------------------------------------------


def confirmation_views(result: RunResult) -> list[dict[str, Any]]:
    """Per variant measured more than once: every measurement side by side with its validity and
    its own verdicts (as judged on it alone), marking the one the variant's numbers come from."""
    gated = list(result.scenario.get("gates") or {})
    return [_confirmation_view(result, v, gated) for v in result.variants if len(v.measurements) > 1]


def _confirmation_view(result: RunResult, variant: VariantResult, gated: Sequence[str]) -> dict[str, Any]:
    judged = [v.metric for m in variant.measurements for v in m.verdicts if v.metric != VALIDITY_METRIC]
    columns: list[str] = list(dict.fromkeys(judged))
    columns = columns or [m for m in gated if m in METRICS] or list(FALLBACK_METRICS)
    reported = variant.reported
    rows = [_measurement_row(m, columns, m is reported) for m in variant.measurements]
    failed = sum(1 for row in rows if row["outcome"] == "fail")
    outcome = variant.outcome
    meaning = (
        f"{outcome.value}, {OUTCOME_MEANING[outcome]}"
        if outcome is not None
        else outcome_label(result, variant)
    )
    return {
        "name": variant.name,
        "outcome": outcome_label(result, variant),
        "columns": [METRICS[c].title if c in METRICS else c for c in columns],
        "rows": rows,
        "summary": (
            f"{len(rows)} measurements, {failed} with a failing gate; the numbers shown elsewhere come from "
            f"the {measurement_label(reported.number) if reported else '-'}. "
            f"Outcome: {meaning}."
        ),
    }


def _measurement_row(measurement: Measurement, columns: list[str], reported: bool) -> dict[str, Any]:
    by_metric = {v.metric: v for v in measurement.verdicts}
    cells = []
    for metric in columns:
        verdict = by_metric.get(metric)
        value = finite(measurement.metrics.get(metric))
        if verdict is None:
            empty = {"verdict": "", "label": "", "title": "", "evidence": ""}
            cells.append({"text": format_value(metric, value), **empty})
            continue
        cells.append(
            {
                "text": format_value(metric, value if value is not None else finite(verdict.current)),
                "verdict": verdict.status,
                "label": STATUS_LABEL.get(verdict.status, verdict.status.upper()),
                "title": " · ".join(t for t in (verdict.message, evidence_tooltip(verdict.evidence)) if t),
                "evidence": evidence_text(metric, verdict.evidence),
            }
        )
    outcome = measurement_outcome(measurement)
    return {
        "label": measurement_label(measurement.number),
        "reported": reported,
        "cells": cells,
        "outcome": outcome,
        "outcome_label": STATUS_LABEL.get(outcome, "-"),
        "valid": measurement.valid,
        "reasons": "; ".join(invalid_reasons(measurement)),
    }
