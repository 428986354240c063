"""ProcessTreeSampler on real process trees: CPU and RSS summed over children, children that come
and go, a replaced child counted as a restart, and a root that exits mid-sampling."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import psutil
import pytest

from harness.metrics.host import ProcessTreeSampler

# a root that keeps one child alive, replacing it whenever it exits (like a server's worker manager)
SUPERVISOR = textwrap.dedent(
    """
    import subprocess, sys, time
    while True:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        child.wait()
    """
)
# a root whose child burns one core and holds ~80 MB for `seconds`, started after `delay` seconds
BUSY = textwrap.dedent(
    """
    import subprocess, sys, time
    delay, seconds = float(sys.argv[1]), float(sys.argv[2])
    time.sleep(delay)
    code = (
        "import time; block = bytearray(80 * 1024 * 1024); end = time.time() + %s\\n"
        "while time.time() < end: pass" % seconds
    )
    subprocess.run([sys.executable, "-c", code])
    time.sleep(600)
    """
)


@contextlib.contextmanager
def _spawn(code: str, *args: str) -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen([sys.executable, "-c", code, *args], start_new_session=True)
    try:
        yield proc
    finally:
        # only the group we started
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _children(pid: int) -> list[int]:
    try:
        return [
            c.pid for c in psutil.Process(pid).children(recursive=True) if c.status() != psutil.STATUS_ZOMBIE
        ]
    except psutil.Error:
        return []


def _wait_for(predicate, timeout_s: float = 20.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout_s}s")


def test_cpu_and_rss_of_a_child_are_counted_including_one_born_during_sampling():
    with _spawn(BUSY, "0.5", "2.0") as root:
        with ProcessTreeSampler(root.pid, interval_s=0.1) as sampler:
            _wait_for(lambda: _children(root.pid))  # the busy child is born after the first sample
            time.sleep(2.5)
        summary = sampler.summary()
    assert summary["server_cpu_percent"] > 25, summary  # one busy core for most of ~3 s
    assert summary["server_cpu_percent_max"] >= summary["server_cpu_percent"]
    assert summary["server_rss_mb_max"] > 80, summary
    assert summary["server_rss_mb_mean"] < summary["server_rss_mb_max"]
    assert summary["samples"] >= 10
    # the busy child appeared and exited, but no child present at the start went away
    assert summary["restarted"] is False
    assert summary["initial_pids"] == []
    assert len(summary["new_pids"]) == 1


def test_an_idle_tree_uses_almost_no_cpu():
    with _spawn(SUPERVISOR) as root:
        _wait_for(lambda: _children(root.pid))
        with ProcessTreeSampler(root.pid, interval_s=0.1) as sampler:
            time.sleep(1.0)
        summary = sampler.summary()
    assert summary["server_cpu_percent"] < 10, summary
    assert summary["restarted"] is False
    assert summary["initial_pids"] == summary["final_pids"]
    assert summary["root_alive"] is True


def test_a_child_replaced_by_a_new_process_is_a_restart():
    with _spawn(SUPERVISOR) as root:
        (first,) = _wait_for(lambda: _children(root.pid))
        with ProcessTreeSampler(root.pid, interval_s=0.1) as sampler:
            time.sleep(0.3)
            os.kill(first, signal.SIGKILL)
            _wait_for(lambda: [p for p in _children(root.pid) if p != first])
            time.sleep(0.3)
        summary = sampler.summary()
    assert summary["restarted"] is True
    assert summary["exited_pids"] == [first]
    assert len(summary["new_pids"]) == 1
    assert summary["root_alive"] is True


def test_a_root_that_exits_during_sampling_is_reported_not_raised():
    with _spawn(SUPERVISOR) as root:
        _wait_for(lambda: _children(root.pid))
        with ProcessTreeSampler(root.pid, interval_s=0.1) as sampler:
            time.sleep(0.3)
            os.killpg(root.pid, signal.SIGKILL)
            root.wait(timeout=10)
            time.sleep(0.3)
        summary = sampler.summary()
    assert summary["restarted"] is True
    assert summary["root_alive"] is False
    assert summary["server_rss_mb_max"] > 0
    assert any("exited during sampling" in n for n in summary["notes"])


def test_a_pid_that_does_not_exist_gives_an_empty_summary_with_a_note():
    with _spawn("pass") as gone:
        gone.wait(timeout=10)
    with ProcessTreeSampler(gone.pid, interval_s=0.1) as sampler:
        time.sleep(0.2)
    summary = sampler.summary()
    assert summary["server_cpu_percent"] is None
    assert summary["server_rss_mb_max"] is None
    assert summary["samples"] == 0
    assert any(str(gone.pid) in n for n in summary["notes"])


def test_interval_must_be_positive():
    with pytest.raises(ValueError, match="interval_s"):
        ProcessTreeSampler(os.getpid(), interval_s=0)
