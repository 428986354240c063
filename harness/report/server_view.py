"""The report's view of where a request's time went: the client's latency beside the server's own
figures (metrics endpoint averages, process CPU and memory), and the remainder neither explains.

Reads the server_* metrics of each variant's reported measurement (`VariantResult.metrics`); a
variant without them is left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.metrics.catalog import METRICS, format_value
from harness.placement import cpulist
from harness.results import VariantResult


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


SERVER_TIMES = ("server_request_ms", "server_inference_ms", "server_queue_ms")


def server_views(variants: Sequence[VariantResult], colors: Mapping[str, str]) -> list[dict[str, Any]]:
    """Client latency beside the server's own figures, and the time neither side explains."""
    views = []
    for variant in variants:
        m = variant.metrics
        if not any(_num(m.get(k)) is not None for k in SERVER_TIMES):
            continue
        mean, p95 = _num(m.get("latency_mean_ms")), _num(m.get("latency_p95_ms"))
        request, inference, queue = (_num(m.get(k)) for k in SERVER_TIMES)
        server = request if request is not None else (inference or 0.0) + (queue or 0.0)
        remainder = None if mean is None else mean - server
        rows = [
            ("client mean", format_value("latency_mean_ms", mean)),
            ("client p95", format_value("latency_p95_ms", p95)),
        ]
        rows += [
            (METRICS[k].title, format_value(k, _num(m.get(k))))
            for k in ("service_latency_p95_ms", *SERVER_TIMES, "server_cpu_percent", "server_rss_mb")
            if _num(m.get(k)) is not None
        ]
        if remainder is not None:
            rows.append(("network stack + HTTP + serialization", format_value("latency_mean_ms", remainder)))
        placed = placement_text(variant)
        if placed:
            rows.append(("CPU placement", placed))
        views.append(
            {
                "name": variant.name,
                "color": colors.get(variant.name, "#999"),
                "rows": rows,
                "segments": _segments(mean, request, inference, queue, remainder),
                "sentence": _where_time_went(mean, server, request, inference, queue, remainder),
                "open_loop": _num(m.get("late_fraction")) is not None,
            }
        )
    return views


def _parts(
    request: float | None, inference: float | None, queue: float | None, remainder: float | None
) -> list[tuple[str, str, float]]:
    """(label, css class, ms) of each share of the client's mean, largest server parts first."""
    parts = []
    if queue is not None:
        parts.append(("queueing in the server", "queue", queue))
    if inference is not None:
        parts.append(("inference", "inference", inference))
    if request is not None:
        other = request - (inference or 0.0) - (queue or 0.0)
        label = "rest of the server's request handling" if (inference or queue) else "server request handling"
        if other > 0:
            parts.append((label, "server", other))
    if remainder is not None and remainder > 0:
        parts.append(("network stack + HTTP + serialization", "network", remainder))
    return parts


def _segments(
    mean: float | None,
    request: float | None,
    inference: float | None,
    queue: float | None,
    remainder: float | None,
) -> list[dict[str, Any]]:
    parts = _parts(request, inference, queue, remainder)
    total = sum(ms for _, _, ms in parts)
    if mean is None or total <= 0:
        return []
    scale = max(mean, total)
    return [
        {"label": label, "cls": cls, "text": format_value("latency_mean_ms", ms), "share": 100 * ms / scale}
        for label, cls, ms in parts
        if ms > 0
    ]


def _where_time_went(
    mean: float | None,
    server: float,
    request: float | None,
    inference: float | None,
    queue: float | None,
    remainder: float | None,
) -> str:
    def ms(value: float) -> str:
        return format_value("latency_mean_ms", value)

    if mean is None or mean <= 0:
        return f"The server reports {ms(server)} per request; the client measured no latency to compare with."
    if remainder is not None and remainder < -0.05 * mean:
        return (
            f"The server reports {ms(server)} per request, more than the {ms(mean)} the client measured on "
            "average: the two count different requests (e.g. warm-up) or clocks, so no split is shown."
        )
    inside = [f"inference {ms(inference)}"] if inference is not None else []
    inside += [f"queueing {ms(queue)}"] if queue is not None else []
    # "accounts for 2.1 ms: inference 2.1 ms" would say the same thing twice
    detail = f": {', '.join(inside)}" if inside and (request is not None or len(inside) > 1) else ""
    text = (
        f"Of the {ms(mean)} the client waited on average, the server accounts for {ms(server)} "
        f"({server / mean * 100:.0f} %){detail}."
    )
    rest = max(remainder or 0.0, 0.0)
    text += (
        f" The remaining {ms(rest)} ({rest / mean * 100:.0f} %) went to the network stack, HTTP and "
        "serialization."
    )
    parts = _parts(request, inference, queue, remainder)
    if parts:
        label, _, largest = max(parts, key=lambda part: part[2])
        text += f" Most of the time went to {label} ({largest / mean * 100:.0f} %)."
    return text


def placement_text(variant: VariantResult) -> str:
    """Where the gated point's server tree and load processes could run, e.g. "server CPU 0,
    load CPU 1 (ran on 1)"; empty when not recorded."""
    gated = variant.measurements[-1].gated if variant.measurements else None
    placement = gated.placement if gated is not None else {}
    server, load = placement.get("server_cpus"), placement.get("load_cpus")
    if not server and not load:
        return ""
    text = f"server CPU {cpulist(server) if server else '?'}, load CPU {cpulist(load) if load else '?'}"
    used = placement.get("load_cpus_used")
    return text + (f" (ran on {cpulist(used)})" if used else "")
