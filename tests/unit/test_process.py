"""ManagedProcess tears down its whole process group, even when interrupted while stopping or when
the harness itself is SIGKILLed; a second signal during shutdown is absorbed but hurries teardown."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import psutil
import pytest

from harness import processes as process_module
from harness import signals
from harness.errors import RunError
from harness.processes import ManagedProcess
from harness.signals import interrupts_unwind
from tests.conftest import ROOT

# A leader that ignores SIGTERM and a grandchild that inherits the ignore (SIG_IGN survives exec):
# only the group SIGKILL can end them. The leader prints the grandchild's pid once both are set up.
STUBBORN = textwrap.dedent(
    """
    import signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    print(grandchild.pid, flush=True)
    time.sleep(60)
    """
)


def _gone(pid: int) -> bool:
    # an orphan is reaped by PID 1, which in some containers is slow: a zombie counts as gone
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# The harness side of an orphaning: a process that starts a stubborn ManagedProcess tree, reports
# the pids, and then waits to be SIGKILLed (so that no teardown of ours runs).
ORPHANING_HARNESS = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from harness.processes import ManagedProcess
    log, cleanup = Path(sys.argv[1]), sys.argv[2:]
    proc = ManagedProcess([sys.executable, "-c", sys.stdin.read()], log, name="tree",
                          orphan_cleanup=cleanup or None).start()
    deadline = time.monotonic() + 30
    while not log.read_text().strip().isdigit() and time.monotonic() < deadline:
        time.sleep(0.05)
    print(proc.pid, log.read_text().strip(), proc._watchdog.pid, flush=True)
    time.sleep(60)
    """
)


@pytest.fixture
def own_signal_handlers():
    """Give the test back the handlers it started with: an interrupted block leaves ours installed."""
    saved = {sig: signal.getsignal(sig) for sig in signals.INTERRUPT_SIGNALS}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)
    signals._reset()


def _wait_gone(pids: list[int], timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if not _gone(pid)]
        if not alive:
            return []
        time.sleep(0.05)
    return [pid for pid in pids if not _gone(pid)]


@pytest.fixture
def start_stubborn(tmp_path):
    """Start a stubborn group; return it and its grandchild's pid. SIGKILLs the group if a test failed."""
    started: list[int] = []

    def start(grace_s: float) -> tuple[ManagedProcess, int]:
        log = tmp_path / "stubborn.log"
        proc = ManagedProcess([sys.executable, "-c", STUBBORN], log, name="stubborn", stop_grace_s=grace_s)
        proc.start()
        assert proc.pid is not None
        started.append(proc.pid)
        proc.wait_until(lambda: log.read_text().strip().isdigit(), timeout_s=30, poll_s=0.05)
        return proc, int(log.read_text())

    yield start
    for pgid in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def test_stop_kills_leader_and_grandchild_that_ignore_sigterm(start_stubborn):
    proc, grandchild = start_stubborn(0.5)
    leader = proc.pid
    assert leader is not None
    assert not _gone(leader)
    assert not _gone(grandchild)

    began = time.monotonic()
    proc.stop()
    took_s = time.monotonic() - began

    assert proc.returncode == -signal.SIGKILL, "the leader ignored SIGTERM, so only SIGKILL can end it"
    assert took_s >= 0.5, "stop() must give the group its grace period before SIGKILL"
    assert _gone(leader)
    assert _gone(grandchild)


def test_stop_twice_signals_the_group_only_once(tmp_path, monkeypatch):
    sent: list[signal.Signals] = []
    real_signal_group = process_module._signal_group

    def recording(pgid: int, sig: signal.Signals) -> None:
        sent.append(sig)
        real_signal_group(pgid, sig)

    monkeypatch.setattr(process_module, "_signal_group", recording)
    with ManagedProcess(["sleep", "60"], tmp_path / "sleep.log", name="sleep", stop_grace_s=2) as proc:
        pass
    proc.stop()
    proc.stop()

    assert sent == [signal.SIGTERM, signal.SIGKILL]
    assert proc.returncode == -signal.SIGTERM


def test_interrupt_during_grace_wait_still_kills_the_group(start_stubborn, monkeypatch):
    proc, grandchild = start_stubborn(30)
    leader = proc.pid
    assert leader is not None
    real_wait = subprocess.Popen.wait
    interrupted = []

    def wait_interrupted_once(self, timeout=None):
        if not interrupted:  # the second Ctrl-C arrives during the grace wait
            interrupted.append(timeout)
            raise KeyboardInterrupt
        return real_wait(self, timeout=timeout)

    monkeypatch.setattr(subprocess.Popen, "wait", wait_interrupted_once)
    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        proc.stop()

    assert interrupted, "the interrupt should have hit the grace wait"
    assert time.monotonic() - began < 10, "an interrupt cuts the grace period short"
    assert _gone(leader)
    assert _gone(grandchild)
    proc.stop()  # a retry after the interrupt is harmless


