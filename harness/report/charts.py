"""Inline SVG charts for the report, written by hand so the report needs no plotting library or CDN.

Every piece of user text (variant names) is escaped here, because the template marks the SVG safe.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import NamedTuple

import numpy as np

# Okabe-Ito: distinguishable for the common forms of colour blindness
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
AXIS = "#555"
GRID = "#e3e3e3"
MAX_POINTS = 400  # per CDF line; enough to look exact at report width, small for 100k samples


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


class _Frame:
    """Plot area geometry and the value -> pixel mappings."""

    def __init__(
        self, width: int, height: int, left: int = 64, right: int = 24, top: int = 40, bottom: int = 52
    ):
        self.width, self.height = width, height
        self.x0, self.x1 = left, width - right
        self.y0, self.y1 = height - bottom, top  # y grows downwards in SVG

    def px(self, frac: float) -> float:
        return self.x0 + frac * (self.x1 - self.x0)

    def py(self, frac: float) -> float:
        return self.y0 - frac * (self.y0 - self.y1)


def nice_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 x 10^k) covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(count - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    ticks = []
    value = first
    while value < hi + step * 0.999:
        ticks.append(round(value, 12))
        value += step
    return ticks


def log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 ticks per decade covering [lo, hi] (lo > 0)."""
    ticks = []
    for exp in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            value = m * 10.0**exp
            if lo / 1.0001 <= value <= hi * 1.0001:
                ticks.append(value)
    return ticks


