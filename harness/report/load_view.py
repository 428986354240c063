"""The report's view of how load was measured: validity per window, sweeps and the SLO search.

Reads `VariantResult.details` as written by `harness.measurement` ("validity", "load_points",
"search") always through `.get`: a key that is absent hides its part of the report instead of
breaking it. Returns plain dicts and strings; the template lays them out.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from harness.metrics.catalog import METRICS, format_value
from harness.report.charts import CurvePoint, latency_throughput_svg
from harness.report.evidence import as_mapping, validity_of
from harness.results import VariantResult

_WINDOW_LATENCY = re.compile(r"^latency_p(\d+(?:\.\d+)?)_ms$")
DEFAULT_STABLE_WINDOWS = 3


def _points(variant: VariantResult) -> list[Mapping[str, Any]]:
    points = (variant.details or {}).get("load_points")
    return [p for p in points if isinstance(p, Mapping)] if isinstance(points, list) else []


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _pct(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "undefined"
    return f"{value * 100:.1f} %"


# ---- validity ---------------------------------------------------------------------------------


def validity_cards(variants: Sequence[VariantResult], colors: Mapping[str, str]) -> list[dict[str, Any]]:
    """Per variant: VALID/INVALID, its reasons, the facts the verdict used, and the window table of
    the gated load point (the last one); the other points of a sweep follow."""
    cards = []
    for variant in variants:
        validity = validity_of(variant)
        points = _points(variant)
        if validity is None and not points:
            continue
        gated = _point_validity(points[-1]) if points else None
        cards.append(
            {
                "name": variant.name,
                "color": colors.get(variant.name, "#999"),
                "valid": validity.valid if validity else gated and gated["valid"],
                "reasons": validity.reasons if validity else (gated or {}).get("reasons", []),
                "gated": gated,
                "others": [_point_validity(p) for p in points[:-1]],
            }
        )
    return cards


def _point_validity(point: Mapping[str, Any]) -> dict[str, Any]:
    facts = as_mapping(point.get("validity_facts"))
    windows = [w for w in point.get("windows") or [] if isinstance(w, Mapping)]
    percentile = _num(facts.get("percentile")) or _window_percentile(windows) or 95.0
    stable = int(_num(facts.get("stable_windows")) or DEFAULT_STABLE_WINDOWS)
    limit = _num(facts.get("max_spread"))
    rows = []
    for i, window in enumerate(windows):
        start, end = _num(window.get("start_s")), _num(window.get("end_s"))
        rows.append(
            {
                "index": window.get("index", i),
                "span": f"{start:.1f} to {end:.1f} s" if start is not None and end is not None else "-",
                "requests": _count(window.get("requests")),
                "ok": _count(window.get("ok")),
                "failures": _count(window.get("failures")),
                "throughput": format_value("throughput_rps", _num(window.get("throughput_rps"))),
                "latency": format_value("latency_p50_ms", _window_latency(window)),
                "checked": i >= len(windows) - stable,  # in the stability check
            }
        )
    spreads = as_mapping(facts.get("spreads"))
    recent = windows[-stable:]
    tp_spread = (
        _num(spreads.get("throughput_rps"))
        if spreads
        else _spread([_num(w.get("throughput_rps")) for w in recent])
    )
    lat_spread = _num(spreads.get("latency_ms")) if spreads else _spread([_window_latency(w) for w in recent])
    return {
        "label": str(point.get("label") or ""),
        "valid": bool(point.get("valid", True)),
        "reasons": [str(r) for r in point.get("validity_reasons") or []],
        "facts": _facts_lines(facts, percentile, point.get("stopped_reason")),
        "percentile": f"p{percentile:g}",
        "windows": rows,
        "spread": {
            "n": min(stable, len(windows)),
            "throughput": _pct(tp_spread),
            "latency": _pct(lat_spread),
            "throughput_bad": _over(tp_spread, limit),
            "latency_bad": _over(lat_spread, limit),
            "limit": _pct(limit) if limit is not None else "",
        }
        if windows
        else None,
    }


def _over(spread: float | None, limit: float | None) -> bool:
    return limit is not None and (spread is None or not math.isfinite(spread) or spread > limit)


def _spread(values: list[float | None]) -> float | None:
    """(max - min) / median, as harness.load.validity computes it; None when it cannot be computed."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if len(finite) < 2 or len(finite) != len(values):
        return None
    median = statistics.median(finite)
    return (max(finite) - min(finite)) / median if median > 0 else None


def _window_percentile(windows: list[Mapping[str, Any]]) -> float | None:
    for window in windows:
        if _num(window.get("percentile")) is not None:
            return _num(window.get("percentile"))
        for key in window:
            match = _WINDOW_LATENCY.match(str(key))
            if match:
                return float(match.group(1))
    return None


