"""The native load engine (harness/load/native/harness_load.c) run directly, against a stdlib server.

Each test writes the engine's config by hand, runs the binary, stops it with the stop file and
reads the samples with harness.load.samples.read_samples (which checks the CSV format) and the
meta file. How NativeDriver turns those files into results is test_locust_driver.py's subject.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import statistics
import subprocess
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from harness.load.native_build import CFLAGS, compiler, native_binary, source_bytes
from harness.load.samples import Sample, read_samples
from harness.processes import free_port

OK_BODY = b'{"outputs": [[0.1, 0.9]]}'  # one example's row of width 2
ERROR_BODY = b'boom, "bad"\nsecond line \xff'  # a comma, quotes, a newline and a byte that is not UTF-8
SLOW_S = 0.5
BODIES = (b'{"instances": [[1.0, 2.0]]}', b'{"instances": [[3.0, 4.0]]}')
EXIT_WAIT_S = 15.0


class BehaviourServer:
    """HTTP/1.1 keep-alive server whose first path segment picks the answer (see `_answer`); it
    counts, per full path, the bodies it got and the connections they came on."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bodies: dict[str, Counter[bytes]] = defaultdict(Counter)
        self.connections: dict[str, set[int]] = defaultdict(set)
        ids = itertools.count()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else delayed ACKs add 40 ms to each response

            def setup(self) -> None:
                super().setup()
                self.connection_id = next(ids)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with server.lock:
                    server.bodies[self.path][body] += 1
                    server.connections[self.path].add(self.connection_id)
                _answer(self, self.path.split("/")[1])

            def log_message(self, format: str, *args: object) -> None:
                pass

        class QuietServer(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # the engine closes sockets under sleeping or misbehaving handlers

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def _answer(handler: BaseHTTPRequestHandler, behaviour: str) -> None:
    out = handler.wfile
    if behaviour == "garbage":
        out.write(b"garbage\r\n\r\n")
        handler.close_connection = True
        return
    if behaviour == "unframed":  # neither Content-Length nor chunked: the body ends at the close
        out.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + OK_BODY)
        handler.close_connection = True
        return
    if behaviour == "continue":
        out.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        out.flush()
    if behaviour == "truncated":
        out.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        handler.close_connection = True
        return
    if behaviour == "chunked":
        handler.send_response(200)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        out.flush()
        for i, part in enumerate((OK_BODY[:7], OK_BODY[7:15], OK_BODY[15:])):
            extension = b";part=%d" % i if i == 1 else b""
            out.write(b"%x%s\r\n%s\r\n" % (len(part), extension, part))
            out.flush()  # separate writes: the engine must gather chunks split across reads
        out.write(b"0\r\nX-Trailer: yes\r\n\r\n")
        return
    if behaviour == "slow":
        time.sleep(SLOW_S)
    status, body = {
        "status500": (500, ERROR_BODY),
        "created": (201, OK_BODY),
        "notjson": (200, b"not json"),
    }.get(behaviour, (200, OK_BODY))
    if behaviour == "http10":
        handler.protocol_version = "HTTP/1.0"  # this response only: the engine closes after it
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    if behaviour == "close":
        handler.send_header("Connection", "close")
    handler.end_headers()
    out.write(body)


@dataclass(frozen=True)
class Target:
    """One `target` of the engine's config: where its requests go and what its answers hold."""

    port: int
    path: str
    rows: int = 1
    width: int = 2
    output: str | None = "outputs"


@dataclass
class EngineResult:
    returncode: int
    stderr: str
    rows: list[Sample]
    meta: dict[str, Any]
    started: dict[str, Any]


