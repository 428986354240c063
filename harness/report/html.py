"""Render a run as one self-contained HTML file: inline CSS and SVG, no scripts, no network.

The view is prepared here in plain Python (what to show, how to format it); the jinja2 template only
lays it out. Autoescaping is on, so variant names and messages can never inject markup; the SVG
charts are the only pre-rendered markup and escape their own text.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from harness import __version__
from harness.atomic import atomic_write_text
from harness.baselines.fingerprint import fingerprint_id
from harness.metrics.catalog import METRICS, format_value
from harness.report import charts
from harness.report.evidence import (
    confirmation_tag,
    evidence_of,
    evidence_text,
    evidence_tooltip,
    gate_failures,
    invalid_variants,
    measurement_number,
    run_status,
    validity_of,
)
from harness.report.load_view import search_views, sweep_view, validity_cards
from harness.report.server_view import server_views
from harness.report.variant_view import compression_steps, confirmation_views
from harness.results import RunResult, VariantResult, Verdict

REFERENCE = "reference"

# rows of the per-variant table, grouped as a reader scans them: what the model costs, what it
# gets right, how fast it answers, how it holds up under load, what the server saw. A row no
# variant has a value for is left out.
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Model", ("model_size_bytes", "model_size_gzip_bytes", "sparsity", "param_count")),
    ("Accuracy", ("accuracy_inprocess", "accuracy", "accuracy_drop_vs_reference")),
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


# sections whose numbers come from the load measurement, so an INVALID measurement voids them
LOAD_SECTIONS = ("Latency", "Load", "Server")


@dataclass
class Cell:
    text: str
    raw: str = ""  # exact value for the tooltip
    change: str = ""  # vs the reference variant
    change_class: str = ""  # "better" | "worse" | ""
    verdict: str = ""  # "pass" | "fail" | ""
    verdict_message: str = ""


@dataclass
class Row:
    label: str
    metric: str
    unit: str
    better: str
    description: str
    cells: list[Cell] = field(default_factory=list)


def render_report(result: RunResult, run_dir: Path) -> Path:
    """Write `run_dir/index.html` atomically and return its path."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    html = render_html(result)
    return atomic_write_text(run_dir / "index.html", html)


def render_html(result: RunResult) -> str:
    """The report as a string (what `render_report` writes)."""
    template = _environment().get_template("report.html.j2")
    return template.render(**build_view(result))


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("harness.report", "templates"),
        autoescape=True,  # the template is .j2, which select_autoescape would not cover
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = format_value
    return env


def build_view(result: RunResult) -> dict[str, Any]:
    """Everything the template shows, already formatted."""
    variants = result.variants
    reference = next((v for v in variants if v.name == REFERENCE), variants[0] if variants else None)
    # a re-measured variant reports its latest measurement, so a cell takes the verdict of the
    # highest-numbered measurement; the others are in the gates table and the confirmation section
    verdict_map = {(v.variant, v.metric): v for v in sorted(result.verdicts, key=measurement_number)}
    failed = gate_failures(result)  # INVALID measurements get their own banner
    latency_series = {v.name: v.latencies_ms for v in variants}
    colors = [charts.color(i) for i in range(len(variants))]
    by_name = {v.name: c for v, c in zip(variants, colors, strict=True)}
    validities = [validity_of(v) for v in variants]
    sweep = sweep_view(variants, by_name)
    if sweep is not None:
        sweep["svg"] = Markup(sweep["svg"])  # built by charts, which escapes its text
    sections = [(title, _rows(names, variants, reference, verdict_map)) for title, names in SECTIONS]
    return {
        "r": result,
        "version": __version__,
        "status": run_status(result),
        "failed": failed,
        "gate_counts": (sum(v.passed for v in result.verdicts), sum(not v.passed for v in result.verdicts)),
        "invalid": invalid_variants(result),
        "validity_counts": (
            sum(1 for x in validities if x is not None and x.valid),
            sum(1 for x in validities if x is not None and not x.valid),
        ),
        "validity_badges": [None if x is None else x.valid for x in validities],
        "reference_name": reference.name if reference else "",
        "load_sections": LOAD_SECTIONS,
        "sections": [(title, rows) for title, rows in sections if rows]
        + _other_section(variants, reference, verdict_map),
        "failure_cells": [_failures_text(v) for v in variants],
        "sample_counts": [len(v.latencies_ms) for v in variants],
        "verdicts": [_verdict_view(v) for v in result.verdicts],
        "has_evidence": any(evidence_of(v) for v in result.verdicts),
        # Markup: charts build the SVG and escape every text they put in it
        "cdf_svg": Markup(charts.latency_cdf_svg(latency_series, colors=by_name)),
        "bars_svg": Markup(charts.percentile_bars_svg({v.name: v.metrics for v in variants}, colors=by_name)),
        "colors": colors,
        "validity_cards": validity_cards(variants, by_name),
        "sweep": sweep,
        "searches": search_views(variants, by_name),
        "servers": server_views(variants, by_name),
        "confirmations": confirmation_views(result),
        "steps": [compression_steps(v) for v in variants],
        "warnings": [(v.name, w) for v in variants for w in v.warnings],
        "stages": _stages(result.stage_seconds),
        "scenario_text": _dump_config(result.scenario),
        "environment_rows": [
            ("fingerprint_id", fingerprint_id(result.environment)),
            *_flatten(result.environment),
        ],
        "target_rows": _flatten(result.target),
    }


