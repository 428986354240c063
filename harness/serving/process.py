"""One small class for every server or load-generator process the harness starts.

Each process runs in its own session (so its whole group can be signalled), logs to a file in
the run folder (never a pipe: TorchServe's Java child inherits it and a reader would hang), is
polled for readiness with a deadline while checking that it is alive, and is stopped with
SIGTERM to the group, a short wait, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from harness.errors import RunError

FATAL_MARKERS = (
    "Traceback (most recent call last)",
    "Exception in thread",
    "FATAL",
    "Address already in use",
)
# short: a run stops Locust, then TorchServe, and GitHub Actions follows its SIGINT with SIGTERM
# after 7.5 s and SIGKILL after 10 s; our servers need no graceful shutdown, only to be gone
STOP_GRACE_S = 3.0


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
    ) -> None:
        self.argv = list(argv)
        self.log_path = Path(log_path)
        self.name = name
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.stop_grace_s = stop_grace_s
        self.fatal_markers = tuple(fatal_markers)
        self._proc: subprocess.Popen[bytes] | None = None
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
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        try:
            self._proc = subprocess.Popen(
                self.argv,
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
        return self

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
                    f"{self.name} exited with code {self.returncode} before it was ready; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            fatal = self.fatal_line()
            if fatal:
                raise RunError(
                    f"{self.name} failed while starting: {fatal}; log {self.log_path}:\n{self.log_tail()}"
                )
            try:
                if ready():
                    return
            except Exception:  # probes raise many kinds of errors (refused, 503, bad JSON) until ready
                pass
            if time.monotonic() > deadline:
                raise RunError(
                    f"{self.name} not ready after {timeout_s:.0f}s; log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(poll_s)

    def wait(self, timeout_s: float | None = None) -> int:
        """Wait for the process to exit by itself and return its exit code."""
        assert self._proc is not None
        return self._proc.wait(timeout=timeout_s)

    def stop(self) -> None:
        """SIGTERM the whole group, wait up to `stop_grace_s` for the leader, then SIGKILL the group.

        Safe to call twice. A second Ctrl-C or SIGTERM during the grace wait cuts the wait short
        but never the SIGKILL: that runs in `finally`.
        """
        proc = self._proc
        if proc is None or self._stopped:
            self._close_log()
            return
        pgid = proc.pid  # start_new_session makes the child its group's leader
        try:
            _signal_group(pgid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=self.stop_grace_s)
        finally:
            # children (TorchServe's Java) may outlive the leader: kill the group regardless
            _signal_group(pgid, signal.SIGKILL)
            self._close_log()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            _wait_group_gone(pgid, timeout_s=5)
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
