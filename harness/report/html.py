"""Render a run as one self-contained HTML file: inline CSS and SVG, no scripts, no network.

The view is prepared in plain Python (here and in the *_view modules: what to show, how to format
it) from the typed run record alone; the jinja2 template only lays it out. Autoescaping is on, so
variant names and messages can never inject markup; the SVG charts are the only pre-rendered
markup and escape their own text. Nothing depends on the time of rendering, so the same record
always renders to the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from harness import __version__
from harness.atomic import atomic_write_text
from harness.baselines.fingerprint import fingerprint_id
from harness.metrics.catalog import format_value
from harness.report import charts
from harness.report.evidence import gate_failures, invalid_variants, outcome_label
from harness.report.load_view import search_views, sweep_view, validity_cards
from harness.report.metrics_view import finite, has_evidence, metric_sections, reference_of, verdict_views
from harness.report.run_view import failure_view, outcome_view, stage_rows
from harness.report.server_view import server_views
from harness.report.serving_view import flatten, serving_panel
from harness.report.trend_view import trend_views
from harness.report.variant_view import compression_steps, confirmation_views
from harness.results import RunResult, VariantResult

INDEX_FILE = "index.html"


def render_report(result: RunResult, run_dir: Path) -> Path:
    """Write `run_dir/index.html` atomically and return its path."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(run_dir / INDEX_FILE, render_html(result))


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
    reference = reference_of(variants)
    colors = [charts.color(i) for i in range(len(variants))]
    by_name = {v.name: c for v, c in zip(variants, colors, strict=True)}
    reported = [v.reported for v in variants]
    gated = [m.gated if m is not None else None for m in reported]
    latencies = _latencies(variants)
    sweep = sweep_view(variants, by_name)
    if sweep is not None:
        sweep["svg"] = Markup(sweep["svg"])  # built by charts, which escapes its text
    verdicts = result.verdicts
    return {
        "r": result,
        "version": __version__,
        "outcome": outcome_view(result),
        "failure": failure_view(result),
        "failed": gate_failures(result),
        "gate_counts": {
            s: sum(1 for v in verdicts if v.status == s) for s in ("pass", "fail", "inconclusive")
        },
        "invalid": invalid_variants(result),
        "validity_badges": [None if m is None or m.gated is None else m.valid for m in reported],
        "variant_outcomes": [outcome_label(result, v) for v in variants],
        "remeasured": [max(len(v.measurements) - 1, 0) for v in variants],
        "reference_name": reference.name if reference else "",
        "sections": metric_sections(variants),
        "failure_cells": [_failures_text(p.failures if p else {}) for p in gated],
        "failure_examples": [list(p.failure_examples) if p else [] for p in gated],
        "sample_counts": [len(latencies.get(v.name, ())) for v in variants],
        "verdicts": verdict_views(variants),
        "has_evidence": has_evidence(variants),
        # Markup: charts build the SVG and escape every text they put in it
        "cdf_svg": Markup(charts.latency_cdf_svg(latencies, colors=by_name)),
        "bars_svg": Markup(charts.percentile_bars_svg(_finite_metrics(variants), colors=by_name)),
        "colors": colors,
        "validity_cards": validity_cards(variants, by_name),
        "sweep": sweep,
        "searches": search_views(variants, by_name),
        "servers": server_views(variants, by_name),
        "serving": serving_panel(result),
        "confirmations": confirmation_views(result),
        "steps": [compression_steps(v) for v in variants],
        # with `--history`: each gated metric's nightly series; charts escape their own text
        "trends": [{**t, "svg": Markup(t["svg"])} for t in trend_views(result)],
        "warnings": [(v.name, w) for v in variants for w in v.warnings],
        "stages": stage_rows(result),
        "scenario_text": _dump_config(result.scenario),
        "data_rows": _environment_rows(result.data),
        "environment_rows": [
            ("fingerprint_id", fingerprint_id(result.environment)),
            *_environment_rows(result.environment),
        ],
    }


def _latencies(variants: list[VariantResult]) -> dict[str, Any]:
    """Per variant, the successful requests of its reported measurement's gated point."""
    out = {}
    for variant in variants:
        reported = variant.reported
        gated = reported.gated if reported is not None else None
        if gated is not None and gated.latency_histogram:
            out[variant.name] = gated.latencies_ms()
    return out


def _finite_metrics(variants: list[VariantResult]) -> dict[str, dict[str, float]]:
    """Per variant the metrics that have a value (results.json stores NaN and infinity as null)."""
    return {v.name: {k: x for k, x in v.metrics.items() if finite(x) is not None} for v in variants}


def _failures_text(failures: dict[str, int]) -> str:
    counts = {k: n for k, n in failures.items() if n}
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{k} {n:,}" for k, n in ordered) or "none"


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


def _environment_rows(environment: dict[str, Any]) -> list[tuple[str, str]]:
    """The environment as dotted keys ('packages.torch') with short text values."""
    return [(name, _leaf_text(value)) for name, value in flatten(environment)]


def _leaf_text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return json.dumps(value, default=str)
    return "-" if value is None else str(value)
