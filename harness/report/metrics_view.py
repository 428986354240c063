"""The report's two main tables: every variant's reported numbers side by side, and the final gate
verdicts with the evidence behind them.

A variant's numbers come from its reported measurement (`VariantResult.reported`); a cell takes the
variant's final verdict on that metric. Only quality metrics (`MetricSpec.quality`) are coloured
better or worse against the reference: a client CPU or a request count that changed is a fact,
not an improvement or a regression.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from harness.metrics.catalog import METRICS, format_value, is_load_metric
from harness.report.evidence import STATUS_LABEL, evidence_text, evidence_tooltip, held_tag, measurement_label
from harness.results import ThresholdEvidence, VariantResult, Verdict

REFERENCE = "reference"

# rows of the per-variant table, grouped as a reader scans them: what the model costs, what it
# gets right, how fast it answers, how it holds up under load, what the server saw. A row no
# variant has a value for is left out.
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Model", ("model_size_bytes", "model_size_gzip_bytes", "sparsity", "param_count")),
    (
        "Quality",
        (
            "accuracy_inprocess",
            "accuracy",
            "accuracy_drop_vs_reference",
            "top5_accuracy",
            "macro_f1",
            "mae",
            "rmse",
            "mae_inprocess",
            "rmse_inprocess",
        ),
    ),
    (
        "Fidelity to the reference",
        ("agreement", "kl_divergence", "output_abs_diff_max", "output_abs_diff_mean"),
    ),
    (
        "Latency",
        (
            "latency_p50_ms",
            "latency_p90_ms",
            "latency_p95_ms",
            "latency_p99_ms",
            "latency_max_ms",
            "latency_mean_ms",
        ),
    ),
    (
        "Load",
        (
            "throughput_rps",
            "max_rps_at_slo",
            "error_rate",
            "request_count",
            "late_fraction",
            "client_cpu_percent",
        ),
    ),
    (
        "Server",
        (
            "server_request_ms",
            "server_inference_ms",
            "server_queue_ms",
            "service_latency_p95_ms",
            "server_cpu_percent",
            "server_rss_mb",
        ),
    ),
)


@dataclass
class Cell:
    text: str
    raw: str = ""  # exact value for the tooltip
    change: str = ""  # vs the reference variant
    change_class: str = ""  # "better" | "worse" | "": only quality metrics are coloured
    verdict: str = ""  # the final verdict's status: "pass" | "fail" | "inconclusive" | ""
    verdict_message: str = ""
    void: bool = False  # a load figure of an INVALID measurement: shown, but not a result


@dataclass
class Row:
    label: str
    metric: str
    unit: str
    better: str
    description: str
    cells: list[Cell] = field(default_factory=list)


def finite(value: float | None) -> float | None:
    """`value`, or None when it is missing or not finite (results.json stores those as null)."""
    if value is None or isinstance(value, bool) or not math.isfinite(value):
        return None
    return value


def reference_of(variants: list[VariantResult]) -> VariantResult | None:
    return next((v for v in variants if v.name == REFERENCE), variants[0] if variants else None)


def metric_sections(variants: list[VariantResult]) -> list[tuple[str, list[Row]]]:
    """(section title, rows) of the variants table, leaving out empty sections; metrics outside
    the fixed rows (e.g. from a plugin) go under "Other"."""
    reference = reference_of(variants)
    sections = [(title, _rows(names, variants, reference)) for title, names in SECTIONS]
    shown = {m for _, names in SECTIONS for m in names}
    extra = sorted({m for v in variants for m in v.metrics} - shown)
    if extra:
        sections.append(("Other", [_row(m, variants, reference) for m in extra]))
    return [(title, rows) for title, rows in sections if rows]


def _rows(metrics: tuple[str, ...], variants: list[VariantResult], ref: VariantResult | None) -> list[Row]:
    """Rows of one section, leaving out metrics no variant reported (a closed-loop run has no late
    sends, an in-process target no server figures) unless a gate judged them."""
    judged = {v.metric for variant in variants for v in variant.verdicts}
    return [
        _row(m, variants, ref)
        for m in metrics
        if any(finite(v.metrics.get(m)) is not None for v in variants) or m in judged
    ]


def _row(metric: str, variants: list[VariantResult], reference: VariantResult | None) -> Row:
    spec = METRICS.get(metric)
    row = Row(
        label=spec.title if spec else metric,
        metric=metric,
        unit=spec.unit if spec else "",
        better=spec.better if spec and spec.quality else "",
        description=spec.description if spec else "",
    )
    ref_value = finite(reference.metrics.get(metric)) if reference else None
    for variant in variants:
        value = finite(variant.metrics.get(metric))
        reported = variant.reported
        cell = Cell(
            text=format_value(metric, value),
            raw="" if value is None else repr(value),
            void=is_load_metric(metric) and reported is not None and not reported.valid,
        )
        if reference is not None and variant is not reference and value is not None and ref_value:
            change = (value - ref_value) / abs(ref_value)
            # an unchanged value (same parameter count, same file size) needs no "+0.0 %"
            if abs(change) >= 0.0005:
                cell.change = f"{change * 100:+.1f} %"
            if spec is not None and spec.quality and abs(change) >= 0.005:
                cell.change_class = "worse" if spec.is_worse(value, ref_value) else "better"
        verdict = next((v for v in variant.verdicts if v.metric == metric), None)
        if verdict is not None:
            cell.verdict = verdict.status
            cell.verdict_message = verdict.message
        row.cells.append(cell)
    return row


# ---- the gates table --------------------------------------------------------------------------


def verdict_views(variants: list[VariantResult]) -> list[dict[str, Any]]:
    """One row per final verdict, in variant order."""
    return [_verdict_view(variant, v) for variant in variants for v in variant.verdicts]


def has_evidence(variants: list[VariantResult]) -> bool:
    """Whether any final verdict carries more than a plain comparison (else no evidence column)."""
    return any(
        not isinstance(v.evidence, ThresholdEvidence) or v.evidence.reason or not v.evidence.compared
        for variant in variants
        for v in variant.verdicts
    )


def _verdict_view(variant: VariantResult, v: Verdict) -> dict[str, Any]:
    change = pct = ""
    current, baseline = finite(v.current), finite(v.baseline)
    if current is not None and baseline is not None:
        change = _signed(v.metric, current - baseline)
        if baseline:
            pct = f"{(current - baseline) / abs(baseline) * 100:+.1f} %"
    measured_on = measurement_label(v.measurement) if len(variant.measurements) > 1 else ""
    return {
        "v": v,
        "status": v.status,
        "label": STATUS_LABEL.get(v.status, v.status.upper()),
        "evidence": evidence_text(v.metric, v.evidence),
        "evidence_title": evidence_tooltip(v.evidence),
        "measured_on": measured_on,
        "held": held_tag(variant, v),
        "current": format_value(v.metric, current),
        "baseline": format_value(v.metric, baseline) if baseline is not None else "no baseline needed",
        "limit": format_value(v.metric, finite(v.limit)),
        "change": change,
        "pct": pct,
    }


def _signed(metric: str, delta: float) -> str:
    spec = METRICS.get(metric)
    if spec is not None and spec.unit == "fraction":
        # accuracy 97.0 % -> 96.1 % is a change of -0.90 percentage points, not -0.90 %
        return f"{delta * 100:+.2f} pp"
    text = format_value(metric, abs(delta))
    return ("+" if delta > 0 else "-" if delta < 0 else "±") + text
