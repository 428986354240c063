"""LocustDriver with real Locust processes (single, or master and workers) against stdlib HTTP servers.

Tests that take a `driver` run twice: with Locust and with the native engine (NativeDriver), which
shares LocustDriver's interface and must give the same results."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from harness.data.tensors import TensorSpec
from harness.errors import RunError
from harness.load.interleave import Interleave, InterleavedTarget
from harness.load.locust_driver import LocustDriver
from harness.load.native_driver import NativeDriver
from harness.load.samples import Sample, read_samples
from harness.processes import free_port
from harness.scenario.load_spec import LoadSpec
from harness.serving.base import EncodedRequests, HttpEndpoint
from harness.serving.payloads import JsonInstancesEncoder, NpyEncoder, encode_requests
from tests.integration.json_http_server import JsonHttpServer

PATH = "/predictions/tiny"
TOKEN = "Bearer test-token"
SPEC = (TensorSpec("x", (4,), "float32"),)
# row i is [i, i, i, i]: the server can tell which rows it was sent
INSTANCES = np.repeat(np.arange(7, dtype=np.float32)[:, None], 4, axis=1)


def requests_of(rows_per_request: int = 1, encoder: type = JsonInstancesEncoder, **kwargs) -> EncodedRequests:
    """The example rows as request bodies, encoded once as the targets do before load starts."""
    options = {"output_path": "predictions", "output_width": None, **kwargs}
    return encode_requests(encoder(SPEC), {"x": INSTANCES}, rows_per_request, **options)


REQUESTS = requests_of()

# (request number, parsed instances) -> (status, body bytes)
Behaviour = Callable[[int, list[list[float]]], tuple[int, bytes]]


def predictions_for(instances: list[list[float]]) -> bytes:
    return json.dumps({"predictions": [int(row[0]) for row in instances]}).encode()


class CountingServer(JsonHttpServer):
    """Answers come from `behaviour`; it logs every arrival time, row and malformed request."""

    def __init__(self, behaviour: Behaviour, delay_s: float) -> None:
        self.arrivals: list[float] = []  # time.time() of each request
        self.rows_seen: set[tuple[float, ...]] = set()
        self.bad_requests: list[str] = []
        self.content_types: set[str] = set()
        lock = threading.Lock()

        def respond(path: str, headers: dict[str, str], instances: list[list[float]]) -> tuple[int, bytes]:
            with lock:
                number = len(self.arrivals)
                self.arrivals.append(time.time())
                self.rows_seen.update(tuple(r) for r in instances)
                self.content_types.add(headers.get("Content-Type", ""))
                if path != PATH or headers.get("Authorization") != TOKEN:
                    self.bad_requests.append(f"{path} {headers.get('Authorization')}")
            time.sleep(delay_s)
            return behaviour(number, instances)

        super().__init__(respond)

    @property
    def endpoint(self) -> HttpEndpoint:
        return HttpEndpoint(self.base_url, PATH, {"Authorization": TOKEN})


@pytest.fixture
def http_server() -> Iterator[Callable[..., CountingServer]]:
    servers: list[CountingServer] = []

    def start(behaviour: Behaviour | None = None, delay_s: float = 0.0) -> CountingServer:
        server = CountingServer(behaviour or (lambda _n, inst: (200, predictions_for(inst))), delay_s)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture(params=["locust", "native"])
def driver(request: pytest.FixtureRequest) -> LocustDriver:
    """Each single-process load engine behind the same driver interface."""
    return LocustDriver() if request.param == "locust" else NativeDriver()


def test_correct_server_gives_exact_latencies_for_the_measure_window_only(
    http_server: Callable[..., CountingServer], tmp_path: Path, driver: LocustDriver
) -> None:
    server = http_server(delay_s=0.002)
    load = LoadSpec(users=2, warmup_s=1.0, measure_s=2.0, request_batch_size=3, timeout_s=5.0)
    result = driver.run(server.endpoint, load, requests_of(3), tmp_path)

    assert server.bad_requests == []
    assert result.generator == driver.name
    assert result.failure_count == 0, result.failure_examples
    assert result.ok_count > 50
    assert result.measure_s == pytest.approx(load.measure_s, abs=0.01)
    assert result.throughput_rps == pytest.approx(result.ok_count / result.measure_s)
    # exact timings, not Locust's whole milliseconds
    assert any(not float(x).is_integer() for x in result.latencies_ms)
    assert float(np.percentile(result.latencies_ms, 50)) >= 2.0
    # every row of the example set was sent
    assert server.rows_seen == {tuple(row) for row in INSTANCES.tolist()}
    # warm-up (and the trailing second) excluded: what the server saw inside the window,
    # counted from its first request, matches what the driver counted
    first = server.arrivals[0]

    def arrived(start: float, end: float) -> int:
        return sum(first + start <= t < first + end for t in server.arrivals)

    assert result.request_count < len(server.arrivals)
    assert arrived(load.warmup_s + 0.15, load.warmup_s + load.measure_s - 0.15) <= result.request_count
    assert result.request_count <= arrived(load.warmup_s - 0.15, load.warmup_s + load.measure_s + 0.15)
    assert result.client_cpu_percent is not None
    assert 0 < result.client_cpu_percent < 200
    assert (tmp_path / f"{driver.files_prefix}.log").exists()
    assert (tmp_path / f"{driver.files_prefix}_samples.csv").exists()


@pytest.mark.parametrize(
    ("engine", "client"), [("locust", "lean"), ("locust", "fasthttp"), ("native", "lean")]
)
def test_server_errors_and_wrong_payloads_are_counted_by_class(
    http_server: Callable[..., CountingServer], tmp_path: Path, engine: str, client: str
) -> None:
    def mixed(number: int, instances: list[list[float]]) -> tuple[int, bytes]:
        kind = number % 5
        if kind == 0:
            return 500, b'{"error": "boom"}'
        if kind == 1:
            return 200, predictions_for(instances)[:-2] + b", 99]}"  # one prediction too many
        if kind == 2:
            return 200, b"<html>not json</html>"
        return 200, predictions_for(instances)

    server = http_server(mixed)
    load = LoadSpec(users=2, warmup_s=0.5, measure_s=1.5, request_batch_size=2, client=client)
    driver = NativeDriver() if engine == "native" else LocustDriver()
    result = driver.run(server.endpoint, load, requests_of(2), tmp_path)

    assert result.ok_count > 0
    assert result.failures["http_status"] > 0
    assert result.failures["bad_payload"] > 0
    assert result.failures["connection"] == result.failures["timeout"] == 0
    assert (
        result.request_count
        == result.ok_count + result.failures["http_status"] + result.failures["bad_payload"]
    )
    assert result.failures["http_status"] == pytest.approx(result.request_count / 5, rel=0.25)
    assert result.failures["bad_payload"] == pytest.approx(2 * result.request_count / 5, rel=0.25)
    examples = "\n".join(result.failure_examples)
    assert "http_status: HTTP 500" in examples
    assert "3 output rows for 2 examples at 'predictions'" in examples or "not JSON" in examples


def test_local_workers_send_the_prepared_bodies_and_check_rows_at_the_output_path(
    http_server: Callable[..., CountingServer], tmp_path: Path
) -> None:
    def nested(_number: int, instances: list[list[float]]) -> tuple[int, bytes]:
        return 200, json.dumps({"outputs": [{"probs": [row[0], 1.0]} for row in instances]}).encode()

    server = http_server(nested)
    load = LoadSpec(users=2, workers=1, warmup_s=0.5, measure_s=1.0)
    npy = requests_of(1, NpyEncoder, output_path="outputs.0.probs", output_width=2)
    result = LocustDriver().run(server.endpoint, load, npy, tmp_path)

    assert server.bad_requests == []
    assert server.content_types == {"application/x-npy"}
    assert server.rows_seen == {tuple(row) for row in INSTANCES.tolist()}
    assert result.failure_count == 0, result.failure_examples
    assert result.ok_count > 20
    assert not (tmp_path / "locust_bodies.bin").exists(), "the bodies file goes once Locust is done"
    config = json.loads((tmp_path / "locust_config.json").read_text())
    assert (config["rows"], config["output_path"]) == (1, "outputs.0.probs")
    assert config["headers"] == {"Authorization": TOKEN, "Content-Type": "application/x-npy"}


def test_responses_without_the_declared_rows_are_bad_payloads_and_no_path_accepts_any_2xx(
    http_server: Callable[..., CountingServer], tmp_path: Path, driver: LocustDriver
) -> None:
    server = http_server(lambda _n, _inst: (200, b'{"outputs": [[0.5, 0.5]]}'))
    load = LoadSpec(users=1, warmup_s=0.3, measure_s=0.6)
    wrong = driver.run(server.endpoint, load, requests_of(1, output_path="predictions"), tmp_path / "a")
    assert wrong.ok_count == 0
    assert wrong.failures["bad_payload"] == wrong.request_count > 0
    assert "nothing at 'predictions'" in wrong.failure_examples[0]
    unchecked = driver.run(server.endpoint, load, requests_of(1, output_path=None), tmp_path / "b")
    assert unchecked.failure_count == 0
    assert unchecked.ok_count > 0


def test_bodies_encoded_for_another_batch_size_are_refused(tmp_path: Path) -> None:
    endpoint = HttpEndpoint(f"http://127.0.0.1:{free_port()}", PATH)
    with pytest.raises(RunError, match=r"hold 2 example\(s\) each but load.request_batch_size is 1"):
        LocustDriver().run(endpoint, LoadSpec(warmup_s=0.5, measure_s=0.5), requests_of(2), tmp_path)


def test_connection_refused_is_counted_not_raised(tmp_path: Path, driver: LocustDriver) -> None:
    endpoint = HttpEndpoint(f"http://127.0.0.1:{free_port()}", PATH)  # nothing listens there
    load = LoadSpec(users=2, warmup_s=0.5, measure_s=1.0)
    result = driver.run(endpoint, load, REQUESTS, tmp_path)

    assert result.ok_count == 0
    assert result.failures["connection"] > 0
    assert result.failure_count == result.failures["connection"]
    assert "refused" in result.failure_examples[0].lower()
    assert "no request succeeded in the measure window" in result.warnings


def test_requests_slower_than_the_timeout_are_counted_as_timeouts(
    http_server: Callable[..., CountingServer], tmp_path: Path, driver: LocustDriver
) -> None:
    server = http_server(delay_s=0.4)
    load = LoadSpec(users=2, warmup_s=0.5, measure_s=1.5, timeout_s=0.15)
    result = driver.run(server.endpoint, load, REQUESTS, tmp_path)

    assert result.ok_count == 0
    assert result.failures["timeout"] > 0
    assert result.failure_count == result.failures["timeout"]


def test_a_broken_locustfile_raises_run_error_with_the_log_tail(
    http_server: Callable[..., CountingServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.load import locust_driver

    monkeypatch.setattr(locust_driver, "LOCUSTFILE_NAME", "__init__.py")  # defines no User class
    server = http_server()
    with pytest.raises(RunError, match=r"locust failed \(exit code [1-9]") as err:
        LocustDriver().run(server.endpoint, LoadSpec(warmup_s=0.5, measure_s=0.5), REQUESTS, tmp_path)
    assert "\n" not in str(err.value)
    assert err.value.log.endswith(".log")
    assert "Traceback" in err.value.log_tail or "Error" in err.value.log_tail
    assert server.arrivals == []


def locust_processes_in(folder: Path) -> list[int]:
    """Live processes whose working directory is `folder` (every Locust process the driver starts)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cwd", "status"]):
        cwd = proc.info.get("cwd")
        if cwd and Path(cwd) == folder and proc.info.get("status") != psutil.STATUS_ZOMBIE:
            found.append(proc.pid)
    return found


