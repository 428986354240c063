"""Locust user that posts prepared request bodies and records every request's exact timing.

Runs inside Locust processes started by harness.load.locust_driver.LocustDriver (a single
process, or a master and its workers) and imports nothing from the harness: a remote worker
fetches this file from the master (`locust -f - --worker`) and needs only Locust.

Configuration: a single process or master reads the JSON file named by HARNESS_LOAD_CONFIG
(written by the driver: request path, headers, rows per request, where responses hold the
outputs, timeout, load mode, rate, arrival, seed, output paths) and the request bodies from the
file it names (`bodies_path`: each body as an 8-byte little-endian length, then its bytes). The
bodies were encoded once by the harness, before the test: a request costs this process the
same whatever the tensors are, it only sends bytes, cycling through the bodies. A worker asks the
master for the settings and the bodies (custom messages, bodies as msgpack binary) after
connecting, so a remote worker needs nothing but this file and Locust.

Closed loop: each user posts back to back. Open loop: one seeded schedule per process at
rate/processes (constant or exponential gaps, mirroring harness/load/arrivals.py); a free user
takes the next due time, waits for it and sends. When every user (in-flight slot) is busy the
schedule keeps running, so requests wait in the client and their latency, counted from the due
time, shows the queue a stalled server causes (no coordinated omission). Each row keeps the
service time (send to response) and the generator's own slip (`late_ms`: sent after the due
time although a slot was free); the rest of the delay is the wait for a slot.

Samples (CSV, format of harness/load/samples.py) are flushed every `flush_s` so that the driver
can judge each window while the test runs: a single process appends to its own file; a worker
sends its rows to the master, which appends them to one file per worker. The driver stops the
test by writing the `stop_path` file with the measured end (`stop_due_s`); an open loop first
sends every request due before it (those that waited longer than the timeout become timeouts
unsent), then the process stops its users, writes its last rows and the meta file (whose
presence says the samples are complete), and quits.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import socket
import struct
import time
from typing import Any, ClassVar, NamedTuple, TextIO
from urllib.parse import urlsplit

import gevent
from gevent.event import Event
from gevent.timeout import Timeout as GeventTimeout
from locust import FastHttpUser, events, task
from locust.runners import MasterRunner, WorkerRunner

# After a refused or reset connection a user pauses briefly, so that a dead server does not
# turn the generator into a busy loop writing millions of identical failures.
CONNECTION_BACKOFF_S = 0.05
MAX_MESSAGE_CHARS = 200
CONTROL_POLL_S = 0.1
CONFIG_WAIT_S = 120.0
SAMPLES_HEADER = ("start_s", "latency_ms", "outcome", "late_ms", "service_ms", "target", "message")
# keys a worker needs; paths are the master's and stay there
WORKER_KEYS = ("path", "headers", "rows", "output_path", "output_width", "timeout_s", "mode", "rate_rps",
               "arrival", "seed", "processes", "flush_s", "client", "host")  # fmt: skip
LEAN_READ_BYTES = 65536
TASK_SLICE_S = 0.05
BODY_LENGTH = struct.Struct("<Q")  # the bodies file: each body's length, then its bytes


class _Target:
    """One endpoint requests go to: its path (or absolute URL), headers, bodies and output checks.

    For the lean client each body is also kept as the whole HTTP request (request line, headers,
    body), built once here: sending one is a single `sendall`."""

    def __init__(self, values: dict[str, Any], bodies: list[bytes], host: str) -> None:
        if not bodies:
            raise ValueError("harness load config holds no request bodies")
        self.path = values["path"]
        self.headers = dict(values.get("headers") or {})
        self.bodies = bodies
        self.rows = int(values["rows"])
        self.output_path = values.get("output_path")
        self.output_width = values.get("output_width")
        self.cursor = 0
        url = urlsplit(self.path if "://" in self.path else host.rstrip("/") + self.path)
        self.address = (url.hostname or "127.0.0.1", url.port or (443 if url.scheme == "https" else 80))
        self.tls = url.scheme == "https"
        self.requests: list[bytes] = []
        if not self.tls:
            target = (url.path or "/") + (f"?{url.query}" if url.query else "")
            head = f"POST {target} HTTP/1.1\r\nHost: {url.netloc}\r\n" + "".join(
                f"{name}: {value}\r\n" for name, value in self.headers.items()
            )
            self.requests = [
                (head + f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1") + body for body in bodies
            ]

    def next_index(self) -> int:
        index = self.cursor % len(self.bodies)
        self.cursor += 1  # shared by all users: gevent runs them on one thread
        return index


class _Answer(NamedTuple):
    """What the lean client got: the fields `_classify` reads from a Locust response."""

    status_code: int
    content: bytes
    error: BaseException | None = None


class _LeanConnection:
    """One keep-alive HTTP/1.1 connection (a gevent socket after Locust's monkey patching).

    The whole per-request path: one `sendall` of a prepared request, then reads until the status
    line, the headers and a Content-Length (or chunked) body are in. No request event, no Locust
    statistics, no header objects: what the harness records is timed and classified by the user."""

    def __init__(self, address: tuple[str, int], timeout_s: float) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self.sock: socket.socket | None = None
        self.buffer = b""

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock, self.buffer = None, b""

    def exchange(self, request: bytes) -> _Answer:
        try:
            if self.sock is None:
                self.sock = socket.create_connection(self.address, timeout=self.timeout_s)
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock.sendall(request)
            status, body, keep = self._response()
        except (OSError, ValueError) as exc:  # socket.timeout is an OSError; ValueError: bad HTTP
            self.close()
            return _Answer(0, b"", exc)
        if not keep:
            self.close()
        return _Answer(status, body)

    def _read_more(self) -> None:
        assert self.sock is not None
        data = self.sock.recv(LEAN_READ_BYTES)
        if not data:
            raise ConnectionResetError("the server closed the connection")
        self.buffer += data

    def _response(self) -> tuple[int, bytes, bool]:
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            self._read_more()
        head, self.buffer = self.buffer[:end].decode("latin-1"), self.buffer[end + 4 :]
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ValueError(f"not an HTTP response: {lines[0][:80]!r}")
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        keep = fields.get("connection", "").lower() != "close" and parts[0] != "HTTP/1.0"
        if "chunked" in fields.get("transfer-encoding", "").lower():
            return int(parts[1]), self._chunked(), keep
        length = int(fields.get("content-length", "0"))
        while len(self.buffer) < length:
            self._read_more()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(parts[1]), body, keep

    def _chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            while (end := self.buffer.find(b"\r\n")) < 0:
                self._read_more()
            size = int(self.buffer[:end].split(b";")[0], 16)
            self.buffer = self.buffer[end + 2 :]
            if size == 0:  # the last chunk: optional trailer lines, then an empty line
                while (end := self.buffer.find(b"\r\n")) != 0:
                    if end < 0:
                        self._read_more()
                    else:
                        self.buffer = self.buffer[end + 2 :]
                self.buffer = self.buffer[2:]
                return b"".join(chunks)
            while len(self.buffer) < size + 2:
                self._read_more()
            chunks.append(self.buffer[:size])
            self.buffer = self.buffer[size + 2 :]


class _Config:
    """This process's settings: from HARNESS_LOAD_CONFIG, or from the master on a worker.

    An interleaved run (`interleave` in the config, single process only) has several targets and
    a slice pattern: during slice k (`slice_s` long, from the test start) every request goes to
    target `pattern[k]`, then to the targets in turn once the pattern is used up."""

    values: ClassVar[dict[str, Any]] = {}
    ready = Event()
    bodies: ClassVar[list[bytes]] = []
    targets: ClassVar[list[_Target]] = []
    slice_s = 0.0
    pattern: ClassVar[list[int]] = []
    index = 0  # worker index (0 for a single process)

    @classmethod
    def set(cls, values: dict[str, Any], bodies: list[bytes], index: int) -> None:
        cls.values.clear()
        cls.values.update(values)
        cls.bodies[:] = bodies
        interleave = values.get("interleave")
        host = values.get("host") or ""
        if interleave:
            cls.targets[:] = [_Target(t, _read_bodies(t["bodies_path"]), host) for t in interleave["targets"]]
            cls.slice_s = float(interleave["slice_s"])
            cls.pattern[:] = [int(i) for i in interleave["pattern"]]
        else:
            cls.targets[:] = [_Target(values, bodies, host)]
        cls.index = index
        cls.ready.set()

    @classmethod
    def target_now(cls) -> int:
        """The index of the target this instant's request goes to."""
        if len(cls.targets) == 1:
            return 0
        k = int((time.perf_counter() - _Run.start) / cls.slice_s)
        return cls.pattern[k] if k < len(cls.pattern) else k % len(cls.targets)


def _read_bodies(path: str) -> list[bytes]:
    bodies = []
    with open(path, "rb") as fh:
        while head := fh.read(BODY_LENGTH.size):
            (length,) = BODY_LENGTH.unpack(head)
            body = fh.read(length)
            if len(body) != length:
                raise ValueError(f"{path} ends inside a body ({len(body)} of {length} bytes)")
            bodies.append(body)
    return bodies


class _Run:
    """Clock and buffers of this process's test."""

    start = time.perf_counter()
    start_epoch: float | None = None
    spawned: float | None = None
    stop: float | None = None
    stopping = False
    stop_due = math.inf  # set when the driver stops the test: requests due from then on are not sent
    stop_event = Event()
    held: ClassVar[dict[int, float]] = {}  # open loop: the due time each busy user is serving
    undrained = 0
    pending: ClassVar[list[tuple]] = []  # finished requests not yet flushed
    requests = 0
    schedule: _Schedule | None = None
    samples_file: TextIO | None = None
    workers: ClassVar[dict[int, dict[str, Any]]] = {}  # master: per worker, rows, CPU points, done
    configured: ClassVar[set[int]] = set()  # master: worker indexes that asked for the config


class _Schedule:
    """Due times (s since the test start) at `rate_rps`; the same gaps as harness ArrivalSchedule."""

    def __init__(self, rate_rps: float, arrival: str, seed: str) -> None:
        self.rate_rps = rate_rps
        self.constant = arrival == "constant"
        self._rng = random.Random(seed)
        self._due = 0.0

    def next(self) -> float:
        self._due += 1.0 / self.rate_rps if self.constant else self._rng.expovariate(self.rate_rps)
        return self._due


def _schedule() -> _Schedule:
    if _Run.schedule is None:
        v = _Config.values
        rate = float(v["rate_rps"]) / int(v["processes"])
        _Run.schedule = _Schedule(rate, v["arrival"], f"{v['seed']}:{_Config.index}")
    return _Run.schedule


def _at_path(payload: Any, path: str) -> Any:
    """The value at a dotted path of keys and list indexes (harness.serving.payloads.value_at_path)."""
    value = payload
    for key in path.split("."):
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.lstrip("-").isdigit() and -len(value) <= int(key) < len(value):
            value = value[int(key)]
        else:
            raise KeyError(path)
    return value


def _row_count(value: Any, width: int | None) -> int | None:
    """How many examples' outputs `value` holds, by the rules of payloads.as_output_rows: a list of
    rows (or of objects); a flat list is one example's row, or a column of rows when width is 1."""
    if isinstance(value, list):
        if not value or isinstance(value[0], (list, dict)) or width in (None, 1):
            return len(value)
        return 1 if len(value) == width else None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and width in (None, 1):
        return 1
    return None


def _classify(resp, service_ms: float, target: _Target) -> tuple[str, str]:
    """("ok", "") or (failure class, message) for one finished request."""
    timeout_s = float(_Config.values["timeout_s"])
    error = getattr(resp, "error", None)
    status = getattr(resp, "status_code", 0) or 0
    if status and not 200 <= status < 300:
        return "http_status", f"HTTP {status}: {_text(resp)}"
    if error is not None:
        # geventhttpclient wraps errors of non-retried requests (every POST) in RetriesExceeded
        error = getattr(error, "original", None) or error
        if isinstance(error, GeventTimeout | socket.timeout | TimeoutError):
            return "timeout", f"{type(error).__name__}: {error} (limit {timeout_s:g}s)"
        return "connection", f"{type(error).__name__}: {error}"
    if service_ms > timeout_s * 1000.0:
        return "timeout", f"took {service_ms:.1f} ms (limit {timeout_s:g}s)"
    if status != 200:
        return "bad_payload", f"HTTP {status} is not 200: {_text(resp)}"
    path = target.output_path
    if not path:
        return "ok", ""
    try:
        payload = json.loads(resp.content)
    except (TypeError, ValueError) as exc:
        return "bad_payload", f"response is not JSON ({exc}): {_text(resp)}"
    try:
        value = _at_path(payload, path)
    except KeyError:
        return "bad_payload", f"nothing at {path!r} in response: {_text(resp)}"
    rows = target.rows
    count = _row_count(value, target.output_width)
    if count != rows:
        found = "outputs of another shape" if count is None else f"{count} output rows"
        return "bad_payload", f"{found} for {rows} examples at {path!r}"
    return "ok", ""


def _text(resp) -> str:
    content = getattr(resp, "content", None) or b""
    return content[:MAX_MESSAGE_CHARS].decode("utf-8", errors="replace")


class PredictUser(FastHttpUser):
    """One in-flight slot: posts the next body back to back (closed) or at the next due time (open)."""

    def __init__(self, environment) -> None:
        # a worker's users can be spawned before the master's config has arrived
        if not _Config.ready.wait(CONFIG_WAIT_S):
            raise RuntimeError(f"no load configuration after {CONFIG_WAIT_S:g}s")
        self.network_timeout = self.connection_timeout = float(_Config.values["timeout_s"])
        super().__init__(environment)
        # the lean client (the default) for plain HTTP; Locust's FastHttpSession for TLS or if asked
        self.lean = _Config.values.get("client", "lean") == "lean"
        self.connections: dict[int, _LeanConnection] = {}

    def on_stop(self) -> None:
        for connection in self.connections.values():
            connection.close()

    @task
    def predict(self) -> None:
        # requests back to back for up to TASK_SLICE_S per Locust task: Locust's scheduling of a
        # task costs about as much as a lean request, and returning that often keeps users stoppable
        until = time.perf_counter() + TASK_SLICE_S
        closed = _Config.values["mode"] != "open"
        while not _Run.stopping:
            if closed:
                sent = time.perf_counter()
                which = _Config.target_now()
                outcome, message, service_ms = self._post(sent, which)
                _Run.pending.append((sent - _Run.start, service_ms, outcome, 0.0, None, which, message))
            else:
                self._open_loop_request()
            if time.perf_counter() >= until:
                return
        gevent.sleep(CONTROL_POLL_S)  # the runner is about to stop this user

    def _open_loop_request(self) -> None:
        # this slot is free from now: a due time already past waited for a slot (queue), the
        # rest of the delay is the generator's own slip (late)
        free = time.perf_counter() - _Run.start
        due = _schedule().next()
        if due >= _Run.stop_due:
            gevent.sleep(CONTROL_POLL_S)  # after the measured end nothing more is sent
            return
        _Run.held[id(self)] = due
        try:
            # the loop's timers can fire a little early; a stop wakes the wait at once
            while (wait := due - (time.perf_counter() - _Run.start)) > 0:
                if _Run.stop_event.wait(wait) and due >= _Run.stop_due:
                    return
            now = time.perf_counter() - _Run.start
            timeout_s = float(_Config.values["timeout_s"])
            if now - due > timeout_s:
                # waited longer than the timeout for a free slot: a timeout whatever the server does
                waited_ms = (now - due) * 1000.0
                message = (
                    f"not sent: waited {waited_ms:.0f} ms for a free in-flight slot (limit {timeout_s:g}s)"
                )
                _Run.pending.append((due, waited_ms, "timeout", 0.0, 0.0, _Config.target_now(), message))
                return
            sent = time.perf_counter()
            which = _Config.target_now()
            outcome, message, service_ms = self._post(sent, which)
            delay_ms = max(0.0, (sent - _Run.start - due) * 1000.0)
            late_ms = max(0.0, (sent - _Run.start - max(due, free)) * 1000.0)
            _Run.pending.append((due, delay_ms + service_ms, outcome, late_ms, service_ms, which, message))
        finally:
            _Run.held.pop(id(self), None)

    def _post(self, sent: float, which: int) -> tuple[str, str, float]:
        """Send target `which`'s next body; (outcome, one-line message, service time in ms)."""
        target = _Config.targets[which]
        index = target.next_index()
        if self.lean and not target.tls:
            connection = self.connections.get(which)
            if connection is None:
                connection = self.connections[which] = _LeanConnection(target.address, self.network_timeout)
            answer = connection.exchange(target.requests[index])
            service_ms = (time.perf_counter() - sent) * 1000.0
            outcome, message = _classify(answer, service_ms, target)
        else:
            outcome, message, service_ms = self._locust_post(sent, target, index)
        _Run.requests += 1
        if outcome == "connection":
            gevent.sleep(CONNECTION_BACKOFF_S)
        return outcome, " ".join(message[:MAX_MESSAGE_CHARS].splitlines()), service_ms

    def _locust_post(self, sent: float, target: _Target, index: int) -> tuple[str, str, float]:
        """Through Locust's FastHttpSession, with its request event and statistics."""
        # FastHttpSession sends bytes as they are; its annotation names only str and dict
        body: Any = target.bodies[index]
        with self.client.post(
            target.path, data=body, headers=target.headers, name=target.path, catch_response=True
        ) as resp:
            # FastHttpSession times send-to-body-read with perf_counter and keeps the float (only its
            # statistics round); it excludes ~10 us of Locust's own request building that ours would add
            service_ms = resp.request_meta.get("response_time") or (time.perf_counter() - sent) * 1000.0
            outcome, message = _classify(resp, service_ms, target)
            if outcome == "ok":
                resp.success()
            else:
                resp.failure(message)  # keeps Locust's own (human-facing) stats consistent with ours
        return outcome, message, service_ms


def _csv_text(rows: list[tuple]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for start, latency, outcome, late, service, target, message in rows:
        svc = "" if service is None else f"{service:.4f}"
        writer.writerow((f"{start:.6f}", f"{latency:.4f}", outcome, f"{late:.4f}", svc, target, message))
    return out.getvalue()


def _header_text() -> str:
    return ",".join(SAMPLES_HEADER) + "\n"


def _write_json(path: str, data: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def _take_pending() -> list[tuple]:
    rows = list(_Run.pending)
    _Run.pending.clear()  # no yield in between: gevent cannot switch users here
    return rows


def _flush(environment, final: bool = False) -> None:
    """Hand the finished requests on: to this process's file, or to the master from a worker."""
    rows = _take_pending()
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        data = {
            "undrained": _Run.undrained if final else 0,
            "index": _Config.index,
            "csv": _csv_text(rows),
            "rows": len(rows),
            "cpu": (time.perf_counter() - _Run.start, time.process_time()),
        }
        runner.send_message("harness_done" if final else "harness_samples", data)
    elif rows and _Run.samples_file is not None:
        _Run.samples_file.write(_csv_text(rows))
        _Run.samples_file.flush()


def _flush_loop(environment) -> None:
    while not _Run.stopping:
        gevent.sleep(float(_Config.values.get("flush_s", 0.5)))
        _flush(environment)


def _on_worker_rows(environment, msg, *, done: bool) -> None:
    """Master: append a worker's rows to its own samples file; note its CPU time."""
    data = msg.data
    index = int(data["index"])
    worker = _Run.workers.get(index)
    if worker is None:
        path = f"{_Config.values['samples_prefix']}_w{index}.csv"
        out = open(path, "w", newline="")  # noqa: SIM115 - closed at the end of the test
        out.write(_header_text())
        worker = {"requests": 0, "cpu": [], "done": False, "undrained": 0, "file": out}
        _Run.workers[index] = worker
    if worker["file"] is None:
        return  # arrived after the master closed the files: due long after the measured windows
    worker["file"].write(data["csv"])
    worker["file"].flush()
    worker["requests"] += int(data["rows"])
    worker["cpu"].append(list(data["cpu"]))
    worker["done"] = worker["done"] or done
    worker["undrained"] += int(data.get("undrained", 0))


def _send_config(environment, msg) -> None:
    """Master: a worker asks for its settings; it also gets its index (its rate share and seed)."""
    index = environment.runner.get_worker_index(msg.node_id)
    _Run.configured.add(index)
    data = {k: _Config.values[k] for k in WORKER_KEYS}
    # the bodies go along as msgpack binary: a remote worker has no access to the master's files
    message = {"values": data, "bodies": _Config.bodies, "index": index}
    environment.runner.send_message("harness_config", message, client_id=msg.node_id)


def _drain(stop_due: float) -> None:
    """Open loop: send every request due before `stop_due` (the measured end) before stopping.

    Requests queued for a slot are part of the measured windows; dropping them at the stop would
    hide exactly the overload the open loop is there to show. Those that waited longer than the
    timeout are recorded as timeouts without being sent, which bounds the drain.
    """
    _Run.stop_due = stop_due
    _Run.stop_event.set()
    if _Config.values.get("mode") != "open" or _Run.schedule is None:
        return
    deadline = time.perf_counter() + 2 * float(_Config.values["timeout_s"]) + 5.0
    while time.perf_counter() < deadline:
        if _Run.schedule._due >= stop_due and not any(d < stop_due for d in _Run.held.values()):
            return
        gevent.sleep(0.02)
    _Run.undrained = sum(d < stop_due for d in _Run.held.values())


def _on_worker_stop(environment, msg) -> None:
    _drain(float(msg.data["stop_due_s"]))
    _Run.stopping = True
    environment.runner.stop()  # stops the users; test_stop then sends the last rows


def _control(environment) -> None:
    """Single process or master: wait for the driver's stop file (or the safety limit), then stop."""
    v = _Config.values
    runner = environment.runner
    while True:
        gevent.sleep(CONTROL_POLL_S)
        if _Run.start_epoch is None:
            continue
        now = time.perf_counter() - _Run.start
        if now > float(v["max_run_s"]):
            stop_due = now  # the driver is gone: stop on our own
            break
        try:
            with open(v["stop_path"]) as fh:
                stop_due = float(json.load(fh)["stop_due_s"])
            break
        except FileNotFoundError:
            continue
    _Run.stop = time.perf_counter() - _Run.start
    meta: dict[str, Any] = {
        "test_start_epoch_s": _Run.start_epoch,
        "spawning_complete_s": _Run.spawned,
        "stop_s": _Run.stop,
        "locust_pid": os.getpid(),
    }
    if isinstance(runner, MasterRunner):
        runner.send_message("harness_stop", {"stop_due_s": stop_due})
        deadline = time.perf_counter() + 3 * float(v["timeout_s"]) + 15.0
        while time.perf_counter() < deadline and not all(
            _Run.workers.get(i, {}).get("done") for i in _Run.configured
        ):
            gevent.sleep(CONTROL_POLL_S)
        for worker in _Run.workers.values():
            if worker["file"] is not None:
                worker["file"].close()
                worker["file"] = None
        meta["workers"] = {
            str(i): {
                "requests": w["requests"],
                "cpu": w["cpu"],
                "done": w["done"],
                "undrained": w["undrained"],
            }
            for i, w in sorted(_Run.workers.items())
        }
        meta["configured_workers"] = sorted(_Run.configured)
        meta["requests"] = sum(w["requests"] for w in _Run.workers.values())
    else:
        _drain(stop_due)
        _Run.stopping = True
        runner.stop()  # users finish the request in flight (stop timeout); test_stop flushes
        meta["requests"] = _Run.requests
        meta["undrained"] = _Run.undrained
    _write_json(v["meta_path"], meta)
    runner.quit()


@events.init.add_listener
def _on_init(environment, runner, **_kwargs) -> None:
    if isinstance(runner, WorkerRunner):

        def on_config(environment, msg) -> None:
            _Config.set(msg.data["values"], list(msg.data["bodies"]), int(msg.data["index"]))

        runner.register_message("harness_config", on_config)
        runner.register_message("harness_stop", _on_worker_stop, concurrent=True)
        runner.send_message("harness_config_request", {})
        return
    path = os.environ.get("HARNESS_LOAD_CONFIG")
    if not path:
        raise SystemExit("HARNESS_LOAD_CONFIG is not set: this locustfile is run by the harness")
    with open(path) as fh:
        values = json.load(fh)
    _Config.set(values, _read_bodies(values["bodies_path"]), 0)
    if isinstance(runner, MasterRunner):
        runner.register_message("harness_config_request", _send_config)
        runner.register_message(
            "harness_samples", lambda environment, msg: _on_worker_rows(environment, msg, done=False)
        )
        runner.register_message(
            "harness_done", lambda environment, msg: _on_worker_rows(environment, msg, done=True)
        )
    gevent.spawn(_control, environment)


@events.test_start.add_listener
def _on_test_start(environment, **_kwargs) -> None:
    _Run.start = time.perf_counter()
    _Run.start_epoch = time.time()
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        _write_json(_Config.values["started_path"], {"test_start_epoch_s": _Run.start_epoch})
        return
    if not isinstance(runner, WorkerRunner):
        samples_file = open(_Config.values["samples_path"], "w", newline="")  # noqa: SIM115
        samples_file.write(_header_text())
        samples_file.flush()
        _Run.samples_file = samples_file
        _write_json(_Config.values["started_path"], {"test_start_epoch_s": _Run.start_epoch})
    gevent.spawn(_flush_loop, environment)


@events.spawning_complete.add_listener
def _on_spawning_complete(**_kwargs) -> None:
    if _Run.spawned is None:
        _Run.spawned = time.perf_counter() - _Run.start


@events.test_stop.add_listener
def _on_test_stop(environment, **_kwargs) -> None:
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        return
    _flush(environment, final=True)
    if _Run.samples_file is not None:
        _Run.samples_file.close()
        _Run.samples_file = None