def _window_latency(window: Mapping[str, Any]) -> float | None:
    if "latency_ms" in window:
        return _num(window.get("latency_ms"))
    key = next((k for k in window if _WINDOW_LATENCY.match(str(k))), None)
    return _num(window.get(key)) if key else None


def _count(value: Any) -> str:
    number = _num(value)
    return "-" if number is None else f"{number:,.0f}"


def _facts_lines(facts: Mapping[str, Any], percentile: float, stopped: Any) -> list[str]:
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
    """The table and latency-throughput chart of every variant measured at more than one load."""
    swept = [(v, _points(v)) for v in variants if len(_points(v)) > 1]
    if not swept:
        return None
    groups, series = [], {}
    for variant, points in swept:
        rows = []
        for i, point in enumerate(points):
            metrics = as_mapping(point.get("metrics"))
            rows.append(
                {
                    "label": str(point.get("label") or f"point {i + 1}"),
                    "users": _count(point.get("users")),
                    "rate": format_value("throughput_rps", _num(point.get("rate_rps"))),
                    "cells": [format_value(m, _num(metrics.get(m))) for m in SWEEP_METRICS],
                    "late": format_value("late_fraction", _num(metrics.get("late_fraction"))),
                    "valid": bool(point.get("valid", True)),
                    "reasons": "; ".join(str(r) for r in point.get("validity_reasons") or []),
                    "gated": i == len(points) - 1,
                }
            )
        groups.append({"name": variant.name, "color": colors.get(variant.name, "#999"), "rows": rows})
        series[variant.name] = [c for c in map(_curve_point, points) if c is not None]
    all_points = [p for _, points in swept for p in points]
    return {
        "groups": groups,
        "headers": [METRICS[m].title.replace("latency ", "") for m in SWEEP_METRICS],
        "has_rate": any(_num(p.get("rate_rps")) is not None for p in all_points),
        "has_late": any(
            isinstance(p.get("metrics"), Mapping) and "late_fraction" in p["metrics"] for p in all_points
        ),
        "svg": latency_throughput_svg(series, colors=colors),
    }


def _curve_point(point: Mapping[str, Any]) -> CurvePoint | None:
    metrics = as_mapping(point.get("metrics"))
    throughput, p95 = _num(metrics.get("throughput_rps")), _num(metrics.get("latency_p95_ms"))
    if throughput is None or p95 is None:
        return None
    return CurvePoint(throughput, p95, str(point.get("label") or ""), bool(point.get("valid", True)))


# ---- SLO search -------------------------------------------------------------------------------


def search_views(variants: Sequence[VariantResult], colors: Mapping[str, str]) -> list[dict[str, Any]]:
    """The max_rps_at_slo result and every probe of the binary search, per variant."""
    views = []
    for variant in variants:
        search = (variant.details or {}).get("search")
        if not isinstance(search, Mapping):
            continue
        slo, q = _num(search.get("slo_ms")), _num(search.get("percentile")) or 95.0
        found = _num(search.get("max_rps_at_slo"))
        rule = f"p{q:g} ≤ {slo:g} ms" if slo is not None else f"p{q:g} under the SLO"
        over = f", searching over {search.get('over')}" if search.get("over") else ""
        result = (
            f"{format_value('max_rps_at_slo', found)} with {rule}{over}"
            if found is not None
            else f"no probed load kept {rule}{over}"
        )
        probes = [p for p in search.get("probes") or [] if isinstance(p, Mapping)]
        # over and percentile are the same for every probe and already in the result line
        columns = [k for k in dict.fromkeys(k for p in probes for k in p) if k not in ("over", "percentile")]
        headers = {
            "value": "users" if search.get("over") == "users" else "target rate",
            "percentile_ms": f"p{q:g}",
            "passed": "within SLO",
        }
        views.append(
            {
                "name": variant.name,
                "color": colors.get(variant.name, "#999"),
                "found": found is not None,
                "result": result,
                "columns": [headers.get(k) or (METRICS[k].title if k in METRICS else k) for k in columns],
                "rows": [[_probe_cell(k, p.get(k), search.get("over")) for k in columns] for p in probes],
            }
        )
    return views


def _probe_cell(key: str, value: Any, over: Any) -> tuple[str, str]:
    """(text, css class) of one probe field: booleans become yes/no tags, known metrics get units."""
    if isinstance(value, bool):
        return ("yes" if value else "no", "pass" if value else "fail")
    number = _num(value)
    if number is None:
        return ("-" if value is None else str(value), "")
    if key == "percentile_ms":
        return (format_value("latency_p95_ms", number), "")
    if key == "value":
        return (f"{number:g}" if over == "users" else format_value("throughput_rps", number), "")
    if key in METRICS:
        return (format_value(key, number), "")
    return (f"{number:,.0f}" if isinstance(value, int) else f"{number:.4g}", "")
