"""One small class for every server or load-generator process the harness starts.

Each process runs in its own session (so its whole group can be signalled), logs to a file in
the run folder (never a pipe: TorchServe's Java child inherits it and a reader would hang), is
polled for readiness with a deadline while checking that it is alive, and is stopped with
SIGTERM to the group, a short wait, then SIGKILL.

If the harness itself dies without running teardown (SIGKILL, OOM killer), an orphan watchdog
kills the group: see `ORPHAN_WATCHDOG`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from harness.errors import RunError
from harness.placement import pinned_argv
from harness.signals import teardown_hurried

FATAL_MARKERS = (
    "Traceback (most recent call last)",
    "Exception in thread",
    "FATAL",
    "Address already in use",
)
# short: a run stops Locust, then TorchServe, and GitHub Actions follows its SIGINT with SIGTERM
# after 7.5 s and SIGKILL after 10 s; our servers need no graceful shutdown, only to be gone
STOP_GRACE_S = 3.0

# Why a watchdog process rather than prctl(PR_SET_PDEATHSIG): the death signal reaches only the
# direct child, and TorchServe's Java and Python workers are grandchildren; it also fires when the
# parent *thread* that forked exits. The watchdog blocks on a pipe whose only write end the harness
# holds (non-inheritable, so no server keeps it open). The kernel closes it however the harness
# dies; EOF then means "orphaned": SIGKILL the whole group, run the optional cleanup command (a
# container to remove), exit. A byte on the pipe means a normal stop: exit quietly. It also exits
# once the group is gone, so it never signals a recycled group id. It runs in its own session
# (`-I -S`: stdlib only, starts in ~20 ms) so that a terminal's Ctrl-C to our group cannot kill it first.
ORPHAN_WATCHDOG = """
import os, select, signal, sys
for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(sig, signal.SIG_IGN)
fd, pgid, cleanup = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
while True:
    readable = select.select([fd], [], [], 1.0)[0]
    if readable:
        if os.read(fd, 1):
            sys.exit(0)
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass
        if cleanup:
            os.execvp(cleanup[0], cleanup)
        sys.exit(0)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        sys.exit(0)
    except PermissionError:
        pass