def _rows(
    metrics: tuple[str, ...],
    variants: list[VariantResult],
    reference: VariantResult | None,
    verdicts: dict[tuple[str, str], Verdict],
) -> list[Row]:
    """The rows of one section, leaving out metrics no variant reported (a closed-loop run has no
    late sends, an in-process target no server figures) unless a gate judged them."""
    return [
        _row(m, variants, reference, verdicts)
        for m in metrics
        if any(v.metrics.get(m) is not None for v in variants) or any(k[1] == m for k in verdicts)
    ]


def _row(
    metric: str,
    variants: list[VariantResult],
    reference: VariantResult | None,
    verdicts: dict[tuple[str, str], Verdict],
) -> Row:
    spec = METRICS.get(metric)
    row = Row(
        label=spec.title if spec else metric,
        metric=metric,
        unit=spec.unit if spec else "",
        better=spec.better if spec else "",
        description=spec.description if spec else "",
    )
    ref_value = reference.metrics.get(metric) if reference else None
    for variant in variants:
        value = variant.metrics.get(metric)
        cell = Cell(text=format_value(metric, value), raw="" if value is None else repr(value))
        if reference is not None and variant is not reference and value is not None and ref_value:
            change = (value - ref_value) / abs(ref_value)
            # an unchanged value (same parameter count, same file size) needs no "+0.0 %"
            if abs(change) >= 0.0005:
                cell.change = f"{change * 100:+.1f} % vs {reference.name}"
            if spec and abs(change) >= 0.005:
                cell.change_class = "worse" if spec.is_worse(value, ref_value) else "better"
        verdict = verdicts.get((variant.name, metric))
        if verdict is not None:
            cell.verdict = "pass" if verdict.passed else "fail"
            cell.verdict_message = verdict.message
        row.cells.append(cell)
    return row


def _other_section(
    variants: list[VariantResult], reference: VariantResult | None, verdicts: dict[tuple[str, str], Verdict]
) -> list[tuple[str, list[Row]]]:
    """Metrics a run reported beyond the fixed rows (e.g. from a plugin) still get shown."""
    shown = {m for _, names in SECTIONS for m in names}
    extra = sorted({m for v in variants for m in v.metrics} - shown)
    return [("Other", [_row(m, variants, reference, verdicts) for m in extra])] if extra else []


def _failures_text(variant: VariantResult) -> str:
    counts = {k: n for k, n in variant.failures.items() if n}
    return ", ".join(f"{k} {n:,}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1])) or "none"


def _verdict_view(v: Verdict) -> dict[str, Any]:
    change = pct = ""
    if v.current is not None and v.baseline is not None and math.isfinite(v.current):
        change = _signed(v.metric, v.current - v.baseline)
        if v.baseline:
            pct = f"{(v.current - v.baseline) / abs(v.baseline) * 100:+.1f} %"
    evidence = evidence_of(v)
    return {
        "v": v,
        "evidence": evidence_text(v.metric, evidence),
        "evidence_title": evidence_tooltip(evidence),
        "tag": confirmation_tag(v),
        "current": format_value(v.metric, v.current),
        "baseline": format_value(v.metric, v.baseline) if v.baseline is not None else "no baseline needed",
        "limit": format_value(v.metric, v.limit),
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


def _stages(stage_seconds: dict[str, float]) -> list[dict[str, Any]]:
    """Rows with a bar scaled to the slowest stage, then a total row (no bar)."""
    if not stage_seconds:
        return []
    longest = max(stage_seconds.values()) or 1.0
    rows: list[dict[str, Any]] = [
        {"name": name, "seconds": f"{sec:.2f} s", "share": max(0.5, 100 * sec / longest)}
        for name, sec in stage_seconds.items()
    ]
    rows.append({"name": "total", "seconds": f"{sum(stage_seconds.values()):.2f} s", "share": None})
    return rows


def _dump_config(config: dict[str, Any]) -> str:
    """The scenario as YAML, as a user would write it: multi-line text as | blocks, no line folding."""
    import yaml  # light; imported here because only this function needs it

    class _Dumper(yaml.SafeDumper):
        pass

    def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value.strip("\n") else None
        return dumper.represent_scalar(
            "tag:yaml.org,2002:str", value.strip("\n") if style is None else value, style=style
        )

    _Dumper.add_representer(str, _str)
    return str(yaml.dump(config, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1_000_000))


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts as dotted keys ('packages.torch'), values as short strings."""
    rows: list[tuple[str, str]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            rows += _flatten(value, f"{name}.")
        elif isinstance(value, list | tuple):
            rows.append((name, json.dumps(value, default=str)))
        else:
            rows.append((name, "-" if value is None else str(value)))
    return rows