def test_real_sigterm_during_grace_wait_raises_keyboard_interrupt_and_kills_the_group(
    start_stubborn, own_signal_handlers
):
    proc, grandchild = start_stubborn(30)
    leader = proc.pid
    assert leader is not None
    timer = threading.Timer(0.3, os.kill, args=(os.getpid(), signal.SIGTERM))
    began = time.monotonic()
    with interrupts_unwind():
        timer.start()
        with pytest.raises(KeyboardInterrupt, match="received SIGTERM"):
            proc.stop()
    timer.join()

    assert time.monotonic() - began < 10
    assert _gone(leader)
    assert _gone(grandchild)


def test_second_signal_while_shutting_down_is_absorbed_and_skips_the_grace_wait(
    start_stubborn, own_signal_handlers
):
    proc, grandchild = start_stubborn(30)
    leader = proc.pid
    assert leader is not None
    with interrupts_unwind():
        with pytest.raises(KeyboardInterrupt, match="received SIGTERM"):
            signal.raise_signal(signal.SIGTERM)
        assert signals.shutting_down()
        assert not signals.teardown_hurried()
        timer = threading.Timer(0.3, os.kill, args=(os.getpid(), signal.SIGINT))
        began = time.monotonic()
        timer.start()
        proc.stop()  # no KeyboardInterrupt: the second signal is absorbed
        timer.join()
        took_s = time.monotonic() - began

    assert signals.teardown_hurried()
    assert took_s < 10, "the second signal should cut the 30 s grace wait short"
    assert proc.returncode == -signal.SIGKILL
    assert _gone(leader)
    assert _gone(grandchild)
    # still shutting down after the block: the signals are ignored rather than restored to a default
    # that would end the process by the signal
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    signal.raise_signal(signal.SIGTERM)


def test_stop_also_ends_the_orphan_watchdog(tmp_path):
    with ManagedProcess(["sleep", "60"], tmp_path / "sleep.log", name="sleep") as proc:
        assert proc._watchdog is not None
        watchdog = proc._watchdog.pid
        assert not _gone(watchdog)
    assert _gone(watchdog)
    assert proc._watchdog is None


def _orphan(tmp_path, cleanup: list[str]) -> tuple[list[int], int]:
    """SIGKILL a harness-like process with a live ManagedProcess tree; return the tree's pids and
    the watchdog's."""
    harness = subprocess.Popen(
        [sys.executable, "-c", ORPHANING_HARNESS, str(tmp_path / "tree.log"), *cleanup],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        harness.stdin.write(STUBBORN)
        harness.stdin.close()
        leader, grandchild, watchdog = (int(pid) for pid in harness.stdout.readline().split())
        assert not _gone(leader)
        assert not _gone(grandchild)
    finally:
        harness.kill()  # SIGKILL: none of the harness's teardown runs
        harness.wait()
        harness.stdout.close()
    return [leader, grandchild], watchdog


def test_sigkilled_harness_leaves_no_process_of_its_tree_behind(tmp_path):
    tree, watchdog = _orphan(tmp_path, cleanup=[])
    try:
        assert _wait_gone(tree, timeout_s=5) == [], "the leader or its grandchild outlived the harness"
        assert _wait_gone([watchdog], timeout_s=5) == []
    finally:
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_sigkilled_harness_has_the_orphan_cleanup_command_run(tmp_path):
    marker = tmp_path / "cleaned-up"
    tree, _ = _orphan(tmp_path, cleanup=["touch", str(marker)])
    assert _wait_gone(tree, timeout_s=5) == []
    deadline = time.monotonic() + 5
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the watchdog should run the cleanup command (e.g. docker rm) after the kill"


def test_interrupts_unwind_restores_the_previous_handlers():
    def mine(signum, frame):
        raise AssertionError("not expected to run")

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        with interrupts_unwind():
            assert signal.getsignal(signal.SIGTERM) is not mine
            assert signal.getsignal(signal.SIGHUP) is signal.getsignal(signal.SIGTERM)
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_start_of_missing_binary_raises_run_error(tmp_path):
    proc = ManagedProcess([str(tmp_path / "no-such-binary")], tmp_path / "missing.log", name="missing")
    with pytest.raises(RunError, match=r"missing: could not start .*no-such-binary"):
        proc.start()
    proc.stop()  # nothing to stop, still safe


def test_wait_until_reports_exit_code_and_log_tail_when_child_dies_early(tmp_path):
    argv = ["sh", "-c", "echo 'model file is corrupt' >&2; exit 3"]
    with ManagedProcess(argv, tmp_path / "early.log", name="early") as proc, pytest.raises(RunError) as err:
        proc.wait_until(lambda: False, timeout_s=30, poll_s=0.05)

    message = str(err.value)
    assert message == "early exited with code 3 before it was ready", "one line; the tail is for the report"
    assert err.value.log == str(tmp_path / "early.log")
    assert "model file is corrupt" in err.value.log_tail
