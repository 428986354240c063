"""CPU placement on real processes: a pinned ManagedProcess keeps its whole tree (children and
threads started later included) on its CPUs, and a real Locust run stays on the load's CPUs."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest

from harness.data.tensors import TensorSpec
from harness.errors import RunError
from harness.load.locust_driver import LocustDriver
from harness.load.native_driver import NativeDriver
from harness.placement import available_cpus, placed_here, tree_cpus
from harness.processes import ManagedProcess
from harness.scenario.load_spec import LoadSpec
from harness.serving.base import EncodedRequests, HttpEndpoint
from harness.serving.payloads import JsonInstancesEncoder, encode_requests
from tests.integration.json_http_server import JsonHttpServer

CPUS = available_cpus()
needs_two_cpus = pytest.mark.skipif(len(CPUS) < 2, reason="placement needs 2 or more usable CPUs")

# After a delay (so that none of it exists when the affinity is set), start a child process that
# starts a thread of its own, and a thread here; report once all of them run.
LATE_TREE = textwrap.dedent(
    """
    import subprocess, sys, threading, time
    time.sleep(0.3)
    grandchild = (
        "import threading, time; threading.Thread(target=time.sleep, args=(60,), daemon=True).start(); "
        "print('child ready', flush=True); time.sleep(60)"
    )
    subprocess.Popen([sys.executable, "-c", grandchild])
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
    print("parent ready", sys.argv[1:], flush=True)
    time.sleep(60)
    """
)


def _thread_affinities(pid: int) -> dict[tuple[int, int], set[int]]:
    """(pid, thread id) -> affinity, for every thread of `pid` and its descendants."""
    root = psutil.Process(pid)
    found = {}
    for proc in [root, *root.children(recursive=True)]:
        for thread in proc.threads():
            found[(proc.pid, thread.id)] = os.sched_getaffinity(thread.id)
    return found


@needs_two_cpus
def test_a_pinned_process_tree_keeps_children_and_threads_started_later_on_its_cpu(tmp_path: Path) -> None:
    cpu = CPUS[-1]
    log = tmp_path / "tree.log"
    argv = [sys.executable, "-c", LATE_TREE, "an argument", "--flag"]
    with ManagedProcess(argv, log, name="tree", cpus=[cpu]) as proc:
        proc.wait_until(lambda: log.read_text().count("ready") == 2, timeout_s=30, poll_s=0.05)
        assert proc.pid is not None
        assert "parent ready ['an argument', '--flag']" in log.read_text(), "argv reaches the program as is"
        threads = _thread_affinities(proc.pid)
        assert len({pid for pid, _ in threads}) == 2, threads
        assert len(threads) >= 4, "two processes with two threads each"
        assert all(cpus == {cpu} for cpus in threads.values()), threads
        assert tree_cpus(proc.pid) == [cpu]
    assert os.sched_getaffinity(0) == set(CPUS), "pinning the child leaves the harness alone"


def test_an_unpinned_process_tree_may_use_every_cpu(tmp_path: Path) -> None:
    log = tmp_path / "tree.log"
    with ManagedProcess([sys.executable, "-c", LATE_TREE], log, name="tree") as proc:
        proc.wait_until(lambda: log.read_text().count("ready") == 2, timeout_s=30, poll_s=0.05)
        assert tree_cpus(proc.pid) == list(CPUS)


def test_tree_cpus_of_no_process_or_a_gone_one_is_none(tmp_path: Path) -> None:
    assert tree_cpus(None) is None
    with ManagedProcess(["sleep", "60"], tmp_path / "sleep.log", name="sleep", cpus=CPUS[:1]) as proc:
        pid = proc.pid
    assert tree_cpus(pid) is None


@pytest.mark.parametrize("program", ["harness-no-such-server", "{tmp}/no-such-server"])
def test_a_pinned_start_of_a_missing_program_is_a_run_error(tmp_path: Path, program: str) -> None:
    program = program.format(tmp=tmp_path)
    proc = ManagedProcess([program, "--start"], tmp_path / "missing.log", name="server", cpus=CPUS[-1:])
    with pytest.raises(RunError, match=r"^server: could not start .*no-such-server"):
        proc.start()
    assert proc.pid is None, "nothing was started"
    proc.stop()  # nothing to stop, still safe


@pytest.fixture
def predictions_server() -> Iterator[tuple[HttpEndpoint, EncodedRequests]]:
    """A stdlib server answering every request with a prediction per row, and requests for it."""
    server = JsonHttpServer(
        lambda _path, _headers, instances: (200, json.dumps({"predictions": [0] * len(instances)}).encode())
    )
    rows = np.repeat(np.arange(5, dtype=np.float32)[:, None], 4, axis=1)
    encoder = JsonInstancesEncoder((TensorSpec("x", (4,), "float32"),))
    requests = encode_requests(encoder, {"x": rows}, 1, output_path="predictions", output_width=None)
    try:
        yield HttpEndpoint(server.base_url, "/predictions/m"), requests
    finally:
        server.close()


@needs_two_cpus
def test_the_native_engine_runs_on_the_cpus_it_is_given(tmp_path: Path, predictions_server) -> None:
    cpu = CPUS[-1]
    endpoint, requests = predictions_server
    load = LoadSpec(users=2, warmup_s=0.5, measure_s=1.0, timeout_s=5.0, generator="native")
    result = NativeDriver().run(endpoint, load, requests, tmp_path, cpus=[cpu])

    assert result.failure_count == 0, result.failure_examples
    assert result.ok_count > 0
    assert result.generator_cpus == [cpu]
    assert result.generator_cpus_used, "the engine was seen while measuring"
    assert set(result.generator_cpus_used) <= {cpu}


@needs_two_cpus
def test_locust_processes_run_on_the_cpus_they_are_given(tmp_path: Path, predictions_server) -> None:
    cpu = CPUS[-1]
    endpoint, requests = predictions_server
    # a master and one worker: both are pinned, and both are read back
    load = LoadSpec(users=2, workers=1, warmup_s=0.5, measure_s=1.5, timeout_s=5.0)
    started = time.monotonic()
    result = LocustDriver().run(endpoint, load, requests, tmp_path, cpus=[cpu])

    assert time.monotonic() - started < 60
    assert result.failure_count == 0, result.failure_examples
    assert result.ok_count > 0
    assert result.generator_cpus == [cpu]
    assert result.generator_cpus_used, "the load processes were seen while measuring"
    assert set(result.generator_cpus_used) <= {cpu}


@needs_two_cpus
def test_while_locust_runs_the_harness_threads_are_on_the_load_cpus_and_go_back_after() -> None:
    load_cpu = available_cpus()[-1]
    started = threading.Event()
    stop = threading.Event()
    worker = threading.Thread(target=lambda: (started.set(), stop.wait(5)), daemon=True)
    worker.start()
    started.wait(5)
    before = {tid: os.sched_getaffinity(tid) for tid in map(int, os.listdir("/proc/self/task"))}
    try:
        with placed_here([load_cpu]):
            inside = {tid: os.sched_getaffinity(tid) for tid in map(int, os.listdir("/proc/self/task"))}
        after = {tid: os.sched_getaffinity(tid) for tid in map(int, os.listdir("/proc/self/task"))}
    finally:
        stop.set()
        worker.join(5)
    assert worker.native_id in inside  # the sampler-like thread is moved too, not only the caller
    assert all(cpus == {load_cpu} for cpus in inside.values()), inside
    assert after == before
