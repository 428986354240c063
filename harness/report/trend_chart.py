"""The trend chart of a run's report: one gated metric's nightly history on one testbed.

Kept apart from `charts` (whose frame, ticks and text helpers it reuses) so each module stays
small; like every chart it escapes the text it puts in the SVG, which the template marks safe.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from html import escape

from harness.history.record import Trend
from harness.report.charts import AXIS, GRID, PALETTE, _Frame, _svg_open, _text, _tick_label, nice_ticks

TREND_LINE = "#9aa0a6"
CHANGE = "#D55E00"  # vermilion: change points and the run's own point, apart from the series' blue
ACK = "#009E73"


def trend_svg(trend: Trend, *, width: int = 600, height: int = 300) -> str:
    """One metric's history on one testbed: every run in time order, evenly spaced.

    Change points are dashed vertical lines labelled with their magnitude, with each segment's
    median drawn across it; acknowledged segment starts are dotted lines; INVALID points are
    hollow; this run's point is ringed. Markers are placed by run id, since a Trend keeps only
    the latest points of a long series. Returns '' for an empty trend."""
    values = [float(v) for v in trend.values]
    n = len(values)
    if n == 0:
        return ""
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.08 or abs(hi) * 0.05 or 1.0
    yticks = nice_ticks(lo - pad, hi + pad, 5)
    ymin, ymax = yticks[0], yticks[-1]
    frame = _Frame(width, height, left=76, top=30)  # room for ticks such as 0.00105
    position = {run_id: i for i, run_id in enumerate(trend.run_ids)}

    def px(i: float) -> float:
        return frame.px(i / (n - 1)) if n > 1 else frame.px(0.5)

    def py(value: float) -> float:
        return frame.py((value - ymin) / (ymax - ymin))

    out = _svg_open(frame, f"{trend.metric} of {trend.variant} on {trend.testbed}, run by run")
    for tick in yticks:
        y = py(tick)
        out.append(f'<line x1="{frame.x0}" x2="{frame.x1}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        out.append(_text(frame.x0 - 8, y + 4, _tick_label(tick), anchor="end"))
    out.append(
        f'<rect x="{frame.x0}" y="{frame.y1}" width="{frame.x1 - frame.x0}" '
        f'height="{frame.y0 - frame.y1}" fill="none" stroke="{AXIS}"/>'
    )
    for run_id in trend.acknowledged_from:
        if run_id in position:
            x = px(position[run_id] - 0.5)
            out.append(
                f'<line class="ack" x1="{x:.1f}" x2="{x:.1f}" y1="{frame.y1}" y2="{frame.y0}" stroke="{ACK}" '
                f'stroke-width="1.5" stroke-dasharray="2 3"><title>acknowledged: a new segment starts at run '
                f"{escape(run_id)}</title></line>"
            )
            out.append(_text(x + 4, frame.y0 - 6, "ack", anchor="start", size=10, fill=ACK))
    out += _change_marks(trend, position, px, py, frame)
    if n > 1:
        coords = " ".join(f"{px(i):.1f},{py(v):.1f}" for i, v in enumerate(values))
        out.append(f'<polyline points="{coords}" fill="none" stroke="{TREND_LINE}" stroke-width="1.2"/>')
    for i, value in enumerate(values):
        valid = trend.valid[i] if i < len(trend.valid) else True
        fill = PALETTE[0] if valid else "#fff"
        tip = f"run {trend.run_ids[i]} ({trend.times[i]}): {value:.4g}" + ("" if valid else " (INVALID)")
        out.append(
            f'<circle cx="{px(i):.1f}" cy="{py(value):.1f}" r="3.5" fill="{fill}" stroke="{PALETTE[0]}" '
            f'stroke-width="1.5"><title>{escape(tip)}</title></circle>'
        )
    if trend.own_index is not None and 0 <= trend.own_index < n:
        x, y = px(trend.own_index), py(values[trend.own_index])
        out.append(
            f'<circle class="own-point" cx="{x:.1f}" cy="{y:.1f}" r="8" fill="none" stroke="{CHANGE}" '
            f'stroke-width="2.5"><title>this run: {values[trend.own_index]:.4g}</title></circle>'
        )
        anchor = "end" if x > (frame.x0 + frame.x1) / 2 else "start"
        out.append(
            _text(
                x + (-11 if anchor == "end" else 11), y - 10, "this run", anchor=anchor, size=11, fill=CHANGE
            )
        )
    if trend.times:
        out.append(_text(frame.x0, frame.y0 + 17, trend.times[0][:10], anchor="start"))
        if n > 1:
            out.append(_text(frame.x1, frame.y0 + 17, trend.times[-1][:10], anchor="end"))
    out.append(
        _text((frame.x0 + frame.x1) / 2, frame.height - 12, f"run, oldest to newest ({n})", fill="#222")
    )
    mid = (frame.y0 + frame.y1) / 2
    out.append(_text(16, mid, trend.metric, fill="#222", extra=f' transform="rotate(-90 16 {mid:.1f})"'))
    out.append("</svg>")
    return "\n".join(out)


def _change_marks(
    trend: Trend,
    position: Mapping[str, int],
    px: Callable[[float], float],
    py: Callable[[float], float],
    frame: _Frame,
) -> list[str]:
    """The dashed line and magnitude label of each change point, and the median of each segment
    around it (a segment ends at the neighbouring change point or at the chart's edge)."""
    shown = [(position[c.run_id], c) for c in trend.change_points if c.run_id in position]
    out = []
    for k, (index, change) in enumerate(shown):
        x = px(index - 0.5)
        left = px(shown[k - 1][0] - 0.5) if k > 0 else px(max(index - change.points_before, 0) - 0.5)
        right = (
            px(shown[k + 1][0] - 0.5)
            if k + 1 < len(shown)
            else px(min(index + change.points_after, len(trend.values)) - 0.5)
        )
        left, right = max(left, frame.x0), min(right, frame.x1)
        for x0, x1, level in ((left, x, change.before), (x, right, change.after)):
            y = py(level)
            out.append(
                f'<line x1="{x0:.1f}" x2="{x1:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="{CHANGE}" '
                'stroke-width="1.5" opacity="0.6"/>'
            )
        tip = (
            f"change point at run {change.run_id}: {change.magnitude:+.1%} "
            f"(p={change.p_value:.4f}, median {change.before:.4g} → {change.after:.4g})"
        )
        out.append(
            f'<line class="change-point" x1="{x:.1f}" x2="{x:.1f}" y1="{frame.y1}" y2="{frame.y0}" '
            f'stroke="{CHANGE}" stroke-width="1.5" stroke-dasharray="6 4"><title>{escape(tip)}</title></line>'
        )
        out.append(
            _text(x + 4, frame.y1 + 13, f"{change.magnitude:+.1%}", anchor="start", size=11, fill=CHANGE)
        )
    return out
