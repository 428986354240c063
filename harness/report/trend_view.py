"""The report's view of the nightly history (`harness run --history DIR`): per gated metric, its
trend chart, the change points found in its series and why there may be none yet.

Built from `RunResult.trends` alone, so a report re-rendered from results.json shows the same
trends without the history store at hand.
"""

from __future__ import annotations

from typing import Any

from harness.history.record import ChangePoint, Trend
from harness.history.view import describe, suspects
from harness.metrics.catalog import format_value
from harness.report.trend_chart import trend_svg
from harness.results import RunResult


def trend_views(result: RunResult) -> list[dict[str, Any]]:
    """One entry per trend: title, chart (SVG text: the caller marks it safe), note, change rows."""
    return [_view(trend) for trend in result.trends]


def _view(trend: Trend) -> dict[str, Any]:
    own = trend.own_index
    current = trend.values[own] if own is not None and 0 <= own < len(trend.values) else None
    return {
        "title": f"{trend.metric} · {trend.variant}",
        "testbed": trend.testbed,
        "points": len(trend.values),
        "invalid": sum(1 for ok in trend.valid if not ok),
        "current": format_value(trend.metric, current),
        "svg": trend_svg(trend),
        "note": trend.note,
        "acknowledged": list(trend.acknowledged_from),
        "changes": [_change_row(c) for c in trend.change_points],
    }


def _change_row(change: ChangePoint) -> dict[str, str]:
    commits = ""
    if change.commit_before or change.commit_after:
        commits = f"{(change.commit_before or '-')[:12]} → {(change.commit_after or '-')[:12]}"
    return {
        "run_id": change.run_id,
        "time": change.time,
        "magnitude": f"{change.magnitude:+.1%}",
        "direction": "up" if change.magnitude > 0 else "down",
        "p_value": f"{change.p_value:.4f}",
        "levels": " → ".join(format_value(change.metric, v) for v in (change.before, change.after)),
        "points": f"{change.points_before} / {change.points_after}",
        "suspects": ", ".join(suspects(change)) or "none recorded",
        "commits": commits or "-",
    }


def change_point_lines(result: RunResult) -> list[str]:
    """One plain-text line per change point of this run's trends (for the Markdown summary)."""
    return [
        f"{c.metric} of {c.variant} on {c.testbed}: {describe(c)}"
        for t in result.trends
        for c in t.change_points
    ]