def _tick_label(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def _bar_label(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def _text(
    x: float,
    y: float,
    text: str,
    *,
    anchor: str = "middle",
    size: int = 12,
    fill: str = AXIS,
    extra: str = "",
) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" fill="{fill}"{extra}>'
        f"{escape(text)}</text>"
    )


def _svg_open(frame: _Frame, title: str) -> list[str]:
    return [
        f'<svg viewBox="0 0 {frame.width} {frame.height}" '
        f'width="{frame.width}" height="{frame.height}" role="img" class="chart" '
        f'style="max-width:100%;height:auto" font-family="inherit">',
        f"<title>{escape(title)}</title>",
    ]


def _legend_layout(names: Sequence[str], x0: float, x1: float) -> tuple[list[tuple[float, int]], int]:
    """(x, row) per name, wrapping rows at the plot width; and the number of rows."""
    slots, x, row = [], x0, 0
    for name in names:
        span = 30 + 7.2 * len(name)  # rough text width at 12px; SVG cannot measure text
        if x > x0 and x + span > x1:
            x, row = x0, row + 1
        slots.append((x, row))
        x += span
    return slots, row + 1


def _palette(names: Sequence[str], colors: Mapping[str, str] | None) -> list[str]:
    """One colour per name: the caller's choice where given, else the palette by position."""
    return [escape((colors or {}).get(name) or color(i)) for i, name in enumerate(names)]


def _frame_with_legend(
    width: int, height: int, names: Sequence[str], colors: Sequence[str] | None = None
) -> tuple[_Frame, list[str]]:
    """A frame whose top margin fits the legend, and the legend's SVG elements."""
    probe = _Frame(width, height)
    slots, rows = _legend_layout(names, probe.x0, probe.x1)
    frame = _Frame(width, height + 18 * (rows - 1), top=22 + 18 * rows)
    parts = []
    for i, (name, (x, row)) in enumerate(zip(names, slots, strict=True)):
        y = 12 + 18 * row
        fill = colors[i] if colors is not None else color(i)
        parts.append(f'<rect x="{x:.1f}" y="{y}" width="12" height="12" rx="2" fill="{fill}"/>')
        parts.append(_text(x + 17, y + 10.5, name, anchor="start", fill="#222"))
    return frame, parts


def latency_cdf_svg(
    series: Mapping[str, Sequence[float]],
    *,
    width: int = 600,
    height: int = 340,
    colors: Mapping[str, str] | None = None,
) -> str:
    """Cumulative distribution of latency per variant: for each x, the share of requests at most x ms.

    The x axis turns logarithmic when the slowest request is more than 10x the fastest, so both the
    bulk and the tail stay readable. `colors` (name -> colour) keeps a variant's colour the same in
    every chart even when another variant has no samples. Returns '' when no variant has samples.
    """
    data = {name: np.sort(np.asarray(v, dtype=np.float64)) for name, v in series.items() if len(v)}
    if not data:
        return ""
    lo = min(float(a[0]) for a in data.values())
    hi = max(float(a[-1]) for a in data.values())
    log = lo > 0 and hi / lo > 10
    if log:
        # start at the quarter decade below the fastest request
        lo_edge, hi_edge = 10 ** (math.floor(math.log10(lo) * 4) / 4), hi * 1.05
        xticks = log_ticks(lo_edge, hi_edge)

        def xfrac(v: float) -> float:
            return (math.log10(max(v, lo_edge)) - math.log10(lo_edge)) / (
                math.log10(hi_edge) - math.log10(lo_edge)
            )
    else:
        xticks = nice_ticks(0.0, hi)
        lo_edge, hi_edge = 0.0, xticks[-1]

        def xfrac(v: float) -> float:
            return (v - lo_edge) / (hi_edge - lo_edge)

    palette = _palette(list(data), colors)
    frame, legend = _frame_with_legend(width, height, list(data), palette)
    out = _svg_open(frame, "Latency distribution (CDF) per variant") + legend
    for frac, label in ((0.0, "0%"), (0.25, "25%"), (0.5, "50%"), (0.75, "75%"), (1.0, "100%")):
        y = frame.py(frac)
        out.append(f'<line x1="{frame.x0}" x2="{frame.x1}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        out.append(_text(frame.x0 - 8, y + 4, label, anchor="end"))
    for tick in xticks:
        x = frame.px(xfrac(tick))
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{frame.y1}" y2="{frame.y0}" stroke="{GRID}"/>')
        out.append(_text(x, frame.y0 + 17, _tick_label(tick)))
    out.append(
        f'<rect x="{frame.x0}" y="{frame.y1}" width="{frame.x1 - frame.x0}" '
        f'height="{frame.y0 - frame.y1}" fill="none" stroke="{AXIS}"/>'
    )
    for i, samples in enumerate(data.values()):
        n = samples.size
        idx = np.unique(np.linspace(0, n - 1, min(n, MAX_POINTS)).round().astype(int))
        points = [(frame.px(xfrac(float(samples[0]))), frame.py(0.0))]
        points += [(frame.px(xfrac(float(samples[j]))), frame.py((j + 1) / n)) for j in idx]
        coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        out.append(
            f'<polyline points="{coords}" fill="none" stroke="{palette[i]}" stroke-width="2" '
            'stroke-linejoin="round"/>'
        )
    scale = "log scale" if log else "linear scale"
    out.append(_text((frame.x0 + frame.x1) / 2, frame.height - 12, f"latency (ms, {scale})", fill="#222"))
    mid = (frame.y0 + frame.y1) / 2
    out.append(
        _text(
            16,
            mid,
            "share of requests ≤ latency",
            fill="#222",
            extra=f' transform="rotate(-90 16 {mid:.1f})"',
        )
    )
    out.append("</svg>")
    return "\n".join(out)


def percentile_bars_svg(
    summaries: Mapping[str, Mapping[str, float]],
    metrics: Sequence[tuple[str, str]] = (
        ("latency_p50_ms", "p50"),
        ("latency_p90_ms", "p90"),
        ("latency_p95_ms", "p95"),
        ("latency_p99_ms", "p99"),
    ),
    *,
    width: int = 600,
    height: int = 340,
    colors: Mapping[str, str] | None = None,
) -> str:
    """Grouped bars: one group per percentile, one bar per variant, value printed on each bar.
    A percentile no variant reported gets no (empty) group."""
    names = [n for n, m in summaries.items() if any(k in m for k, _ in metrics)]
    if not names:
        return ""
    metrics = [(k, label) for k, label in metrics if any(k in summaries[n] for n in names)]
    top = max(float(summaries[n].get(k, 0.0)) for n in names for k, _ in metrics)
    yticks = nice_ticks(0.0, top if top > 0 else 1.0, 5)
    ymax = yticks[-1]
    palette = _palette(names, colors)
    frame, legend = _frame_with_legend(width, height, names, palette)
    out = _svg_open(frame, "Latency percentiles per variant") + legend
    for tick in yticks:
        y = frame.py(tick / ymax)
        out.append(f'<line x1="{frame.x0}" x2="{frame.x1}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        out.append(_text(frame.x0 - 8, y + 4, _tick_label(tick), anchor="end"))
    group_w = (frame.x1 - frame.x0) / len(metrics)
    bar_w = min(48.0, group_w * 0.8 / len(names))
    for g, (key, label) in enumerate(metrics):
        start = frame.x0 + g * group_w + (group_w - bar_w * len(names)) / 2
        for i, name in enumerate(names):
            value = summaries[name].get(key)
            if value is None:
                continue
            x, y = start + i * bar_w, frame.py(float(value) / ymax)
            out.append(
                f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{bar_w - 2:.1f}" height="{frame.y0 - y:.1f}" '
                f'fill="{palette[i]}"><title>{escape(name)} {escape(label)}: {value:.3f} ms</title></rect>'
            )
            if bar_w >= 26:
                out.append(_text(x + bar_w / 2, y - 4, _bar_label(float(value)), size=10))
        out.append(_text(frame.x0 + (g + 0.5) * group_w, frame.y0 + 17, label, fill="#222"))
    out.append(f'<line x1="{frame.x0}" x2="{frame.x1}" y1="{frame.y0}" y2="{frame.y0}" stroke="{AXIS}"/>')
    mid = (frame.y0 + frame.y1) / 2
    out.append(_text(16, mid, "latency (ms)", fill="#222", extra=f' transform="rotate(-90 16 {mid:.1f})"'))
    out.append(_text((frame.x0 + frame.x1) / 2, frame.height - 12, "percentile", fill="#222"))
    out.append("</svg>")
    return "\n".join(out)


class CurvePoint(NamedTuple):
    """One load point of a sweep: what it achieved and how slow it was at that load."""

    throughput_rps: float
    latency_ms: float
    label: str  # the load point, e.g. "users=4" or "rate=200"
    valid: bool = True


def latency_throughput_svg(
    series: Mapping[str, Sequence[CurvePoint]],
    *,
    percentile_label: str = "p95",
    width: int = 600,
    height: int = 340,
    colors: Mapping[str, str] | None = None,
) -> str:
    """The latency-throughput curve of a sweep, one line per variant, points in load order.

    Both axes start at zero so the knee (throughput stops growing while latency climbs) reads at a
    glance. INVALID points are drawn hollow. Returns '' when no variant has two points or more.
    """
    data = {
        name: [p for p in points if math.isfinite(p.throughput_rps) and math.isfinite(p.latency_ms)]
        for name, points in series.items()
    }
    data = {name: points for name, points in data.items() if len(points) >= 2}
    if not data:
        return ""
    xticks = nice_ticks(0.0, max(p.throughput_rps for ps in data.values() for p in ps) or 1.0)
    yticks = nice_ticks(0.0, max(p.latency_ms for ps in data.values() for p in ps) or 1.0, 5)
    palette = _palette(list(data), colors)
    frame, legend = _frame_with_legend(width, height, list(data), palette)
    out = _svg_open(frame, f"Latency ({percentile_label}) against throughput per variant") + legend
    for tick in yticks:
        y = frame.py(tick / yticks[-1])
        out.append(f'<line x1="{frame.x0}" x2="{frame.x1}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        out.append(_text(frame.x0 - 8, y + 4, _tick_label(tick), anchor="end"))
    for tick in xticks:
        x = frame.px(tick / xticks[-1])
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{frame.y1}" y2="{frame.y0}" stroke="{GRID}"/>')
        out.append(_text(x, frame.y0 + 17, _tick_label(tick)))
    out.append(
        f'<rect x="{frame.x0}" y="{frame.y1}" width="{frame.x1 - frame.x0}" '
        f'height="{frame.y0 - frame.y1}" fill="none" stroke="{AXIS}"/>'
    )
    for i, (name, points) in enumerate(data.items()):
        xy = [(frame.px(p.throughput_rps / xticks[-1]), frame.py(p.latency_ms / yticks[-1])) for p in points]
        coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
        out.append(
            f'<polyline points="{coords}" fill="none" stroke="{palette[i]}" stroke-width="2" '
            'stroke-linejoin="round"/>'
        )
        for point, (x, y) in zip(points, xy, strict=True):
            fill = palette[i] if point.valid else "#fff"
            state = "" if point.valid else " (INVALID)"
            tip = (
                f"{name} {point.label}{state}: {point.throughput_rps:,.1f} req/s, "
                f"{percentile_label} {point.latency_ms:.2f} ms"
            )
            out.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4.5" fill="{fill}" stroke="{palette[i]}" '
                f'stroke-width="2"><title>{escape(tip)}</title></circle>'
            )
            out.append(_text(x + 7, y - 7, point.label, anchor="start", size=10))
    out.append(_text((frame.x0 + frame.x1) / 2, frame.height - 12, "throughput (req/s)", fill="#222"))
    mid = (frame.y0 + frame.y1) / 2
    out.append(
        _text(
            16,
            mid,
            f"latency {percentile_label} (ms)",
            fill="#222",
            extra=f' transform="rotate(-90 16 {mid:.1f})"',
        )
    )
    out.append("</svg>")
    return "\n".join(out)


def block_values_svg(
    base: Sequence[float | None],
    head: Sequence[float | None],
    *,
    title: str,
    axis_label: str,
    width: int = 460,
    height: int = 260,
) -> str:
    """An A/B metric block by block: blocks on x, base and head as two series of points.

    Paired blocks are what the A/B decision compares, so a reader sees at once whether head sits
    above base in every block or only in one noisy block. The y axis spans the data (not zero):
    the differences that matter are a few percent. Returns '' when neither side has a value.
    """
    series = {
        "base": [(i, float(v)) for i, v in enumerate(base) if v is not None and math.isfinite(v)],
        "head": [(i, float(v)) for i, v in enumerate(head) if v is not None and math.isfinite(v)],
    }
    values = [v for points in series.values() for _, v in points]
    if not values:
        return ""
    blocks = max(len(base), len(head))
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.1 or abs(hi) * 0.05 or 1.0
    yticks = nice_ticks(lo - pad, hi + pad, 5)
    ylo, yhi = yticks[0], yticks[-1]
    palette = [color(0), color(1)]
    frame, legend = _frame_with_legend(width, height, list(series), palette)
    out = _svg_open(frame, title) + legend
    for tick in yticks:
        y = frame.py((tick - ylo) / (yhi - ylo))
        out.append(f'<line x1="{frame.x0}" x2="{frame.x1}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        out.append(_text(frame.x0 - 8, y + 4, _tick_label(tick), anchor="end"))

    def px(block: int) -> float:
        return frame.px((block + 0.5) / blocks)

    for block in range(blocks):
        out.append(_text(px(block), frame.y0 + 17, str(block + 1)))
    out.append(
        f'<rect x="{frame.x0}" y="{frame.y1}" width="{frame.x1 - frame.x0}" '
        f'height="{frame.y0 - frame.y1}" fill="none" stroke="{AXIS}"/>'
    )
    for (name, points), fill in zip(series.items(), palette, strict=True):
        xy = [(px(b), frame.py((v - ylo) / (yhi - ylo)), b, v) for b, v in points]
        if len(xy) > 1:
            coords = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in xy)
            out.append(
                f'<polyline points="{coords}" fill="none" stroke="{fill}" stroke-width="1.5" opacity="0.6"/>'
            )
        for x, y, b, v in xy:
            tip = f"{name}, block {b + 1}: {v:.4g}"
            out.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{fill}"><title>{escape(tip)}</title></circle>'
            )
    out.append(_text((frame.x0 + frame.x1) / 2, frame.height - 12, "block", fill="#222"))
    mid = (frame.y0 + frame.y1) / 2
    out.append(_text(16, mid, axis_label, fill="#222", extra=f' transform="rotate(-90 16 {mid:.1f})"'))
    out.append("</svg>")
    return "\n".join(out)
