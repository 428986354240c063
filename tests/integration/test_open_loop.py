"""Open-loop load with real Locust processes, and with the native engine, against a stdlib HTTP
server that can stall.

The key property: a server that stalls for a second shows it in an open loop's latencies (every
request due during the stall waits, and its latency counts from its due time), while a closed
loop hides it (its few users simply stop sending while they wait: coordinated omission).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from harness.data.tensors import TensorSpec
from harness.load.locust_driver import LocustDriver
from harness.load.native_driver import NativeDriver
from harness.load.result import LoadResult
from harness.scenario.load_spec import LoadSpec
from harness.serving.base import HttpEndpoint
from harness.serving.payloads import JsonInstancesEncoder, encode_requests
from tests.integration.json_http_server import JsonHttpServer

PATH = "/predictions/tiny"
REQUESTS = encode_requests(
    JsonInstancesEncoder((TensorSpec("x", (4,), "float32"),)),
    {"x": np.arange(28, dtype=np.float32).reshape(7, 4)},
    1,
    output_path="predictions",
    output_width=None,
)
STALL_S = 1.0
SLOW_MS = 300.0  # far above the fast server's latency, far below the stall


class StallingServer(JsonHttpServer):
    """Answers at once, except that once, `stall_at_s` after its first request, it freezes for
    `stall_s`: every request arriving or in progress then completes only when the stall ends."""

    def __init__(
        self, stall_at_s: float | None = None, stall_s: float = STALL_S, delay_s: float = 0.0
    ) -> None:
        self.first: float | None = None
        self.arrivals = 0
        lock = threading.Lock()

        def respond(_path: str, _headers: dict[str, str], instances: list[list[float]]) -> tuple[int, bytes]:
            now = time.monotonic()
            with lock:
                self.arrivals += 1
                if self.first is None:
                    self.first = now
                first = self.first
            if stall_at_s is not None and first + stall_at_s <= now < first + stall_at_s + stall_s:
                time.sleep(first + stall_at_s + stall_s - now)
            time.sleep(delay_s)
            return 200, json.dumps({"predictions": [0] * len(instances)}).encode()

        super().__init__(respond)

    @property
    def endpoint(self) -> HttpEndpoint:
        return HttpEndpoint(self.base_url, PATH)


@pytest.fixture
def stalling_server() -> Iterator[Callable[..., StallingServer]]:
    servers: list[StallingServer] = []

    def start(**kwargs: float) -> StallingServer:
        servers.append(StallingServer(**kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture(params=["locust", "native"])
def driver(request: pytest.FixtureRequest) -> LocustDriver:
    """Each single-process load engine behind the same driver interface."""
    return LocustDriver() if request.param == "locust" else NativeDriver()


def slow_fraction(result: LoadResult) -> float:
    return float(np.mean(np.asarray(result.latencies_ms) > SLOW_MS))


def test_open_loop_reports_a_server_stall_that_a_closed_loop_hides(
    stalling_server: Callable[..., StallingServer], tmp_path: Path, driver: LocustDriver
) -> None:
    # the stall begins 1 s into a 3 s measured part that follows a 1 s warm-up
    common = {"warmup_s": 1.0, "measure_s": 3.0, "timeout_s": 5.0, "spawn_rate": 100.0}
    open_server = stalling_server(stall_at_s=2.0)
    open_result = driver.run(
        open_server.endpoint,
        LoadSpec(mode="open", rate_rps=100.0, users=16, arrival="poisson", **common),
        REQUESTS,
        tmp_path / "open",
        seed=7,
    )
    closed_server = stalling_server(stall_at_s=2.0)
    closed_result = driver.run(
        closed_server.endpoint, LoadSpec(users=2, **common), REQUESTS, tmp_path / "closed"
    )

    for result in (open_result, closed_result):
        assert result.failure_count == 0, result.failure_examples
        assert max(result.latencies_ms) >= 0.8 * STALL_S * 1000.0  # both saw the stall somewhere
    # open loop: every request due during the stall waited (about a third of the measured ones)
    assert np.percentile(open_result.latencies_ms, 99) >= 0.8 * STALL_S * 1000.0
    assert slow_fraction(open_result) >= 0.10
    # most of them waited for a free slot (the server's doing), not for the generator
    assert open_result.queued_count >= 30
    assert open_result.late_count <= open_result.request_count * 0.05
    # closed loop: only the two requests in flight when it began
    assert np.percentile(closed_result.latencies_ms, 99) < SLOW_MS
    assert slow_fraction(closed_result) <= 0.01
    assert slow_fraction(open_result) >= 10 * slow_fraction(closed_result)
    # service times (actual send to response) stay short for the queued requests
    assert np.percentile(open_result.service_latencies_ms, 50) < SLOW_MS
    assert closed_result.service_latencies_ms == []


def test_open_loop_reaches_the_target_rate_against_a_fast_server(
    stalling_server: Callable[..., StallingServer], tmp_path: Path, driver: LocustDriver
) -> None:
    server = stalling_server()
    load = LoadSpec(mode="open", rate_rps=200.0, users=8, arrival="constant", warmup_s=1.0, measure_s=2.0)
    result = driver.run(server.endpoint, load, REQUESTS, tmp_path)

    assert result.mode == "open"
    assert result.target_rate_rps == 200.0
    assert result.failure_count == 0, result.failure_examples
    assert result.offered_rps == pytest.approx(200.0, rel=0.10)
    assert result.throughput_rps == pytest.approx(200.0, rel=0.10)
    assert result.late_fraction <= load.validity.max_late_fraction * 5  # a shared 2-core machine
    assert result.queued_count <= result.request_count * 0.05
    # latency counts from the due time: never shorter than the service time
    assert all(s.service_ms is not None and s.latency_ms >= s.service_ms for s in result.samples)
    assert len(result.generator_cpu_percent) == 1
    assert result.stopped_reason == "measure_s"
    assert result.windows_measured == 3  # 2 s in the default windows of measure_s / 3


def test_requests_queued_when_the_run_ends_are_still_sent_and_counted(
    stalling_server: Callable[..., StallingServer], tmp_path: Path, driver: LocustDriver
) -> None:
    # two slots at 20 ms per request carry at most 100 req/s of the 250 scheduled: a client queue
    # builds up, and the requests still in it when the measured windows end must not be dropped
    server = stalling_server(delay_s=0.02)
    load = LoadSpec(
        mode="open", rate_rps=250.0, users=2, arrival="constant", warmup_s=0.5, measure_s=1.5, timeout_s=1.0,
        spawn_rate=100.0,
    )  # fmt: skip
    result = driver.run(server.endpoint, load, REQUESTS, tmp_path)

    assert result.request_count == pytest.approx(250 * 1.5, abs=2)  # every request due in the window
    assert result.failures["timeout"] > 0  # those that waited more than 1 s for a slot
    assert any("waited" in e for e in result.failure_examples)
    assert result.queued_count > 100
    assert result.throughput_rps < 150.0
