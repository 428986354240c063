"""A compact Markdown summary of a run, for CI job summaries and pull-request comments.

It states the run's outcome (pass / regression / error / inconclusive) with its exit code first,
then why: the failure of a broken run with the end of its log, one row per variant, the invalid
measurements and every failed gate with its statistical evidence.
"""

from __future__ import annotations

import re

from harness.metrics.catalog import format_value, headline_quality
from harness.report.evidence import (
    OUTCOME_MEANING,
    evidence_text,
    gate_failures,
    invalid_variants,
    measurement_label,
    outcome_label,
)
from harness.report.metrics_view import finite
from harness.report.serving_view import relative_path
from harness.report.trend_view import change_point_lines
from harness.results import Outcome, RunResult, VariantResult, Verdict

SUMMARY_FILE = "summary.md"

# (header, metric) columns of the summary table: the numbers a reviewer decides on
COLUMNS: tuple[tuple[str, str], ...] = (
    ("size", "model_size_bytes"),
    ("gzip", "model_size_gzip_bytes"),
    ("quality", ""),  # the run's headline quality metric (catalog.headline_quality)
    ("p50", "latency_p50_ms"),
    ("p95", "latency_p95_ms"),
    ("p99", "latency_p99_ms"),
    ("throughput", "throughput_rps"),
    ("errors", "error_rate"),
)
# shown only when some variant has them (an SLO search ran)
OPTIONAL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("agreement", "agreement"),
    ("max rps at SLO", "max_rps_at_slo"),
)

ICON = {
    Outcome.PASS: "✅",
    Outcome.REGRESSION: "❌",
    Outcome.ERROR: "💥",
    Outcome.INCONCLUSIVE: "⚠️",
    Outcome.INTERRUPTED: "⏹️",
}
LOG_TAIL_LINES = 20  # of the failure's log tail; the HTML report has all of it

_SPECIAL = re.compile(r"([\\|`*_\[\]])")


def escape_md(text: str) -> str:
    """Escape text for a Markdown table cell or list item (no HTML, no table breaks)."""
    text = _SPECIAL.sub(r"\\\1", " ".join(text.splitlines()))
    return text.replace("<", "&lt;")  # "<" could open an HTML tag; ">" mid-line is harmless


def render_markdown(result: RunResult) -> str:
    """Outcome line, the failure of a broken run, baseline status, one table row per variant,
    then invalid measurements and every failing gate with its statistical evidence."""
    outcome = result.outcome
    lines = [
        f"### {ICON[outcome]} {outcome.value.upper()} · {escape_md(result.scenario_name)}",
        "",
        f"**Outcome: {outcome.value}** (exit code {outcome.exit_code}): {OUTCOME_MEANING[outcome]}.",
        "",
    ]
    lines += _failure(result)
    baseline = f"**baseline:** {escape_md(result.baseline.status)}"
    if result.baseline.message:
        baseline += f" — {escape_md(result.baseline.message)}"
    lines += [baseline, ""]
    if result.data:
        d = result.data
        labelled = "" if d.get("labelled", True) else ", unlabelled"
        lines += [
            f"**data:** {escape_md(str(d.get('kind')))}, {d.get('test_examples')} test examples{labelled}, "
            f"sha256 `{str(d.get('fingerprint', ''))[:12]}`",
            "",
        ]

    if result.variants:
        lines += _table(result)
        lines.append("")

    invalid = invalid_variants(result)
    if invalid:
        lines += ["**Invalid measurements** (inconclusive: not compared with the baseline)", ""]
        for item in invalid:
            times = f" (after {item.measurements} measurements)" if item.measurements > 1 else ""
            lines.append(f"- **{escape_md(item.name)}**{times}: {escape_md('; '.join(item.reasons))}")
        lines.append("")
    failed = gate_failures(result)
    if failed:
        lines += ["**Failed gates**", ""]
        by_name = {v.name: v for v in result.variants}
        lines += [
            f"- **{escape_md(v.variant)}**: {escape_md(_gate_line(by_name.get(v.variant), v))}"
            for v in failed
        ]
        lines.append("")
    elif not result.verdicts:
        lines += ["No gate was evaluated.", ""]
    changes = change_point_lines(result)
    if changes:
        lines += ["**Change points in the nightly history**", ""]
        lines += [f"- {escape_md(line)}" for line in changes] + [""]
    return "\n".join(lines)


