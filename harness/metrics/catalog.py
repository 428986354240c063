"""The metrics a run can report: name (with unit), unit, and whether lower or higher is better.

Gates, baselines and reports all look metrics up here, so a gate on an unknown name is caught at
validation time and every number is shown with its unit. Pure data: importing this is instant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Better = Literal["lower", "higher"]


@dataclass(frozen=True)
class MetricSpec:
    """One metric. `better` decides which direction of change is a regression."""

    name: str
    unit: str  # "ms", "req/s", "fraction", "bytes", "count", "%", "MiB"
    better: Better
    description: str
    label: str = ""  # short column/row label for reports; defaults to the name

    @property
    def title(self) -> str:
        return self.label or self.name

    def is_worse(self, new: float, old: float) -> bool:
        """True if `new` is strictly worse than `old` for this metric."""
        return new > old if self.better == "lower" else new < old


def _spec(name: str, unit: str, better: Better, description: str, label: str) -> MetricSpec:
    return MetricSpec(name=name, unit=unit, better=better, description=description, label=label)


_LATENCY = "client-side request latency over the measured window (successful requests, warm-up excluded)"

METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        _spec("latency_p50_ms", "ms", "lower", f"Median {_LATENCY}.", "latency p50"),
        _spec("latency_p90_ms", "ms", "lower", f"90th percentile {_LATENCY}.", "latency p90"),
        _spec("latency_p95_ms", "ms", "lower", f"95th percentile {_LATENCY}.", "latency p95"),
        _spec("latency_p99_ms", "ms", "lower", f"99th percentile {_LATENCY}.", "latency p99"),
        _spec("latency_max_ms", "ms", "lower", f"Slowest {_LATENCY}.", "latency max"),
        _spec("latency_mean_ms", "ms", "lower", f"Mean {_LATENCY}.", "latency mean"),
        _spec(
            "throughput_rps",
            "req/s",
            "higher",
            "Successful requests per second over the measured window.",
            "throughput",
        ),
        _spec(
            "error_rate",
            "fraction",
            "lower",
            "Failed requests / all requests in the measured window (0..1).",
            "error rate",
        ),
        _spec(
            "accuracy",
            "fraction",
            "higher",
            "Top-1 accuracy of the served artifact, measured through the serving target (0..1).",
            "accuracy (served)",
        ),
        _spec(
            "accuracy_inprocess",
            "fraction",
            "higher",
            "Top-1 accuracy of the exported artifact loaded in-process (0..1).",
            "accuracy (in-process)",
        ),
        _spec(
            "accuracy_drop_vs_reference",
            "fraction",
            "lower",
            "Served accuracy of the reference variant minus this variant's, in the same run: what "
            "the compression cost (0 for the reference itself; negative if it gained).",
            "accuracy drop vs reference",
        ),
        _spec(
            "model_size_bytes",
            "bytes",
            "lower",
            "Size of the served artifact (file or folder).",
            "model size",
        ),
        _spec(
            "model_size_gzip_bytes",
            "bytes",
            "lower",
            "Size of the served artifact after gzip: what pruning saves on the wire and on disk.",
            "model size (gzip)",
        ),
        _spec(
            "sparsity", "fraction", "higher", "Fraction of weights that are exactly zero (0..1).", "sparsity"
        ),
        _spec("param_count", "count", "lower", "Number of parameters in the model.", "parameters"),
        _spec(
            "client_cpu_percent",
            "%",
            "lower",
            "CPU used by the load generator, in percent of one core; near 100 means the client, "
            "not the server, may be the bottleneck.",
            "client CPU",
        ),
        _spec(
            "max_rps_at_slo",
            "req/s",
            "higher",
            "Highest measured throughput whose latency percentile stayed under the search's SLO.",
            "max req/s at SLO",
        ),
        _spec(
            "late_fraction",
            "fraction",
            "lower",
            "Open loop: fraction of requests sent later than scheduled by more than validity.late_ms.",
            "late sends",
        ),
        _spec(
            "service_latency_p95_ms",
            "ms",
            "lower",
            "Open loop: 95th percentile from the actual send (without the client-side queueing that "
            "latency_p95_ms, counted from the scheduled send, includes).",
            "service p95",
        ),
        _spec(
            "server_inference_ms",
            "ms",
            "lower",
            "Server-reported model inference time per request, from its metrics endpoint.",
            "server inference",
        ),
        _spec(
            "server_queue_ms",
            "ms",
            "lower",
            "Server-reported time a request waited in the server's queue, per request.",
            "server queue",
        ),
        _spec(
            "server_request_ms",
            "ms",
            "lower",
            "Server-reported whole request time per request (TF Serving request_latency).",
            "server request",
        ),
        _spec(
            "server_cpu_percent",
            "%",
            "lower",
            "CPU of the server's process tree during the window, in percent of one core.",
            "server CPU",
        ),
        _spec(
            "server_rss_mb",
            "MiB",
            "lower",
            "Largest resident memory of the server's process tree during the window.",
            "server RSS",
        ),
        _spec(
            "request_count",
            "count",
            "higher",
            "Requests started in the measured window (successful + failed).",
            "requests",
        ),
    )
}

LATENCY_METRICS: tuple[str, ...] = tuple(n for n in METRICS if n.startswith("latency_"))


def get_metric(name: str) -> MetricSpec:
    """The spec of `name`; ValueError listing the known names if there is none."""
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; known metrics: {', '.join(METRICS)}") from None


def format_value(name: str, value: float | None) -> str:
    """A short human rendering with the unit: '3.41 ms', '1.2 MiB', '97.5 %', '12,345'."""
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    spec = METRICS.get(name)
    unit = spec.unit if spec else ""
    if unit == "ms":
        return f"{value:.2f} ms" if abs(value) < 1000 else f"{value:,.0f} ms"
    if unit == "req/s":
        return f"{value:,.1f} req/s" if abs(value) < 1000 else f"{value:,.0f} req/s"
    if unit == "fraction":
        return f"{value * 100:.2f} %"
    if unit == "%":
        return f"{value:.1f} %"
    if unit == "bytes":
        return format_bytes(value)
    if unit == "count":
        return f"{value:,.0f}"
    if unit == "MiB":
        return f"{value:,.1f} MiB"
    return f"{value:.4g}"


def format_bytes(value: float) -> str:
    """Binary units, since model files are compared with `ls -lh`: '812 B', '33.4 KiB', '1.20 MiB'."""
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            if unit == "B":
                return f"{size:.0f} B"
            return f"{size:.1f} {unit}" if abs(size) >= 10 else f"{size:.2f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
