"""A compact Markdown summary of a run, for CI job summaries and pull-request comments."""

from __future__ import annotations

import re

from harness.metrics.catalog import format_value
from harness.report.evidence import confirmation_tag, gate_failures, invalid_variants, run_status, validity_of
from harness.results import RunResult, VariantResult, Verdict

# (header, metric) columns of the summary table: the numbers a reviewer decides on
COLUMNS: tuple[tuple[str, str], ...] = (
    ("size", "model_size_bytes"),
    ("gzip", "model_size_gzip_bytes"),
    ("accuracy", "accuracy"),
    ("p50", "latency_p50_ms"),
    ("p95", "latency_p95_ms"),
    ("p99", "latency_p99_ms"),
    ("throughput", "throughput_rps"),
    ("errors", "error_rate"),
)
# shown only when some variant has them (an SLO search ran)
OPTIONAL_COLUMNS: tuple[tuple[str, str], ...] = (("max rps at SLO", "max_rps_at_slo"),)

STATUS = {"pass": "✅ PASS", "fail": "❌ FAIL", "invalid": "❌ INVALID", "error": "❌ ERROR"}

_SPECIAL = re.compile(r"([\\|`*_\[\]])")


def _md(text: str) -> str:
    """Escape text for a Markdown table cell or list item (no HTML, no table breaks)."""
    text = _SPECIAL.sub(r"\\\1", text.replace("\n", " "))
    return text.replace("<", "&lt;")  # "<" could open an HTML tag; ">" mid-line is harmless


def render_markdown(result: RunResult) -> str:
    """Status line, baseline status, one table row per variant, then invalid measurements and every
    failing gate with its statistical evidence."""
    failed = gate_failures(result)  # INVALID measurements are listed apart, with their reasons
    invalid = invalid_variants(result)
    lines = [f"### {STATUS[run_status(result)]} · {_md(result.scenario_name)}", ""]
    if result.error:
        lines += [f"**The run did not complete:** {_md(result.error.strip().splitlines()[0])}", ""]
    baseline = f"**baseline:** {_md(result.baseline_status)}"
    if result.baseline_message:
        baseline += f" — {_md(result.baseline_message)}"
    lines += [baseline, ""]

    if result.variants:
        lines += _table(result)
        lines.append("")

    if invalid:
        lines += ["**Invalid measurements** (not compared with the baseline)", ""]
        for name, reasons in invalid:
            lines.append(f"- **{_md(name)}**: {_md('; '.join(reasons))}")
        lines.append("")
    if failed:
        lines += ["**Failed gates**", ""]
        lines += [f"- **{_md(v.variant)}**: {_md(_gate_line(v))}" for v in failed]
        lines.append("")
    elif not result.verdicts:
        lines += ["No gate was evaluated.", ""]
    return "\n".join(lines)


def _table(result: RunResult) -> list[str]:
    columns = COLUMNS + tuple(
        (h, m) for h, m in OPTIONAL_COLUMNS if any(m in v.metrics for v in result.variants)
    )
    show_validity = any(validity_of(v) is not None for v in result.variants)
    head = "| variant | " + " | ".join(h for h, _ in columns) + (" | validity" if show_validity else "")
    lines = [head + " | gates |"]
    lines.append("|:--|" + "--:|" * len(columns) + (":-:|" if show_validity else "") + ":-:|")
    for variant in result.variants:
        cells = [_md(format_value(metric, variant.metrics.get(metric))) for _, metric in columns]
        if show_validity:
            cells.append(_validity_cell(variant))
        mine = [v for v in result.verdicts if v.variant == variant.name]
        bad = sum(1 for v in mine if not v.passed)
        gates = "-" if not mine else (f"❌ {bad}/{len(mine)} failed" if bad else f"✅ {len(mine)}")
        lines.append(f"| {_md(variant.name)} | " + " | ".join(cells) + f" | {gates} |")
    return lines


def _validity_cell(variant: VariantResult) -> str:
    validity = validity_of(variant)
    if validity is None:
        return "-"
    return "✅ valid" if validity.valid else "❌ INVALID"


def _gate_line(verdict: Verdict) -> str:
    """The verdict's message (it names its statistical test), marked when it is a re-measurement's."""
    tag = confirmation_tag(verdict)
    return f"{verdict.message} ({tag.lower()})" if tag else verdict.message
