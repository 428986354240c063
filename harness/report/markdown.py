"""A compact Markdown summary of a run, for CI job summaries and pull-request comments."""

from __future__ import annotations

import re

from harness.metrics.catalog import format_value
from harness.results import RunResult

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

_SPECIAL = re.compile(r"([\\|`*_\[\]])")


def _md(text: str) -> str:
    """Escape text for a Markdown table cell or list item (no HTML, no table breaks)."""
    text = _SPECIAL.sub(r"\\\1", text.replace("\n", " "))
    return text.replace("<", "&lt;")  # "<" could open an HTML tag; ">" mid-line is harmless


def render_markdown(result: RunResult) -> str:
    """Status line, baseline status, one table row per variant, then every failing gate."""
    failed = [v for v in result.verdicts if not v.passed]
    status = "❌ FAIL" if failed else "✅ PASS"
    lines = [f"### {status} · {_md(result.scenario_name)}", ""]
    baseline = f"**baseline:** {_md(result.baseline_status)}"
    if result.baseline_message:
        baseline += f" — {_md(result.baseline_message)}"
    lines += [baseline, ""]

    if result.variants:
        lines.append("| variant | " + " | ".join(h for h, _ in COLUMNS) + " | gates |")
        lines.append("|:--|" + "--:|" * len(COLUMNS) + ":-:|")
        for variant in result.variants:
            cells = [format_value(metric, variant.metrics.get(metric)) for _, metric in COLUMNS]
            mine = [v for v in result.verdicts if v.variant == variant.name]
            bad = sum(1 for v in mine if not v.passed)
            gates = "-" if not mine else (f"❌ {bad}/{len(mine)} failed" if bad else f"✅ {len(mine)}")
            lines.append(f"| {_md(variant.name)} | " + " | ".join(_md(c) for c in cells) + f" | {gates} |")
        lines.append("")

    if failed:
        lines += ["**Failed gates**", ""]
        lines += [f"- **{_md(v.variant)}**: {_md(v.message)}" for v in failed]
        lines.append("")
    elif not result.verdicts:
        lines += ["No gate was evaluated.", ""]
    return "\n".join(lines)