"""


class ManagedProcess:
    """A child process in its own process group, logged to `log_path`, always torn down."""

    def __init__(
        self,
        argv: Sequence[str],
        log_path: Path,
        *,
        name: str,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        stop_grace_s: float = STOP_GRACE_S,
        fatal_markers: Sequence[str] = FATAL_MARKERS,
        orphan_cleanup: Sequence[str] | None = None,
        on_ready: Callable[[], None] | None = None,
        cpus: Sequence[int] | None = None,
    ) -> None:
        self.argv = list(argv)
        # the CPUs the whole process tree may use (harness.placement); None: wherever it likes
        self.cpus = tuple(cpus) if cpus is not None else None
        self.log_path = Path(log_path)
        self.name = name
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.stop_grace_s = stop_grace_s
        self.fatal_markers = tuple(fatal_markers)
        # run by the watchdog after the group kill if the harness dies: for what the group kill
        # cannot reach, such as a container behind a `docker run` client
        self.orphan_cleanup = list(orphan_cleanup or [])
        # a check once wait_until() sees the process ready (where it listens); its RunError fails the start
        self.on_ready = on_ready
        self._proc: subprocess.Popen[bytes] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._watchdog_pipe: int | None = None
        self._log_file: BinaryIO | None = None
        self._stopped = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc else None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._stopped = False
        if self.cpus is not None and not _findable(self.argv[0], self.env, self.cwd):
            raise RunError(f"{self.name}: could not start {self.argv[0]!r}: not found on PATH")
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        try:
            self._proc = subprocess.Popen(
                pinned_argv(self.argv, self.cpus),
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        except OSError as exc:
            self._close_log()
            raise RunError(f"{self.name}: could not start {self.argv[0]!r}: {exc}") from exc
        try:
            self._start_watchdog(self._proc.pid)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_watchdog(self, pgid: int) -> None:
        read_fd, write_fd = os.pipe()  # both non-inheritable: only pass_fds hands the read end on
        try:
            watchdog_argv = [sys.executable, "-I", "-S", "-c", ORPHAN_WATCHDOG, str(read_fd), str(pgid)]
            self._watchdog = subprocess.Popen(
                [*watchdog_argv, *self.orphan_cleanup],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(read_fd,),
                start_new_session=True,
            )
        except OSError as exc:
            os.close(write_fd)
            raise RunError(f"{self.name}: could not start its orphan watchdog: {exc}") from exc
        finally:
            os.close(read_fd)
        self._watchdog_pipe = write_fd

    def _dismiss_watchdog(self) -> None:
        """Tell the watchdog that teardown ran, so it exits without touching the (gone) group."""
        if self._watchdog_pipe is not None:
            with contextlib.suppress(OSError):
                os.write(self._watchdog_pipe, b"x")
            os.close(self._watchdog_pipe)
            self._watchdog_pipe = None
        if self._watchdog is not None:
            try:
                self._watchdog.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._watchdog.kill()
                self._watchdog.wait()
            self._watchdog = None

    def is_alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def fatal_line(self) -> str | None:
        """The first log line carrying a fatal marker, if any."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return None
        for line in text.splitlines():
            if any(marker in line for marker in self.fatal_markers):
                return line.strip()
        return None

    def wait_until(self, ready: Callable[[], bool], *, timeout_s: float, poll_s: float = 0.25) -> None:
        """Poll `ready()` until it is true; fail early if the process dies or logs a fatal line."""
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.is_alive():
                raise RunError(
                    f"{self.name} exited with code {self.returncode} before it was ready",
                    log=self.log_path,
                    log_tail=self.log_tail(),
                )
            fatal = self.fatal_line()
            if fatal:
                raise RunError(
                    f"{self.name} failed while starting: {fatal}", log=self.log_path, log_tail=self.log_tail()
                )
            try:
                is_ready = ready()
            except Exception:  # probes raise many kinds of errors (refused, 503, bad JSON) until ready
                is_ready = False
            if is_ready:
                if self.on_ready is not None:
                    self.on_ready()
                return
            if time.monotonic() > deadline:
                raise RunError(
                    f"{self.name} not ready after {timeout_s:.0f}s",
                    log=self.log_path,
                    log_tail=self.log_tail(),
                )
            time.sleep(poll_s)

    def wait(self, timeout_s: float | None = None) -> int:
        """Wait for the process to exit by itself and return its exit code."""
        assert self._proc is not None
        return self._proc.wait(timeout=timeout_s)

    def stop(self) -> None:
        """SIGTERM the whole group, wait up to `stop_grace_s` for the leader, then SIGKILL the group.

        Safe to call twice. A further signal while the harness is already shutting down (see
        harness.signals) cuts the grace wait short; an interrupt raised during the wait does too.
        Neither can skip the SIGKILL: that runs in `finally`.
        """
        proc = self._proc
        if proc is None or self._stopped:
            self._close_log()
            self._dismiss_watchdog()
            return
        pgid = proc.pid  # start_new_session makes the child its group's leader
        try:
            _signal_group(pgid, signal.SIGTERM)
            _wait_unless_hurried(proc, self.stop_grace_s)
        finally:
            # children (TorchServe's Java) may outlive the leader: kill the group regardless
            _signal_group(pgid, signal.SIGKILL)
            self._close_log()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            _wait_group_gone(pgid, timeout_s=5)
            self._dismiss_watchdog()
            self._stopped = True

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> ManagedProcess:
        try:
            return self.start()
        except BaseException:
            # an interrupt between Popen and the end of start() would otherwise skip __exit__
            self.stop()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _wait_unless_hurried(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Wait up to `timeout_s` for `proc` to exit; return early once teardown is hurried."""
    deadline = time.monotonic() + timeout_s
    while not teardown_hurried():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=min(0.05, left))
            return


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_group_gone(pgid: int, *, timeout_s: float) -> None:
    """Wait until no live process is left in the group.

    Orphaned children (TorchServe's Java and workers) are reaped by PID 1, which in some
    containers does so only every few seconds; a zombie holds no port or memory, so it counts as gone.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _live_members(pgid):
            return
        time.sleep(0.05)


def _live_members(pgid: int) -> list[int]:
    import psutil

    live = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                live.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    return live


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _findable(program: str, env: Mapping[str, str] | None, cwd: Path | None) -> bool:
    """Whether exec would find `program`: checked up front when a pinning step runs first, which
    would otherwise turn a missing server binary into an exit code instead of an OSError."""
    if "/" in program and cwd is not None and not os.path.isabs(program):
        program = os.path.join(cwd, program)  # exec resolves it from the child's working directory
    return shutil.which(program, path=(env if env is not None else os.environ).get("PATH")) is not None