def test_two_local_workers_share_the_rate_and_their_samples_are_merged(
    http_server: Callable[..., CountingServer], tmp_path: Path
) -> None:
    server = http_server()
    load = LoadSpec(
        mode="open", rate_rps=200.0, users=8, arrival="poisson", workers=2, warmup_s=1.0, measure_s=2.0,
        spawn_rate=100.0,
    )  # fmt: skip
    result = LocustDriver().run(server.endpoint, load, REQUESTS, tmp_path, seed=3)

    assert server.bad_requests == []
    assert result.workers == 2
    assert result.failure_count == 0, result.failure_examples
    per_worker = [read_samples(tmp_path / f"locust_samples_w{i}.csv") for i in range(2)]
    # each worker sent about half of the rate (100 req/s over about 3 s of run)
    assert all(len(samples) > 150 for samples in per_worker)
    assert len(result.samples) <= sum(len(samples) for samples in per_worker)
    assert result.offered_rps == pytest.approx(200.0, rel=0.10)
    assert len(result.generator_cpu_percent) == 3  # the master and both workers
    assert (tmp_path / "locust_worker0.log").exists()
    assert (tmp_path / "locust_worker1.log").exists()
    assert locust_processes_in(tmp_path) == []


def test_a_satisfied_stop_rule_ends_the_run_once_measure_s_is_covered(
    http_server: Callable[..., CountingServer], tmp_path: Path
) -> None:
    server = http_server()
    calls: list[tuple[int, float, float]] = []

    def stable(samples: list[Sample], measure_start_s: float) -> bool:
        calls.append((len(samples), measure_start_s, max(s.start_s for s in samples)))
        return True

    load = LoadSpec(users=2, warmup_s=0.5, measure_s=1.0, window_s=0.5, validity={"max_windows": 8})
    result = LocustDriver().run(server.endpoint, load, REQUESTS, tmp_path, stop_when=stable)

    assert result.stopped_reason == "stable"
    assert result.windows_measured == 2
    assert result.measure_s == pytest.approx(1.0)
    assert len(calls) == 1  # asked once, after the second window: measure_s must be covered first
    count, start, last = calls[0]
    assert start == 0.5
    assert count > 10
    assert last < 1.5  # only requests due in the measured windows
    meta = json.loads((tmp_path / "locust_meta.json").read_text())
    assert meta["stop_s"] < load.warmup_s + load.validity.max_windows * 0.5


