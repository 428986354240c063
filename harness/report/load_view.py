"""The report's view of how load was measured: validity per window, sweeps and the SLO search.

Reads the typed load points of each variant's measurements (harness.results.LoadPointResult) and
returns plain dicts and strings; the template lays them out. A spread is shown in red only when
it is what made its point INVALID, never on a VALID point.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from harness.metrics.catalog import METRICS, format_value
from harness.report.charts import CurvePoint, latency_throughput_svg
from harness.report.evidence import measurement_label
from harness.results import LoadPointResult, Measurement, SearchProbe, SearchResult, VariantResult, Window

DEFAULT_STABLE_WINDOWS = 3


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _pct(value: float | None) -> str:
    return "undefined" if value is None else f"{value * 100:.1f} %"


# ---- validity ---------------------------------------------------------------------------------


def validity_cards(variants: Sequence[VariantResult], colors: Mapping[str, str]) -> list[dict[str, Any]]:
    """Per variant: its reported measurement's gated point (VALID/INVALID, reasons, the facts the
    verdict used, the window table), that measurement's other sweep points, and any other
    measurement of the variant (re-measures) collapsed."""
    cards = []
    for variant in variants:
        reported = variant.reported
        if reported is None or reported.gated is None:
            continue
        gated = reported.gated
        others = [m for m in variant.measurements if m is not reported and m.gated is not None]
        cards.append(
            {
                "name": variant.name,
                "color": colors.get(variant.name, "#999"),
                "valid": gated.validity.valid,
                "measurement": measurement_label(reported.number) if len(variant.measurements) > 1 else "",
                "gated": point_validity(gated),
                "others": [point_validity(p) for p in reported.points[:-1]],
                "measurements": [
                    {"label": measurement_label(m.number), "point": point_validity(m.gated)}
                    for m in others
                    if m.gated is not None
                ],
            }
        )
    return cards


def point_validity(point: LoadPointResult) -> dict[str, Any]:
    validity = point.validity
    facts = validity.facts
    windows = validity.windows
    percentile = _num(facts.get("percentile")) or (windows[0].percentile if windows else 95.0)
    stable = int(_num(facts.get("stable_windows")) or DEFAULT_STABLE_WINDOWS)
    limit = _num(facts.get("max_spread"))
    rows = [
        {
            "index": w.index,
            "span": f"{w.start_s:.1f} to {w.end_s:.1f} s",
            "requests": f"{w.requests:,}",
            "ok": f"{w.ok:,}",
            "failures": f"{w.failures:,}",
            "throughput": format_value("throughput_rps", _num(w.throughput_rps)),
            "latency": format_value("latency_p50_ms", _num(w.latency_ms)),
            "checked": i >= len(windows) - stable,  # in the stability check
        }
        for i, w in enumerate(windows)
    ]
    spreads = facts.get("spreads") if isinstance(facts.get("spreads"), Mapping) else {}
    recent = windows[-stable:]
    if spreads:
        tp_spread, lat_spread = _num(spreads.get("throughput_rps")), _num(spreads.get("latency_ms"))
    else:
        tp_spread = _spread([w.throughput_rps for w in recent])
        lat_spread = _spread([w.latency_ms for w in recent])
    broke = _unstable(point, len(windows) >= stable, limit, recent)
    return {
        "label": point.label,
        "valid": validity.valid,
        "reasons": list(validity.reasons),
        "facts": _facts_lines(facts, percentile, point.stopped_reason),
        "percentile": f"p{percentile:g}",
        "windows": rows,
        "spread": {
            "n": min(stable, len(windows)),
            "throughput": _pct(tp_spread),
            "latency": _pct(lat_spread),
            "throughput_bad": "throughput_rps" in broke and _over(tp_spread, limit),
            "latency_bad": "latency_ms" in broke and _over(lat_spread, limit),
            "limit": _pct(limit) if limit is not None else "",
        }
        if windows
        else None,
    }


def _unstable(point: LoadPointResult, enough: bool, limit: float | None, recent: list[Window]) -> set[str]:
    """Which spreads broke the stability rule of an INVALID point: none on a VALID point, none
    when the point was not judged unstable or had too few windows to judge. `facts["unstable"]`,
    when the measurement recorded it, names them; otherwise a latency spread within
    `latency_floor_ms` (when recorded) is excused, as harness.load.validity excuses it."""
    facts = point.validity.facts
    stable = facts.get("stable")
    if not isinstance(stable, bool):  # not recorded: the stability reason says it
        stable = not any(r.startswith("not stable after") for r in point.validity.reasons)
    if point.validity.valid or not enough or limit is None or stable:
        return set()
    named = facts.get("unstable")
    if isinstance(named, list | dict):
        return {str(k) for k in named}
    broke = {"throughput_rps", "latency_ms"}
    floor = _num(facts.get("latency_floor_ms"))
    latencies = [w.latency_ms for w in recent]
    if floor is not None and all(_num(v) is not None for v in latencies):
        values = [float(v) for v in latencies if v is not None]
        if max(values) - min(values) <= floor:
            broke.discard("latency_ms")
    return broke


def _over(spread: float | None, limit: float | None) -> bool:
    return limit is not None and (spread is None or spread > limit)


def _spread(values: list[float | None]) -> float | None:
    """(max - min) / median, as harness.load.validity computes it; None when it cannot be computed."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if len(finite) < 2 or len(finite) != len(values):
        return None
    ordered = sorted(finite)
    mid = len(ordered) // 2
    median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return (max(finite) - min(finite)) / median if median > 0 else None


