"""CPU and resident memory of a server's whole process tree, sampled in a background thread.

A model server is a tree (TorchServe: Python launcher -> Java frontend -> one Python process per
worker), and the interesting CPU is in the leaves, so every sample walks the tree again:
children appear and disappear, and a worker that dies and comes back under a new pid is a
restart, which makes the window's numbers suspect.

CPU is accounted from each process's cumulative user + system time: a process seen before
contributes its increase, one born since the previous sample its whole CPU time. The mean is
total CPU time over wall time (not a mean of per-sample percentages), in percent of one core
(200% = two cores busy). The last fraction of an interval of a process that exits is lost.
RSS is summed over the tree, so pages shared between processes count once per process.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import psutil

_MIB = 1024 * 1024
_ProcKey = tuple[int, float]  # (pid, create_time): a reused pid is a different process
# psutil derives create_time from the boot time, which Linux reports in whole seconds: a process
# first seen after the first sample and created no earlier than this before it is new
_BOOT_TIME_SLACK_S = 1.0


@dataclass(frozen=True)
class _Tick:
    wall_s: float  # monotonic
    cpu_percent: float | None  # over the interval since the previous tick; None on the first
    rss_bytes: int
    pids: frozenset[int]


class ProcessTreeSampler:
    """Samples `pid` and all its descendants every `interval_s` until stopped.

    Use as a context manager around the measurement window; `summary()` afterwards. Never
    raises because the process (or any child) exits.
    """

    def __init__(self, pid: int, interval_s: float = 0.25) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.pid = pid
        self.interval_s = interval_s
        self._procs: dict[_ProcKey, psutil.Process] = {}
        self._last_cpu: dict[_ProcKey, float] = {}
        self._initial_children: set[_ProcKey] | None = None
        self._seen_children: set[_ProcKey] = set()
        self._current_children: set[_ProcKey] = set()
        self._ticks: list[_Tick] = []
        self._root: psutil.Process | None = None
        self._root_died = False
        self._first_tick_epoch: float | None = None
        self._notes: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> ProcessTreeSampler:
        try:
            self._root = psutil.Process(self.pid)
        except psutil.Error as exc:
            self._notes.append(f"server process {self.pid} not found: {exc}")
            self._root_died = True
            return self
        self._sample()  # the baseline, taken before the window begins
        self._thread = threading.Thread(target=self._run, name=f"tree-sampler-{self.pid}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling, after one last sample; safe to call twice."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        self._sample()

    def __enter__(self) -> ProcessTreeSampler:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._sample()
            except Exception as exc:  # a sampler bug must not kill the run it observes
                self._notes.append(f"sampling failed: {type(exc).__name__}: {exc}")
                return

    # ---- sampling --------------------------------------------------------------------------

    def _tree(self) -> list[tuple[_ProcKey, psutil.Process]]:
        """The live processes of the tree, root first; zombies count as gone."""
        root = self._root
        if root is None or self._root_died:
            return []
        try:
            if not root.is_running() or root.status() == psutil.STATUS_ZOMBIE:
                self._root_died = True
                return []
            members = [root, *root.children(recursive=True)]
        except psutil.Error:
            self._root_died = True
            return []
        tree = []
        for proc in members:
            try:
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                key = (proc.pid, proc.create_time())
            except psutil.Error:
                continue
            tree.append((key, self._procs.setdefault(key, proc)))
        return tree

    def _sample(self) -> None:
        with self._lock:
            now, epoch = time.monotonic(), time.time()
            previous = self._ticks[-1] if self._ticks else None
            cpu_delta, rss, keys = 0.0, 0, []
            for key, proc in self._tree():
                try:
                    with proc.oneshot():
                        times = proc.cpu_times()
                        rss_bytes = proc.memory_info().rss
                except psutil.Error:
                    continue  # exited between listing and reading
                cpu = times.user + times.system
                if key in self._last_cpu:
                    cpu_delta += cpu - self._last_cpu[key]
                elif (
                    self._first_tick_epoch is not None
                    and key[1] >= self._first_tick_epoch - _BOOT_TIME_SLACK_S
                ):
                    cpu_delta += cpu  # born since the previous sample: all its CPU is in this interval
                self._last_cpu[key] = cpu
                rss += rss_bytes
                keys.append(key)
            children = {k for k in keys if k[0] != self.pid}
            if self._initial_children is None:
                self._initial_children = set(children)
            self._seen_children |= children
            live = set(keys)
            self._last_cpu = {k: v for k, v in self._last_cpu.items() if k in live}
            percent = None
            if previous is not None and now > previous.wall_s:
                percent = 100.0 * cpu_delta / (now - previous.wall_s)
            self._ticks.append(_Tick(now, percent, rss, frozenset(k[0] for k in keys)))
            if self._first_tick_epoch is None:
                self._first_tick_epoch = epoch
            self._current_children = children

    # ---- results ---------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """server_cpu_percent (mean) and _max, server_rss_mb_max and _mean (MiB), restarted, pids.

        restarted: the root died, or a child present at the start exited and a new child appeared.
        """
        with self._lock:
            ticks = [t for t in self._ticks if t.pids]
            intervals = [t for t in ticks if t.cpu_percent is not None]
            initial = set(self._initial_children or set())
            current = set(self._current_children)
            seen = set(self._seen_children)
            notes = list(self._notes)
            root_died = self._root_died
        exited = initial - current
        new = seen - initial
        span = ticks[-1].wall_s - ticks[0].wall_s if len(ticks) > 1 else 0.0
        percents = [t.cpu_percent for t in intervals if t.cpu_percent is not None]
        mean_cpu = None
        if intervals and span > 0:
            # weight each interval by its length: total CPU time over total wall time
            weighted = 0.0
            for prev, tick in itertools.pairwise(ticks):
                if tick.cpu_percent is not None:
                    weighted += tick.cpu_percent * (tick.wall_s - prev.wall_s)
            mean_cpu = weighted / span
        if root_died:
            notes.append(f"server process {self.pid} exited during sampling")
        return {
            "server_cpu_percent": mean_cpu,
            "server_cpu_percent_max": max(percents) if percents else None,
            "server_rss_mb_max": max(t.rss_bytes for t in ticks) / _MIB if ticks else None,
            "server_rss_mb_mean": sum(t.rss_bytes for t in ticks) / len(ticks) / _MIB if ticks else None,
            "samples": len(ticks),
            "sampled_s": span,
            "restarted": root_died or bool(exited and new),
            "root_alive": not root_died,
            "initial_pids": sorted(k[0] for k in initial),
            "final_pids": sorted(k[0] for k in current),
            "exited_pids": sorted(k[0] for k in exited),
            "new_pids": sorted(k[0] for k in new),
            "notes": notes,
        }