class Engine:
    """One run of the engine: its config written here, started at once, stopped with `stop()`."""

    def __init__(
        self,
        binary: Path,
        folder: Path,
        targets: list[Target],
        extra_lines: tuple[str, ...] = (),
        **settings: Any,
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.stop_path = folder / "stop.json"
        values: dict[str, Any] = {
            "users": 1,
            "spawn_rate": 100.0,
            "mode": "closed",
            "timeout_s": 5.0,
            "flush_s": 0.2,
            "max_run_s": 30.0,
            "samples_path": folder / "samples.csv",
            "started_path": folder / "started.json",
            "meta_path": folder / "meta.json",
            "stop_path": self.stop_path,
            **settings,
        }
        lines = [f"{key} {value}" for key, value in values.items()]
        if len(targets) == 1:
            lines.insert(0, "# one target: not interleaved")
        for index, target in enumerate(targets):
            requests = folder / f"requests-{index}.bin"
            requests.write_bytes(b"".join(len(r).to_bytes(8, "little") + r for r in _http_requests(target)))
            lines += [
                f"target 127.0.0.1 {target.port} {target.rows} {target.width}",
                f"target_requests {requests}",
            ]
            if target.output is not None:
                lines.append(f"target_output {target.output}")
        self.config = folder / "engine.conf"
        self.config.write_text("\n".join([*lines, *extra_lines]) + "\n")
        self.log = folder / "engine.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen([str(binary), str(self.config)], stdout=log, stderr=log)

    def wait_started(self) -> None:
        deadline = time.monotonic() + 10
        while not (self.folder / "started.json").exists():
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "the engine wrote no started file"
            time.sleep(0.01)

    def stop(self, stop_due_s: float) -> None:
        tmp = self.stop_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"stop_due_s": stop_due_s}))
        os.replace(tmp, self.stop_path)

    def result(self) -> EngineResult:
        self.process.wait(timeout=EXIT_WAIT_S)
        meta_path, started_path = self.folder / "meta.json", self.folder / "started.json"
        return EngineResult(
            self.process.returncode,
            self.log.read_text(),
            read_samples(self.folder / "samples.csv") if meta_path.exists() else [],
            json.loads(meta_path.read_text()) if meta_path.exists() else {},
            json.loads(started_path.read_text()) if started_path.exists() else {},
        )

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _http_requests(target: Target) -> list[bytes]:
    head = (
        f"POST {target.path} HTTP/1.1\r\nHost: 127.0.0.1:{target.port}\r\nContent-Type: application/json\r\n"
    )
    return [(head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body for body in BODIES]


@pytest.fixture(scope="module")
def binary() -> Path:
    return native_binary()


@pytest.fixture(scope="module")
def server() -> Iterator[BehaviourServer]:
    srv = BehaviourServer()
    yield srv
    srv.close()


@pytest.fixture
def engines(binary: Path, tmp_path: Path) -> Iterator[Any]:
    """Start engines (each in its own folder); any still running at the end is killed."""
    started: list[Engine] = []

    def start(targets: list[Target], extra_lines: tuple[str, ...] = (), **settings: Any) -> Engine:
        started.append(Engine(binary, tmp_path / f"run{len(started)}", targets, extra_lines, **settings))
        return started[-1]

    yield start
    for engine in started:
        engine.kill()


def run_together(engines: list[Engine], run_s: float, stop_due_s: float | None = None) -> list[EngineResult]:
    """Let the engines run for `run_s` from their start, stop them (due time `stop_due_s`), collect."""
    for engine in engines:
        engine.wait_started()
    time.sleep(run_s)
    for engine in engines:
        engine.stop(run_s if stop_due_s is None else stop_due_s)
    results = [engine.result() for engine in engines]
    for result in results:
        assert result.returncode == 0, result.stderr
    return results


def run(engine: Engine, run_s: float, stop_due_s: float | None = None) -> EngineResult:
    return run_together([engine], run_s, stop_due_s)[0]


def test_closed_loop_sends_back_to_back_on_one_keep_alive_connection_per_user(
    engines: Any, server: BehaviourServer
) -> None:
    path = "/ok/closed"
    before = time.time()
    result = run(engines([Target(server.port, path)], users=2, spawn_rate=4.0), 1.0)

    rows = result.rows
    assert len(rows) > 20
    assert {s.outcome for s in rows} == {"ok"}
    assert {s.target for s in rows} == {0}
    assert all(s.service_ms is None and s.late_ms == 0.0 for s in rows)
    assert all(0.0 < s.latency_ms < 1000.0 for s in rows)
    assert statistics.median(s.latency_ms for s in rows) < 100.0
    meta = result.meta
    assert meta["requests"] == len(rows) == sum(server.bodies[path].values())
    assert meta["undrained"] == 0
    assert meta["pid"] > 0
    assert meta["test_start_epoch_s"] == pytest.approx(result.started["test_start_epoch_s"])
    assert before <= meta["test_start_epoch_s"] <= time.time()
    # user 1 starts 1/spawn_rate after user 0
    assert 0.24 <= meta["spawning_complete_s"] < 0.6
    assert 0.95 <= meta["stop_s"] < 2.0
    # the users finished the requests in flight and sent nothing after the stop
    assert all(0.0 <= s.start_s <= meta["stop_s"] for s in rows)
    assert min(s.start_s for s in rows) < 0.05
    assert len(server.connections[path]) == 2
    # one cursor cycles through the prepared requests
    counts = server.bodies[path]
    assert set(counts) == set(BODIES)
    assert abs(counts[BODIES[0]] - counts[BODIES[1]]) <= 1


def test_open_loop_sends_at_constant_due_times_and_drains_those_before_the_stop(
    engines: Any, server: BehaviourServer
) -> None:
    # stopped at 0.8 s with the measured end at 1.01 s: every request due before it is still sent
    engine = engines(
        [Target(server.port, "/ok/open")], users=4, mode="open", rate_rps=50.0, arrival="constant"
    )
    result = run(engine, 0.8, stop_due_s=1.01)

    rows = sorted(result.rows, key=lambda s: s.start_s)
    assert [s.start_s for s in rows] == pytest.approx([0.02 * k for k in range(1, 51)], abs=1e-5)
    assert {s.outcome for s in rows} == {"ok"}
    assert all(s.service_ms is not None and s.service_ms > 0 for s in rows)
    assert all(s.latency_ms >= s.service_ms - 1e-3 for s in rows if s.service_ms is not None)
    assert statistics.median(s.late_ms for s in rows) < 5.0
    assert max(s.late_ms for s in rows) < 50.0
    assert result.meta["requests"] == 50
    assert result.meta["undrained"] == 0
    assert 0.75 <= result.meta["stop_s"] < 1.0


def test_poisson_arrivals_follow_the_seed(engines: Any, server: BehaviourServer) -> None:
    settings = {"users": 4, "mode": "open", "rate_rps": 100.0, "arrival": "poisson"}
    same = [engines([Target(server.port, "/ok/poisson")], seed=7, **settings) for _ in range(2)]
    other = engines([Target(server.port, "/ok/poisson")], seed=8, **settings)
    results = run_together([*same, other], 0.5)

    # each read the stop file at its own moment (polled every 0.1 s) and may have sent a few more
    dues = [sorted(s.start_s for s in r.rows if s.start_s < 0.5) for r in results]
    assert dues[0] == dues[1]
    assert dues[0] != dues[2]
    assert 15 <= len(dues[0]) <= 110  # ~50 expected
    gaps = [b - a for a, b in itertools.pairwise(dues[0])]
    assert max(gaps) > 3 * min(gaps)


def test_open_loop_request_that_waited_past_the_timeout_for_a_slot_is_a_timeout_not_sent(
    engines: Any, server: BehaviourServer
) -> None:
    # one slot, every request outlives a 0.2 s timeout: due times pile up behind it
    engine = engines([Target(server.port, "/slow/open")], mode="open", rate_rps=50.0, timeout_s=0.2)
    result = run(engine, 0.6, stop_due_s=0.61)

    rows = sorted(result.rows, key=lambda s: s.start_s)
    assert len(rows) == 30  # every due time before the stop, sent or not
    assert {s.outcome for s in rows} == {"timeout"}
    unsent = [s for s in rows if s.message.startswith("not sent: waited")]
    sent = [s for s in rows if s.message.startswith("Timeout: no response within 0.2s")]
    assert len(unsent) + len(sent) == 30
    assert unsent
    assert 2 <= len(sent) <= 5
    assert all(s.service_ms == 0.0 and s.latency_ms > 200.0 for s in unsent)
    assert all(s.message.endswith("for a free in-flight slot (limit 0.2s)") for s in unsent)
    assert all(s.service_ms is not None and 195.0 <= s.service_ms < 400.0 for s in sent)
    assert result.meta["requests"] == len(sent)
    assert result.meta["undrained"] == 0


def test_interleaved_requests_go_to_the_target_of_their_slice(engines: Any, server: BehaviourServer) -> None:
    slice_s, pattern = 0.15, [1, 0, 0]
    # target 1 answers what is not JSON: its rows show the request really went there
    targets = [Target(server.port, "/ok/interleave"), Target(server.port, "/notjson/interleave")]
    engine = engines(targets, users=2, slice_s=slice_s, pattern=" ".join(map(str, pattern)))
    result = run(engine, 1.0)

    checked = 0
    for s in result.rows:
        k = int(s.start_s / slice_s)
        if abs(s.start_s - round(s.start_s / slice_s) * slice_s) < 1e-4:
            continue  # at a slice boundary the CSV's rounding may fall on either side
        expected = pattern[k] if k < len(pattern) else k % len(targets)
        assert s.target == expected, s
        assert s.outcome == ("ok" if expected == 0 else "bad_payload")
        checked += 1
    assert checked > 20
    assert {s.target for s in result.rows} == {0, 1}


@dataclass(frozen=True)
class Case:
    """A response and the outcome every request to it must get."""

    path: str
    outcome: str
    message: str = ""  # what each row's message starts with
    rows: int = 1
    width: int = 2
    output: str | None = "outputs"
    timeout_s: float = 5.0


CASES = {
    "non_2xx_is_http_status": Case("/status500", "http_status", 'HTTP 500: boom, "bad" second line \ufffd'),
    "2xx_other_than_200_is_bad_payload": Case("/created", "bad_payload", 'HTTP 201 is not 200: {"outputs"'),
    "not_json_is_bad_payload": Case("/notjson", "bad_payload", "response is not JSON ("),
    "missing_output_path_is_bad_payload": Case(
        "/ok", "bad_payload", "nothing at 'predictions' in response: {", output="predictions"
    ),
    "wrong_row_count_is_bad_payload": Case(
        "/ok", "bad_payload", "1 output rows for 2 examples at 'outputs'", rows=2
    ),
    "flat_list_of_another_width_is_bad_payload": Case(
        "/ok",
        "bad_payload",
        "outputs of another shape for 1 examples at 'outputs.0'",
        width=3,
        output="outputs.0",
    ),
    "flat_list_of_the_width_is_one_row": Case("/ok", "ok", output="outputs.0"),
    "number_at_negative_index_is_one_row": Case("/ok", "ok", width=-1, output="outputs.-1.1"),
    "unchecked_output_is_ok": Case("/notjson", "ok", output=None),
    "slow_response_is_timeout": Case(
        "/slow", "timeout", "Timeout: no response within 0.2s (limit 0.2s)", timeout_s=0.2
    ),
    "chunked_response_is_ok": Case("/chunked", "ok"),
    "connection_close_response_is_ok": Case("/close", "ok"),
    "http_1_0_response_is_ok": Case("/http10", "ok"),
    "body_ended_by_close_is_ok": Case("/unframed", "ok"),
    "interim_100_response_is_skipped": Case("/continue", "ok"),
    "not_http_is_connection": Case(
        "/garbage", "connection", "bad HTTP response: not an HTTP response: 'garbage'"
    ),
    "close_inside_the_body_is_connection": Case(
        "/truncated", "connection", "the server closed the connection"
    ),
}


@pytest.fixture(scope="module")
def case_results(binary: Path, server: BehaviourServer, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Every case's run, all at once (one user each, half a second): {case name: (paths, result)}."""
    folder = tmp_path_factory.mktemp("cases")
    runs = {}
    for name, case in CASES.items():
        path = f"{case.path}/{name}"
        target = Target(server.port, path, case.rows, case.width, case.output)
        runs[name] = (path, Engine(binary, folder / name, [target], timeout_s=case.timeout_s))
    try:
        results = run_together([engine for _, engine in runs.values()], 0.5)
        return {name: (path, result) for (name, (path, _)), result in zip(runs.items(), results, strict=True)}
    finally:
        for _, engine in runs.values():
            engine.kill()


@pytest.mark.parametrize("name", CASES)
def test_each_response_gets_its_outcome_class(name: str, case_results: Any, server: BehaviourServer) -> None:
    case = CASES[name]
    path, result = case_results[name]
    assert result.rows
    assert {s.outcome for s in result.rows} == {case.outcome}
    for s in result.rows:
        assert s.message.startswith(case.message) if case.message else s.message == ""
        assert len(s.message) <= 200
    if case.outcome == "connection":
        # each failure closes the connection and pauses the user 50 ms
        assert len(result.rows) <= 0.6 / 0.05 + 2
    requests = sum(server.bodies[path].values())
    if case.path in ("/close", "/http10", "/unframed"):
        assert len(server.connections[path]) == requests  # the engine reconnects after each
    elif case.path == "/chunked":
        assert len(server.connections[path]) == 1  # the chunked body was read exactly: kept alive


def test_refused_connection_is_connection_class_with_a_50_ms_pause(engines: Any) -> None:
    result = run(engines([Target(free_port(), "/ok")], users=2), 1.0)

    assert {s.outcome for s in result.rows} == {"connection"}
    assert all("refused" in s.message for s in result.rows)
    # each user: one refused connect every 50 ms at most
    assert 10 <= len(result.rows) <= 2 * (1.0 / 0.05 + 2)


def test_engine_stops_itself_after_max_run_s(engines: Any, server: BehaviourServer) -> None:
    # the second user is due to start after the stop: it never does
    engine = engines([Target(server.port, "/ok/max_run")], users=2, spawn_rate=2.0, max_run_s=0.3)
    result = engine.result()  # no stop file: the driver is gone

    assert result.returncode == 0, result.stderr
    assert 0.3 <= result.meta["stop_s"] < 1.0
    assert result.meta["spawning_complete_s"] is None
    assert result.rows
    assert result.meta["requests"] == len(result.rows)


def test_sigterm_ends_the_engine_promptly(engines: Any, server: BehaviourServer) -> None:
    engine = engines([Target(server.port, "/ok/sigterm")])
    engine.wait_started()
    engine.process.send_signal(signal.SIGTERM)
    assert engine.process.wait(timeout=2) == -signal.SIGTERM


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ("users 0", "users must be 1..10000"),
        ("colour blue", "unknown key 'colour'"),
        ("target_requests /nonexistent/requests.bin", "cannot read requests file /nonexistent/requests.bin"),
    ],
)
def test_bad_config_exits_2_with_one_fatal_line(
    engines: Any, server: BehaviourServer, line: str, complaint: str
) -> None:
    engine = engines([Target(server.port, "/ok/bad")], extra_lines=(line,))
    result = engine.result()

    assert result.returncode == 2
    assert result.stderr.startswith("harness-load: fatal: ")
    assert complaint in result.stderr
    assert result.stderr.count("\n") == 1
    assert not result.started  # it never began a test


def test_source_compiles_without_warnings(tmp_path: Path) -> None:
    cc = compiler()
    assert cc is not None
    source = tmp_path / "harness_load.c"
    source.write_bytes(source_bytes())
    done = subprocess.run(
        [cc, *CFLAGS, "-Werror", "-o", str(tmp_path / "harness-load"), str(source), "-lm"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
