"""ManagedProcess tears down its whole process group, even when interrupted while stopping."""

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

from harness.errors import RunError
from harness.serving import process as process_module
from harness.serving.process import ManagedProcess
from harness.signals import interrupts_unwind

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

    assert interrupted == [30], "the interrupt should have hit the grace wait"
    assert time.monotonic() - began < 10, "an interrupt cuts the grace period short"
    assert _gone(leader)
    assert _gone(grandchild)
    proc.stop()  # a retry after the interrupt is harmless


def test_real_sigterm_during_grace_wait_raises_keyboard_interrupt_and_kills_the_group(start_stubborn):
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
    assert "early exited with code 3 before it was ready" in message
    assert "model file is corrupt" in message