def test_a_remote_worker_started_with_the_documented_command_line_joins_the_run(
    http_server: Callable[..., CountingServer], tmp_path: Path
) -> None:
    import subprocess
    import sys

    server = http_server()
    port = free_port()
    # what README tells an operator to run elsewhere: only Locust is needed, the locustfile and the
    # settings come from the master
    remote = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", "-", "--worker", "--master-host", "127.0.0.1",
         "--master-port", str(port)],
        cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        load = LoadSpec(
            mode="open", rate_rps=100.0, users=4, arrival="constant", remote_workers=1, master_bind_port=port,
            warmup_s=0.5, measure_s=1.5,
        )  # fmt: skip
        # binary bodies: they reach the remote worker in the master's config message, not a file
        npy = requests_of(1, NpyEncoder)
        result = LocustDriver().run(server.endpoint, load, npy, tmp_path / "run")
        assert remote.wait(timeout=15) == 0  # the master's quit ends it
    finally:
        remote.kill()
        remote.wait()

    assert server.bad_requests == []
    assert server.content_types == {"application/x-npy"}
    assert server.rows_seen == {tuple(row) for row in INSTANCES.tolist()}
    assert result.workers == 1
    assert result.failure_count == 0, result.failure_examples
    assert result.offered_rps == pytest.approx(100.0, rel=0.10)
    assert (tmp_path / "run" / "locust_samples_w0.csv").exists()
    assert len(result.generator_cpu_percent) == 2  # the master, and the worker's own report


