"""CPU use of load-generator processes over the measured part of a run.

A Locust process is one gevent loop on one core: near 100% of that core it delays its own sends
and reads, so the harness reports each load process's CPU (% of one core) over the measure
window. Local processes are sampled with psutil; Locust workers also report their own CPU time
(`time.process_time()`), which is the only way to see a remote worker's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any


def cpu_percent(points: Sequence[tuple[float, float]], start: float, end: float) -> float | None:
    """Average CPU (% of one core) from (time s, cumulative CPU s) points.

    Uses the points inside [start, end] when there are two, else the whole run (a short window
    between two samples); None with fewer than two points.
    """
    inside = [p for p in points if start <= p[0] <= end]
    chosen = inside if len(inside) >= 2 else list(points)
    if len(chosen) < 2 or chosen[-1][0] <= chosen[0][0]:
        return None
    (t0, c0), (t1, c1) = chosen[0], chosen[-1]
    return 100.0 * (c1 - c0) / (t1 - t0)


class CpuSampler:
    """Cumulative CPU seconds of one local process, sampled against wall-clock (epoch) time."""

    def __init__(self, pid: int | None) -> None:
        import psutil

        self.samples: list[tuple[float, float]] = []  # (epoch s, cpu s)
        self.on_cpu: list[tuple[float, int]] = []  # (epoch s, the CPU it last ran on)
        self.affinity: list[int] | None = None  # the CPUs it may run on, as last read
        try:
            self._proc: Any = psutil.Process(pid) if pid is not None else None
        except psutil.Error:
            self._proc = None

    def sample(self) -> None:
        import psutil

        if self._proc is None:
            return
        try:
            times = self._proc.cpu_times()
            on_cpu = self._proc.cpu_num()
            self.affinity = sorted(self._proc.cpu_affinity())
        except psutil.Error:  # exited between the liveness check and now
            return
        now = time.time()
        self.samples.append((now, times.user + times.system))
        self.on_cpu.append((now, on_cpu))

    def percent(self, start_epoch: float, end_epoch: float) -> float | None:
        return cpu_percent(self.samples, start_epoch, end_epoch)

    def cpus_used(self, start_epoch: float, end_epoch: float) -> set[int]:
        """The CPUs it was seen running on between the two times (one reading per sample)."""
        return {cpu for t, cpu in self.on_cpu if start_epoch <= t <= end_epoch}