def _failure(result: RunResult) -> list[str]:
    failure = result.failure
    if failure is None:
        return []
    what = "The run was interrupted" if failure.interrupted else "The run broke"
    where = f" at stage `{failure.stage}`" if failure.stage else ""
    variant = f" (variant **{escape_md(failure.variant)}**)" if failure.variant else ""
    first = failure.message.strip().splitlines()[0] if failure.message.strip() else "no message"
    lines = [f"**{what}{where}**{variant}: {escape_md(first)}", ""]
    if failure.log:
        lines += [f"log: `{relative_path(failure.log, result.run_dir).replace('`', '')}`", ""]
    tail = failure.log_tail.rstrip("\n").splitlines()[-LOG_TAIL_LINES:]
    if tail:
        text = "\n".join(tail)
        fence = "`" * max(3, _longest_backtick_run(text) + 1)
        lines += [f"{fence}text", text, fence, ""]
    return lines


def _longest_backtick_run(text: str) -> int:
    return max((len(m) for m in re.findall(r"`+", text)), default=0)


def _table(result: RunResult) -> list[str]:
    quality = headline_quality(v.metrics for v in result.variants)
    shown = tuple((quality, quality) if h == "quality" else (h, m) for h, m in COLUMNS)
    columns = shown + tuple(
        (h, m) for h, m in OPTIONAL_COLUMNS if m != quality and any(m in v.metrics for v in result.variants)
    )
    head = "| variant | outcome | " + " | ".join(h for h, _ in columns) + " | validity | gates |"
    lines = [head, "|:--|:-:|" + "--:|" * len(columns) + ":-:|:-:|"]
    for variant in result.variants:
        cells = [
            escape_md(format_value(metric, finite(variant.metrics.get(metric)))) for _, metric in columns
        ]
        outcome = _outcome_cell(result, variant)
        mine = variant.verdicts
        gates = _gates_cell(mine)
        row = [escape_md(variant.name), outcome, *cells, _validity_cell(variant), gates]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _gates_cell(verdicts: list[Verdict]) -> str:
    if not verdicts:
        return "-"
    failed = sum(1 for v in verdicts if v.failed)
    undecided = sum(1 for v in verdicts if v.status == "inconclusive")
    parts = [f"❌ {failed}/{len(verdicts)} failed"] if failed else []
    parts += [f"⚠️ {undecided}/{len(verdicts)} inconclusive"] if undecided else []
    return ", ".join(parts) or f"✅ {len(verdicts)} passed"


def _outcome_cell(result: RunResult, variant: VariantResult) -> str:
    if result.failure is not None and result.failure.variant == variant.name:
        return f"{ICON[Outcome.ERROR]} error"
    if variant.outcome is None:
        return outcome_label(result, variant)
    return f"{ICON[variant.outcome]} {variant.outcome.value}"


def _validity_cell(variant: VariantResult) -> str:
    reported = variant.reported
    if reported is None or reported.gated is None:
        return "-"
    times = f" ({len(variant.measurements)} measurements)" if len(variant.measurements) > 1 else ""
    return ("✅ valid" if reported.valid else "⚠️ INVALID") + times


def _gate_line(variant: VariantResult | None, verdict: Verdict) -> str:
    """The verdict's message and its evidence, marked with the measurement it was judged on."""
    text = verdict.message
    evidence = evidence_text(verdict.metric, verdict.evidence)
    if evidence and evidence not in ("plain comparison",):
        text += f" ({evidence})"
    if variant is not None and len(variant.measurements) > 1:
        text += f" [{measurement_label(verdict.measurement)}]"
    return text
