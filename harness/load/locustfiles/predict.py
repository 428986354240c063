"""Locust user that posts prediction batches and records every request's exact latency.

Runs inside the Locust subprocess started by harness.load.locust_driver.LocustDriver, so it
imports nothing from the harness. Configuration comes from environment variables:

  HARNESS_LOAD_PATH         request path, e.g. /predictions/model
  HARNESS_LOAD_HEADERS      JSON object of extra request headers
  HARNESS_LOAD_INSTANCES    JSON file holding a list of example rows
  HARNESS_LOAD_BATCH        rows per request (the next rows, cycling over the file)
  HARNESS_LOAD_TIMEOUT_S    per-request timeout; slower requests are failures
  HARNESS_LOAD_SAMPLES      CSV written at test stop: start_s,latency_ms,outcome,message
  HARNESS_LOAD_META         JSON written at test stop: test start (epoch s), spawn and stop times

Locust's statistics round response times to whole milliseconds, so every request's exact
latency and start time are kept here, in memory, and written when the test stops.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import socket
import time

import gevent
from gevent.timeout import Timeout as GeventTimeout
from locust import FastHttpUser, events, task

PATH = os.environ["HARNESS_LOAD_PATH"]
HEADERS = {"Content-Type": "application/json", **json.loads(os.environ.get("HARNESS_LOAD_HEADERS") or "{}")}
BATCH = int(os.environ["HARNESS_LOAD_BATCH"])
TIMEOUT_S = float(os.environ["HARNESS_LOAD_TIMEOUT_S"])
SAMPLES_PATH = os.environ["HARNESS_LOAD_SAMPLES"]
META_PATH = os.environ["HARNESS_LOAD_META"]
# After a refused or reset connection a user pauses briefly, so that a dead server does not
# turn the generator into a busy loop writing millions of identical failures.
CONNECTION_BACKOFF_S = 0.05
MAX_MESSAGE_CHARS = 200

with open(os.environ["HARNESS_LOAD_INSTANCES"]) as _fh:
    # each row is serialised once; a request body is a join of row texts
    ROWS = [json.dumps(row) for row in json.load(_fh)]
if not ROWS:
    raise SystemExit("HARNESS_LOAD_INSTANCES holds no rows")

_cursor = itertools.count()  # shared by all users: gevent runs them on one thread
_samples: list[tuple[float, float, str, str]] = []


class _Clock:
    """Test start (perf_counter and epoch) and, relative to it, when spawning and the test ended."""

    start = time.perf_counter()
    start_epoch = time.time()
    spawned: float | None = None
    stop: float | None = None


def _next_body() -> str:
    first = next(_cursor) * BATCH
    rows = (ROWS[(first + k) % len(ROWS)] for k in range(BATCH))
    return '{"instances": [' + ",".join(rows) + "]}"


def _classify(resp, latency_ms: float) -> tuple[str, str]:
    """("ok", "") or (failure class, message) for one finished request."""
    error = getattr(resp, "error", None)
    status = getattr(resp, "status_code", 0) or 0
    if status and not 200 <= status < 300:
        return "http_status", f"HTTP {status}: {_text(resp)}"
    if error is not None:
        # geventhttpclient wraps errors of non-retried requests (every POST) in RetriesExceeded
        error = getattr(error, "original", None) or error
        if isinstance(error, GeventTimeout | socket.timeout | TimeoutError):
            return "timeout", f"{type(error).__name__}: {error} (limit {TIMEOUT_S:g}s)"
        return "connection", f"{type(error).__name__}: {error}"
    if latency_ms > TIMEOUT_S * 1000.0:
        return "timeout", f"took {latency_ms:.1f} ms (limit {TIMEOUT_S:g}s)"
    if status != 200:
        return "bad_payload", f"HTTP {status} is not 200: {_text(resp)}"
    try:
        payload = json.loads(resp.content)
    except (TypeError, ValueError) as exc:
        return "bad_payload", f"response is not JSON ({exc}): {_text(resp)}"
    predictions = payload.get("predictions") if isinstance(payload, dict) else None
    if not isinstance(predictions, list):
        return "bad_payload", f"no 'predictions' list in response: {_text(resp)}"
    if len(predictions) != BATCH:
        return "bad_payload", f"{len(predictions)} predictions for {BATCH} instances"
    return "ok", ""


def _text(resp) -> str:
    content = getattr(resp, "content", None) or b""
    return content[:MAX_MESSAGE_CHARS].decode("utf-8", errors="replace")


class PredictUser(FastHttpUser):
    """Posts the next batch back to back (closed loop, no think time)."""

    network_timeout = TIMEOUT_S
    connection_timeout = TIMEOUT_S

    @task
    def predict(self) -> None:
        body = _next_body()
        start = time.perf_counter()
        with self.client.post(PATH, data=body, headers=HEADERS, name=PATH, catch_response=True) as resp:
            # FastHttpSession times send-to-body-read with perf_counter and keeps the float (only its
            # statistics round); it excludes ~10 us of Locust's own request building that ours would add
            latency_ms = resp.request_meta.get("response_time") or (time.perf_counter() - start) * 1000.0
            outcome, message = _classify(resp, latency_ms)
            if outcome == "ok":
                resp.success()
            else:
                resp.failure(message)  # keeps Locust's own (human-facing) stats consistent with ours
        _samples.append((start - _Clock.start, latency_ms, outcome, message[:MAX_MESSAGE_CHARS]))
        if outcome == "connection":
            gevent.sleep(CONNECTION_BACKOFF_S)


@events.test_start.add_listener
def _on_test_start(**_kwargs) -> None:
    _Clock.start = time.perf_counter()
    _Clock.start_epoch = time.time()


@events.spawning_complete.add_listener
def _on_spawning_complete(**_kwargs) -> None:
    if _Clock.spawned is None:
        _Clock.spawned = time.perf_counter() - _Clock.start


@events.test_stopping.add_listener
def _on_test_stopping(**_kwargs) -> None:
    _Clock.stop = time.perf_counter() - _Clock.start


@events.test_stop.add_listener
def _on_test_stop(**_kwargs) -> None:
    """Write the samples, then the meta file (its presence says the samples are complete)."""
    tmp = SAMPLES_PATH + ".tmp"
    with open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(("start_s", "latency_ms", "outcome", "message"))
        writer.writerows((f"{s:.6f}", f"{lat:.4f}", out, msg) for s, lat, out, msg in _samples)
    os.replace(tmp, SAMPLES_PATH)
    meta = {
        "test_start_epoch_s": _Clock.start_epoch,
        "spawning_complete_s": _Clock.spawned,
        "stop_s": _Clock.stop if _Clock.stop is not None else time.perf_counter() - _Clock.start,
        "requests": len(_samples),
    }
    tmp = META_PATH + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(meta, fh)
    os.replace(tmp, META_PATH)
