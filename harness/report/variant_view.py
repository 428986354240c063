"""The report's view of one variant beyond its numbers: what each compression step did, and every
measurement of it when a failed gate was confirmed by re-measuring.

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
    as_mapping,
    evidence_of,
    evidence_text,
    evidence_tooltip,
    failed_on_its_own,
    measurement_number,
    verdict_fields,
)
from harness.results import RunResult, VariantResult, Verdict

DISTILL_KEYS = (
    "teacher_accuracy",
    "student_accuracy",
    "student_alone_accuracy",
    "teacher_param_count",
    "student_param_count",
)
MAX_VALUE_CHARS = 160  # a details value longer than this is cut; the JSON block has it whole
FALLBACK_METRICS = ("latency_p95_ms", "throughput_rps", "accuracy")


# ---- compression steps ------------------------------------------------------------------------


def compression_steps(variant: VariantResult) -> list[dict[str, Any]]:
    """One readable block per applied step."""
    steps = []
    for step in variant.compression:
        if not isinstance(step, Mapping):
            continue
        details = as_mapping(step.get("details"))
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


# ---- confirmations ----------------------------------------------------------------------------


def confirmation_views(result: RunResult) -> list[dict[str, Any]]:
    """Per variant that was re-measured: every measurement side by side, with its gate verdicts.

    `harness.api` keeps the latest measurement as the variant's result, the first one in
    `details["superseded_measurement"]` (metrics, validity) and each re-measurement in
    `details["confirmations"]` (metrics, verdicts, passed); the first measurement's verdicts are
    the run's verdicts numbered 1 (`evidence["measurement"]`). Without those details, the rows are
    rebuilt from the numbered verdicts alone.
    """
    views = []
    gated = list(result.scenario.get("gates") or {})
    for variant in result.variants:
        details = variant.details or {}
        confirmations = [c for c in details.get("confirmations") or [] if isinstance(c, Mapping)]
        superseded = as_mapping(details.get("superseded_measurement"))
        by_number: dict[int, list[Verdict]] = {}
        for verdict in result.verdicts:
            if verdict.variant == variant.name:
                by_number.setdefault(measurement_number(verdict), []).append(verdict)
        if not confirmations and not superseded and len(by_number) < 2:
            continue
        if not confirmations and not superseded:
            # only the numbered verdicts: each measurement's values are its verdicts' current values
            rows: list[tuple[str, Mapping[str, Any]]] = [
                (
                    "first measurement" if n == 1 else f"re-measure {n - 1}",
                    {"metrics": {v.metric: v.current for v in vs}, "verdicts": vs},
                )
                for n, vs in sorted(by_number.items())
            ]
            views.append(_confirmation_view(variant.name, rows, gated))
            continue
        first: dict[str, Any] = {
            "metrics": superseded.get("metrics") if superseded else variant.metrics,
            "verdicts": superseded.get("verdicts") or by_number.get(1, []),
            "validity": superseded.get("validity") if superseded else details.get("validity"),
        }
        rows = [("first measurement (superseded)" if superseded else "first measurement", first)]
        rows += [(f"re-measure {i}", c) for i, c in enumerate(confirmations, 1)]
        # the variant's own result is the latest measurement once a first one was superseded
        reported = len(rows) - 1 if superseded else 0
        label, data = rows[reported]
        rows[reported] = (f"{label} (reported)", {**data, "validity": details.get("validity")})
        views.append(_confirmation_view(variant.name, rows, gated))
    return views


def _confirmation_view(
    name: str, measurements: Sequence[tuple[str, Mapping[str, Any]]], gated: list[str]
) -> dict[str, Any]:
    parsed = [
        (label, as_mapping(m.get("metrics")), [verdict_fields(v) for v in m.get("verdicts") or []], m)
        for label, m in measurements
    ]
    judged = [v.get("metric") for _, _, verdicts, _ in parsed for v in verdicts]
    columns: list[str] = list(dict.fromkeys(m for m in judged if isinstance(m, str)))
    columns = columns or [m for m in gated if m in METRICS] or list(FALLBACK_METRICS)
    rows = []
    failed_runs = 0
    for label, metrics, verdicts, raw in parsed:
        by_metric = {str(v.get("metric")): v for v in verdicts}
        cells = []
        for metric in columns:
            verdict = by_metric.get(metric)
            value = metrics.get(metric)
            evidence = evidence_of(verdict) if verdict else {}
            message = str(verdict.get("message") or "") if verdict else ""
            cells.append(
                {
                    "text": format_value(metric, value if isinstance(value, int | float) else None),
                    "verdict": "" if verdict is None else ("fail" if failed_on_its_own(verdict) else "pass"),
                    "title": " · ".join(t for t in (message, evidence_tooltip(evidence)) if t),
                    "evidence": evidence_text(metric, evidence),
                }
            )
        # this measurement's own outcome, before confirmation merged the verdicts
        passed = not any(failed_on_its_own(v) for v in verdicts) if verdicts else raw.get("passed")
        passed = passed if isinstance(passed, bool) else None
        failed_runs += passed is False
        validity = as_mapping(raw.get("validity"))
        rows.append(
            {
                "label": label,
                "cells": cells,
                "passed": passed,
                "valid": validity.get("valid") if isinstance(validity.get("valid"), bool) else None,
                "reasons": "; ".join(str(r) for r in validity.get("reasons") or []),
            }
        )
    return {
        "name": name,
        "columns": [METRICS[c].title if c in METRICS else c for c in columns],
        "rows": rows,
        "summary": f"{len(rows)} measurements, {failed_runs} with a failing gate.",
    }