def test_a_master_whose_workers_never_connect_fails_with_its_log_and_leaves_nothing_running(
    http_server: Callable[..., CountingServer], tmp_path: Path
) -> None:
    server = http_server()
    load = LoadSpec(users=2, workers=1, remote_workers=1, warmup_s=0.5, measure_s=0.5)
    with pytest.raises(RunError, match="locust master failed") as err:
        LocustDriver(worker_wait_s=2.0).run(server.endpoint, load, REQUESTS, tmp_path)
    assert "Gave up waiting for workers" in err.value.log_tail

    assert locust_processes_in(tmp_path) == []
    assert server.arrivals == []


def test_an_interleaved_run_loads_each_endpoint_only_in_its_own_slices(
    http_server: Callable[..., CountingServer], tmp_path: Path, driver: LocustDriver
) -> None:
    fast, slow = http_server(), http_server(delay_s=0.005)
    slice_s, pattern = 0.1, (0, 1, 0, 1, 1, 0, 1, 0, 0, 1, 1, 0)
    interleave = Interleave(
        (
            InterleavedTarget(fast.endpoint, REQUESTS),
            InterleavedTarget(slow.endpoint, requests_of(1, encoder=NpyEncoder)),
        ),
        slice_s,
        pattern,
    )
    load = LoadSpec(users=2, warmup_s=0.4, measure_s=0.8, timeout_s=5.0)
    result = driver.run(fast.endpoint, load, REQUESTS, tmp_path, interleave=interleave)

    assert fast.bad_requests == []
    assert slow.bad_requests == []
    assert result.failure_count == 0, result.failure_examples
    # each endpoint got its own bodies: JSON to the first, .npy to the second
    assert fast.content_types == {"application/json"}
    assert slow.content_types == {"application/x-npy"}
    every = read_samples(tmp_path / f"{driver.files_prefix}_samples.csv")
    assert {s.target for s in every} == {0, 1}
    assert len(fast.arrivals) == sum(s.target == 0 for s in every)
    assert len(slow.arrivals) == sum(s.target == 1 for s in every)
    for sample in every:
        k = int(sample.start_s / slice_s)
        expected = interleave.target_of_slice(k)
        if abs(sample.start_s - round(sample.start_s / slice_s) * slice_s) > 0.002:  # not on a boundary
            assert sample.target == expected, sample
    assert min(s.latency_ms for s in every if s.target == 1) >= 5.0
    assert np.median([s.latency_ms for s in every if s.target == 0]) < 5.0


