"""Render a `harness ab` as one self-contained HTML file: inline CSS and SVG, no scripts, no network.

Like the run report (harness.report.html), the view is prepared here from the typed record alone
and the jinja2 template only lays it out, with autoescaping on so names and messages cannot inject
markup; the SVG charts are the only pre-rendered markup and escape their own text. The words are
harness.report.ab_view's, so the page and the pull-request comment say the same thing.
"""

from __future__ import annotations

import json
import math
from typing import Any

import jinja2
from markupsafe import Markup

from harness import __version__
from harness.ab.record import AbResult, Comparison, Side, Slot, VariantComparison
from harness.metrics.catalog import METRICS, format_value
from harness.report import ab_view, charts
from harness.report.serving_view import flatten, relative_path
from harness.results import Outcome

AB_TEMPLATE = "ab.html.j2"
# the block charts: the two metrics the A/B decision is mostly about
CHART_METRICS: tuple[tuple[str, str], ...] = (
    ("latency_p95_ms", "latency p95 (ms)"),
    ("throughput_rps", "throughput (req/s)"),
)
# the slot table's columns, in this order when present (others follow in catalog order)
SLOT_METRICS = ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "throughput_rps", "error_rate")


def render_ab_html(ab: AbResult, *, report_url: str | None = None) -> str:
    """The A/B report as a string. `report_url` is only shown, as where the page is published."""
    template = _environment().get_template(AB_TEMPLATE)
    return template.render(**build_ab_view(ab, report_url=report_url))


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("harness.report", "templates"),
        autoescape=True,  # the template is .j2, which select_autoescape would not cover
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def build_ab_view(ab: AbResult, *, report_url: str | None = None) -> dict[str, Any]:
    """Everything the template shows, already formatted."""
    outcome = ab.outcome
    return {
        "ab": ab,
        "version": __version__,
        "outcome": {
            "value": outcome.value,
            "label": outcome.value.upper(),
            "meaning": ab_view.OUTCOME_MEANING[outcome],
            "exit_note": ab_view.exit_note(ab),
        },
        "headline": _headline(ab),
        "sides": [_side(ab.base), _side(ab.head)],
        "report_url": report_url or ab.report_url,
        "warnings": ab_view.all_warnings(ab),
        "errors": [(v.name, v.error) for v in ab.variants if v.error],
        "failure": _failure(ab),
        "method": ab_view.method_facts(ab),
        "confidence": ab_view.confidence(ab.method),
        "counts": ab_view.counts_text(ab),
        "icons": ab_view.STATUS_ICON,
        "comparisons": [_comparison(c) for c in ab_view.ordered(ab.comparisons)],
        "variants": [_variant(v) for v in ab.variants],
        "noise": ab_view.noise_floors(ab),
        "environment_rows": [(k, _leaf(v)) for k, v in flatten(ab.environment)],
    }


def _headline(ab: AbResult) -> dict[str, Any]:
    h = ab_view.headline(ab)
    c = h.comparison
    return {
        "icon": h.icon,
        "label": h.label,
        "lead": h.lead,
        "text": h.text,
        "variant": c.variant if c else "",
        "metric": c.metric if c else "",
        "change": ab_view.format_change(c) if c else "",
        "interval": ab_view.format_interval(c) if c else "",
        "more": f"and {h.more} more {c.status}" if c and h.more else "",
        "why": c.message if c and h.outcome is not Outcome.PASS else "",
    }


def _side(side: Side) -> dict[str, Any]:
    return {
        "name": side.name,
        "ref": side.ref,
        "sha": side.sha or "",
        "short": ab_view.short_sha(side.sha),
        "dirty": side.dirty,
        "scenario_file": side.scenario_file,
        "data_fingerprint": side.data_fingerprint,
    }


def _failure(ab: AbResult) -> dict[str, Any] | None:
    f = ab.failure
    if f is None:
        return None
    return {
        "stage": f.stage,
        "variant": f.variant,
        "message": f.message,
        "log": relative_path(f.log, ab.run_dir) if f.log else "",
        "log_tail": f.log_tail.rstrip("\n"),
        "interrupted": f.interrupted,
    }


def _comparison(c: Comparison) -> dict[str, Any]:
    spec = METRICS.get(c.metric)
    return {
        "status": c.status,
        "icon": ab_view.STATUS_ICON[c.status],
        "variant": c.variant,
        "metric": c.metric,
        "title": spec.title if spec else c.metric,
        "base": format_value(c.metric, c.base_value),
        "head": format_value(c.metric, c.head_value),
        "change": ab_view.format_change(c),
        "interval": ab_view.format_interval(c) or "-",
        "threshold": ab_view.format_threshold(c),
        "noise_floor": "-" if c.noise_floor is None else f"{c.noise_floor * 100:.1f}%",
        "better": c.better,
        "test": c.test,
        "n": c.n,
        "p": ab_view.format_p(c.p_value),
        "message": c.message,
    }


def _variant(v: VariantComparison) -> dict[str, Any]:
    """One variant's charts (block by block, both sides) and its slot tables."""
    blocks = max((s.block for s in v.slots), default=-1) + 1
    chart_list = []
    for metric, label in CHART_METRICS:
        base, head = _by_block(v.slots, metric, "base", blocks), _by_block(v.slots, metric, "head", blocks)
        svg = charts.block_values_svg(base, head, title=f"{v.name}: {label} per block", axis_label=label)
        if svg:
            # Markup: charts build the SVG and escape every text they put in it
            chart_list.append({"metric": metric, "label": label, "svg": Markup(svg)})
    columns = _slot_columns(v.slots + v.aa_slots)
    return {
        "name": v.name,
        "error": v.error,
        "warnings": v.warnings,
        "charts": chart_list,
        "columns": [(m, METRICS[m].title if m in METRICS else m) for m in columns],
        "slots": [_slot(s, columns) for s in v.slots],
        "aa_slots": [_slot(s, columns) for s in v.aa_slots],
        "base_metrics": _model_rows(v),
    }


def _by_block(slots: list[Slot], metric: str, side: str, blocks: int) -> list[float | None]:
    values: list[float | None] = [None] * blocks
    for s in slots:
        if s.side == side and metric in s.metrics:
            values[s.block] = s.metrics[metric]
    return values


def _slot_columns(slots: list[Slot]) -> list[str]:
    present = {k for s in slots for k in s.metrics}
    first = [m for m in SLOT_METRICS if m in present]
    rest = [m for m in METRICS if m in present and m not in first]
    return first + rest + sorted(present - set(first) - set(rest))


def _slot(s: Slot, columns: list[str]) -> dict[str, Any]:
    return {
        "block": s.block + 1,
        "side": s.side,
        "position": "first" if s.position == 0 else "second",
        "values": [format_value(m, _finite(s.metrics.get(m))) for m in columns],
        "requests": f"{s.requests:,}",
        "failures": f"{s.failures:,}",
        "started": f"{s.started_s:.1f} s",
        "restarted": s.restarted,
    }


def _model_rows(v: VariantComparison) -> list[tuple[str, str, str]]:
    """(metric title, base, head) of the figures measured once per side (size, quality)."""
    names = list(dict.fromkeys([*v.base_metrics, *v.head_metrics]))
    return [
        (
            METRICS[m].title if m in METRICS else m,
            format_value(m, _finite(v.base_metrics.get(m))),
            format_value(m, _finite(v.head_metrics.get(m))),
        )
        for m in names
    ]


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _leaf(value: Any) -> str:
    if isinstance(value, list | tuple):
        return json.dumps(value, default=str)
    return "-" if value is None else str(value)
