"""Server-side figures from the server's own Prometheus endpoint, per request over a window.

TorchServe (metrics_mode=prometheus, its metrics API `/metrics`) and TF Serving
(`/monitoring/prometheus/metrics`) publish cumulative counters and histogram sums, not
per-request values. A window is scraped at its start and at its end; the differences divided by
the difference in request count are the per-request means. A scrape that fails or a metric the
server does not publish is noted and left out, never raised: server metrics add detail to a
run, they never decide whether it worked.

Names (the same for both servers, so reports and `latency_breakdown` need no per-server code):
- server_requests: requests the server counted in the window.
- server_request_ms: mean time the server spent on a request. TorchServe:
  ts_inference_latency_microseconds (its frontend, from accepting the request to writing the
  response; includes queueing). TF Serving: :tensorflow:serving:request_latency.
- server_queue_ms (TorchServe only): ts_queue_latency_microseconds, the wait for a worker.
- server_inference_ms: TorchServe: request minus queue (batch assembly, worker round trip, our
  handler). TF Serving: :tensorflow:serving:runtime_latency, the TensorFlow session run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from harness.errors import RunError

TORCHSERVE = "torchserve"
TFSERVING = "tfserving"
FORMATS = (TORCHSERVE, TFSERVING)

# TorchServe 0.12 frontend counters (RestJob.java); counters are keyed without "_total"
TS_REQUESTS = "ts_inference_requests"
TS_REQUEST_US = "ts_inference_latency_microseconds"
TS_QUEUE_US = "ts_queue_latency_microseconds"
# TF Serving (servables/tensorflow/util.cc), exported with "/" replaced by ":"
TF_REQUESTS = ":tensorflow:serving:request_count"
TF_REQUEST_US = ":tensorflow:serving:request_latency"
TF_RUNTIME_US = ":tensorflow:serving:runtime_latency"
# a client/server request-count mismatch beyond this is worth a note (in-flight requests at the
# window edges account for a few)
_COUNT_TOLERANCE = 0.05


class ServerMetricsError(RunError):
    """The metrics endpoint could not be read or parsed."""


def _series_key(name: str, labels: Mapping[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def parse_prometheus(text: str) -> dict[str, float]:
    """Prometheus text as a flat map: each metric's total over its label sets under its bare name,
    and each labelled series under `name{label="value",...}` (labels sorted).

    Counters are keyed without `_total` (prometheus_client's parser adds that suffix to counter
    samples whatever the server wrote); histograms and summaries give `<name>_sum` and
    `<name>_count`; bucket and `_created` samples are dropped. ValueError on malformed text.
    """
    flat: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name
            if name.endswith(("_bucket", "_created")) or "quantile" in sample.labels:
                continue
            if family.type == "counter":
                name = family.name.removesuffix("_total")
            flat[name] = flat.get(name, 0.0) + float(sample.value)
            if sample.labels:
                flat[_series_key(name, sample.labels)] = float(sample.value)
    return flat


def scrape(url: str, timeout: float = 5.0, *, session: requests.Session | None = None) -> dict[str, float]:
    """GET `url` and parse it; ServerMetricsError (one line) on any failure."""
    http = session or requests.Session()
    http.trust_env = False  # loopback servers: never through an HTTP(S)_PROXY
    try:
        resp = http.get(url, timeout=timeout)
    except requests.RequestException as exc:
        raise ServerMetricsError(f"could not scrape {url}: {exc}") from exc
    finally:
        if session is None:
            http.close()
    if resp.status_code != 200:
        raise ServerMetricsError(f"could not scrape {url}: HTTP {resp.status_code}")
    try:
        return parse_prometheus(resp.text)
    except ValueError as exc:
        raise ServerMetricsError(f"{url} did not answer Prometheus text: {exc}") from exc


def _delta(
    before: Mapping[str, float], after: Mapping[str, float], name: str, notes: list[str]
) -> float | None:
    if name not in before or name not in after:
        notes.append(f"server metric {name} not published")
        return None
    change = after[name] - before[name]
    if change < 0:
        notes.append(f"server metric {name} went backwards (server restarted during the window?)")
        return None
    return change


def _per_request_ms(total_us: float | None, count: float | None) -> float | None:
    if total_us is None or not count:
        return None
    return total_us / count / 1000.0


def window_summary(
    fmt: str, before: Mapping[str, float], after: Mapping[str, float], client_requests: int | None = None
) -> tuple[dict[str, float], list[str]]:
    """Per-request means from two scrapes (pure); the figures and notes on what is missing."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown server metrics format {fmt!r}; known: {', '.join(FORMATS)}")
    notes: list[str] = []
    out: dict[str, float] = {}
    if fmt == TORCHSERVE:
        count = _delta(before, after, TS_REQUESTS, notes)
        request_ms = _per_request_ms(_delta(before, after, TS_REQUEST_US, notes), count)
        queue_ms = _per_request_ms(_delta(before, after, TS_QUEUE_US, notes), count)
        inference_ms = request_ms - queue_ms if request_ms is not None and queue_ms is not None else None
    else:
        count = _delta(before, after, TF_REQUESTS, notes)
        request_count = _delta(before, after, f"{TF_REQUEST_US}_count", notes)
        runtime_count = _delta(before, after, f"{TF_RUNTIME_US}_count", notes)
        request_ms = _per_request_ms(_delta(before, after, f"{TF_REQUEST_US}_sum", notes), request_count)
        inference_ms = _per_request_ms(_delta(before, after, f"{TF_RUNTIME_US}_sum", notes), runtime_count)
        queue_ms = None
        if count is None:
            count = request_count
        failed = _tf_failed(before, after)
        if failed is not None:
            out["server_failed_requests"] = failed
    if count is not None:
        out["server_requests"] = count
        if count == 0:
            notes.append("the server counted no requests in the window")
    for name, value in (
        ("server_request_ms", request_ms),
        ("server_queue_ms", queue_ms),
        ("server_inference_ms", inference_ms),
    ):
        if value is not None:
            out[name] = value
    if client_requests is not None and count is not None:
        gap = abs(count - client_requests)
        if gap > max(2.0, _COUNT_TOLERANCE * client_requests):
            notes.append(
                f"the server counted {count:.0f} requests, the client sent {client_requests}: "
                "the per-request means may cover different requests"
            )
    return out, notes