class RawServer:
    """A socket server that answers every request with `reply(number)`: raw bytes, so a test can
    send what a stdlib server would not (chunked bodies, closing after each answer, garbage)."""

    def __init__(self, reply: Callable[[int], bytes]) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self.connections = 0
        self.reply = reply
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while True:
                while (end := buffer.find(b"\r\n\r\n")) < 0:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                length = int(re.search(rb"Content-Length: (\d+)", buffer[:end], re.IGNORECASE).group(1))
                while len(buffer) < end + 4 + length:
                    buffer += conn.recv(65536)
                buffer = buffer[end + 4 + length :]
                self.count += 1
                answer = self.reply(self.count)
                conn.sendall(answer)
                if b"Connection: close" in answer:
                    return

    @property
    def endpoint(self) -> HttpEndpoint:
        return HttpEndpoint(f"http://127.0.0.1:{self.port}", PATH)

    def close(self) -> None:
        self.sock.close()


def _chunked(body: bytes) -> bytes:
    half = len(body) // 2
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:half], body[half:]))
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"


def _plain(body: bytes, close: bool = False) -> bytes:
    extra = b"Connection: close\r\n" if close else b""
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


def test_the_lean_and_native_clients_read_chunked_and_closing_answers_and_name_garbage(
    tmp_path: Path, driver: LocustDriver
) -> None:
    good = predictions_for([[1.0]])

    def reply(number: int) -> bytes:
        kind = number % 4
        if kind == 0:
            return _chunked(good)
        if kind == 1:
            return _plain(good, close=True)  # the client must reconnect for the next request
        if kind == 2:
            return b"SSH-2.0-not-http\r\n\r\n"  # not an HTTP answer: a connection failure, then reconnect
        return _plain(good)

    server = RawServer(reply)
    try:
        load = LoadSpec(users=1, warmup_s=0.3, measure_s=1.0, client="lean")
        result = driver.run(server.endpoint, load, REQUESTS, tmp_path)
    finally:
        server.close()
    assert result.ok_count > 0
    assert result.failures["connection"] > 0
    assert result.failures["bad_payload"] == result.failures["http_status"] == 0
    # three of four answers are good, whatever their framing
    assert result.ok_count == pytest.approx(3 * result.request_count / 4, rel=0.1)
    assert "not an HTTP response" in "\n".join(result.failure_examples)
    assert server.connections > 2  # reconnected after each close and each garbage answer