def _facts_lines(facts: Mapping[str, Any], percentile: float, stopped: str) -> list[str]:
    """The figures behind the verdict, as short phrases a reader can check against the rules."""
    lines = []
    warmup, window_s = _num(facts.get("warmup_s")), _num(facts.get("window_s"))
    if warmup is not None:
        lines.append(f"warm-up {warmup:g} s excluded")
    count = _num(facts.get("windows"))
    if count is not None:
        most = _num(facts.get("max_windows"))
        size = f" of {window_s:g} s" if window_s is not None else ""
        lines.append(f"{count:.0f} window(s){size}" + (f", at most {most:.0f}" if most is not None else ""))
    ok, requests, minimum = (_num(facts.get(k)) for k in ("ok", "requests", "min_requests"))
    if ok is not None and requests is not None:
        need = f"; p{percentile:g} needs ≥ {minimum:,.0f}" if minimum is not None else ""
        lines.append(f"{ok:,.0f} successful of {requests:,.0f} requests{need}")
    error_rate = _num(facts.get("error_rate"))
    if error_rate:
        lines.append(f"error rate {error_rate * 100:.2f} %")
    cpu = _num(facts.get("generator_cpu_percent_max"))
    if cpu is not None:
        lines.append(f"load generator CPU max {cpu:.0f} % of a core")
    late, late_fraction = _num(facts.get("late_count")), _num(facts.get("late_fraction"))
    if late is not None:
        share = f" ({late_fraction * 100:.1f} %)" if late_fraction is not None else ""
        lines.append(f"{late:,.0f} late sends{share}")
    if facts.get("server_restarted"):
        lines.append("server restarted")
    reason = stopped or facts.get("stopped_reason")
    if reason:
        lines.append(f"stopped: {reason}")
    return lines


# ---- sweeps -----------------------------------------------------------------------------------

SWEEP_METRICS = ("throughput_rps", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "error_rate")


def sweep_view(variants: Sequence[VariantResult], colors: Mapping[str, str]) -> dict[str, Any] | None:
    """The table and latency-throughput chart of every variant whose reported measurement ran more
    than one load point."""
    swept = [(v, m) for v in variants if (m := v.reported) is not None and len(m.points) > 1]
    if not swept:
        return None
    groups, series = [], {}
    for variant, measurement in swept:
        points = measurement.points
        rows = []
        for i, point in enumerate(points):
            rows.append(
                {
                    "label": point.label or f"point {i + 1}",
                    "users": f"{point.users:,}",
                    "rate": format_value("throughput_rps", _num(point.rate_rps)),
                    "cells": [format_value(m, _num(point.metrics.get(m))) for m in SWEEP_METRICS],
                    "late": format_value("late_fraction", _num(point.metrics.get("late_fraction"))),
                    "valid": point.validity.valid,
                    "reasons": "; ".join(point.validity.reasons),
                    "gated": i == len(points) - 1,
                }
            )
        groups.append(
            {
                "name": variant.name,
                "measurement": _reported_label(variant, measurement),
                "color": colors.get(variant.name, "#999"),
                "rows": rows,
            }
        )
        series[variant.name] = [c for c in map(_curve_point, points) if c is not None]
    all_points = [p for _, m in swept for p in m.points]
    return {
        "groups": groups,
        "headers": [METRICS[m].title.replace("latency ", "") for m in SWEEP_METRICS],
        "has_rate": any(_num(p.rate_rps) is not None for p in all_points),
        "has_late": any("late_fraction" in p.metrics for p in all_points),
        "svg": latency_throughput_svg(series, colors=colors),
    }


def _reported_label(variant: VariantResult, measurement: Measurement) -> str:
    return measurement_label(measurement.number) if len(variant.measurements) > 1 else ""


def _curve_point(point: LoadPointResult) -> CurvePoint | None:
    throughput, p95 = _num(point.metrics.get("throughput_rps")), _num(point.metrics.get("latency_p95_ms"))
    if throughput is None or p95 is None:
        return None
    return CurvePoint(throughput, p95, point.label, point.validity.valid)


# ---- SLO search -------------------------------------------------------------------------------


def search_views(variants: Sequence[VariantResult], colors: Mapping[str, str]) -> list[dict[str, Any]]:
    """The max_rps_at_slo result and every probe of the binary search, per variant."""
    views = []
    for variant in variants:
        reported = variant.reported
        search = reported.search if reported is not None else None
        if search is None:
            continue
        views.append(
            {
                "name": variant.name,
                "color": colors.get(variant.name, "#999"),
                "found": _num(search.max_rps_at_slo) is not None,
                "result": _search_line(search),
                "value_header": "users" if search.over == "users" else "target rate",
                "percentile": f"p{search.percentile:g}",
                "rows": [_probe_row(p, search) for p in search.probes],
            }
        )
    return views


def _search_line(search: SearchResult) -> str:
    found = _num(search.max_rps_at_slo)
    rule = f"p{search.percentile:g} ≤ {search.slo_ms:g} ms"
    over = f", searching over {search.over}" if search.over else ""
    if found is None:
        return f"no probed load kept {rule}{over}"
    return f"{format_value('max_rps_at_slo', found)} with {rule}{over}"


def _probe_row(probe: SearchProbe, search: SearchResult) -> dict[str, Any]:
    over = probe.over or search.over
    value = f"{probe.value:g}" if over == "users" else format_value("throughput_rps", _num(probe.value))
    return {
        "label": probe.label,
        "value": value,
        "requests": f"{probe.request_count:,}",
        "throughput": format_value("throughput_rps", _num(probe.throughput_rps)),
        "latency": format_value("latency_p95_ms", _num(probe.percentile_ms)),
        "error_rate": format_value("error_rate", _num(probe.error_rate)),
        "passed": probe.passed,
    }