def _tf_failed(before: Mapping[str, float], after: Mapping[str, float]) -> float | None:
    """Requests TF Serving answered with a status other than OK, from the labelled series."""
    prefix = TF_REQUESTS + "{"
    keys = [k for k in after if k.startswith(prefix) and 'status="OK"' not in k]
    if not any(k.startswith(prefix) for k in after):
        return None
    return sum(after[k] - before.get(k, 0.0) for k in keys)


class ServerMetricsWindow:
    """Scrape at `start()` and `stop()`; `summary()` gives the per-request means in between.

    Never raises on a scrape: a failure becomes a note in `notes` and the figures are omitted.
    """

    def __init__(self, url: str, fmt: str, *, timeout_s: float = 5.0) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown server metrics format {fmt!r}; known: {', '.join(FORMATS)}")
        self.url = url
        self.format = fmt
        self.timeout_s = timeout_s
        self.before: dict[str, float] | None = None
        self.after: dict[str, float] | None = None
        self.notes: list[str] = []

    def _scrape(self, when: str) -> dict[str, float] | None:
        try:
            return scrape(self.url, self.timeout_s)
        except ServerMetricsError as exc:
            self.notes.append(f"{when}: {exc}")
            return None

    def start(self) -> ServerMetricsWindow:
        self.before = self._scrape("window start")
        return self

    def stop(self) -> None:
        self.after = self._scrape("window end")

    def summary(self, client_requests: int | None = None) -> dict[str, float]:
        """Per-request means over the window; {} when either scrape failed (see `notes`)."""
        if self.before is None or self.after is None:
            return {}
        figures, notes = window_summary(self.format, self.before, self.after, client_requests)
        self.notes.extend(n for n in notes if n not in self.notes)
        return figures


_PARTS = (
    ("queue", "server_queue_ms", "queueing in the server"),
    ("inference", "server_inference_ms", "inference"),
)


def latency_breakdown(client_mean_ms: float, server_metrics: Mapping[str, float]) -> dict[str, Any]:
    """Where the client's mean latency went: server queueing, inference, other server time, and
    the rest outside the server (network stack, HTTP, serialization, the client itself).

    Means add up where percentiles do not, so this works on the client mean. Without server
    figures the result says so and holds only the client mean.
    """
    result: dict[str, Any] = {"client_mean_ms": client_mean_ms}
    parts = {key: server_metrics.get(metric) for key, metric, _ in _PARTS}
    server_ms = server_metrics.get("server_request_ms")
    known = [v for v in parts.values() if v is not None]
    if server_ms is None and not known:
        result["text"] = "no server-side figures: the split of the client latency is unknown"
        return result
    if server_ms is None:
        server_ms = sum(known)
    result["server_request_ms"] = server_ms
    for key, value in parts.items():
        result[f"{key}_ms"] = value
    result["server_other_ms"] = max(0.0, server_ms - sum(known)) if known else None
    result["outside_server_ms"] = client_mean_ms - server_ms
    shares: dict[str, float] = {}
    if client_mean_ms > 0:
        for key in ("queue", "inference", "server_other", "outside_server"):
            value = result[f"{key}_ms"]
            if value is not None:
                shares[key] = value / client_mean_ms
    result["shares"] = shares
    result["largest"] = max(shares, key=lambda k: shares[k]) if shares else None
    described = [
        f"{result[f'{key}_ms']:.2f} ms {label}" for key, _, label in _PARTS if result[f"{key}_ms"] is not None
    ]
    if result["server_other_ms"]:  # TorchServe's parts add up to its request time exactly
        described.append(f"{result['server_other_ms']:.2f} ms other server time")
    described.append(
        f"{result['outside_server_ms']:.2f} ms outside the server (network stack, HTTP, serialization)"
    )
    result["text"] = f"of {client_mean_ms:.2f} ms mean at the client: " + ", ".join(described)
    if result["outside_server_ms"] < 0:
        result["text"] += (
            " - the server reports more time than the client saw, so the two windows cover different requests"
        )
    return result
