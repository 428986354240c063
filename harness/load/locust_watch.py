"""Follow a running Locust test from the harness side: its files, samples, windows and processes.

The Locust processes flush their requests to CSV every FLUSH_S; LocustRunWatch tails those
files, counts the measured windows as they end, asks the stop rule, and writes the stop file
(with the measured end, so that an open loop still sends what was due before it).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from harness.errors import RunError
from harness.load.cpu import CpuSampler
from harness.load.plan import MeasureHooks, StopWhen, WindowPlan
from harness.load.result import Sample
from harness.load.samples import SampleTail
from harness.processes import ManagedProcess
from harness.scenario.load_spec import LoadSpec

FLUSH_S = 0.5  # how often Locust processes hand their finished requests on


class LocustRunFiles:
    """Where one load run keeps its files, inside `dir`, named after the engine (`prefix`)."""

    def __init__(self, run_dir: Path, prefix: str = "locust") -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.dir = run_dir
        self.prefix = prefix
        self.config = run_dir / f"{prefix}_config.json"
        self.bodies = run_dir / f"{prefix}_bodies.bin"  # the request bodies, named by the config
        self.samples = run_dir / f"{prefix}_samples.csv"  # a single process's; workers' get _w<index>
        self.started = run_dir / f"{prefix}_started.json"
        self.meta = run_dir / f"{prefix}_meta.json"
        self.stop = run_dir / f"{prefix}_stop"
        self.log = run_dir / f"{prefix}.log"

    def sample_files(self) -> list[Path]:
        return sorted(self.dir.glob(f"{self.prefix}_samples*.csv"))

    def clean(self) -> None:
        for stale in [*self.sample_files(), self.started, self.meta, self.stop]:
            stale.unlink(missing_ok=True)


class LocustRunWatch:
    """Follows a running test: its samples, its windows and its processes, and stops it when done."""

    def __init__(
        self,
        load: LoadSpec,
        plan: WindowPlan,
        files_: LocustRunFiles,
        main: ManagedProcess,
        workers: list[ManagedProcess],
        stop_when: StopWhen | None,
        *,
        poll_s: float,
        start_wait_s: float,
        stop_slack_s: float,
        hooks: MeasureHooks | None = None,
    ) -> None:
        self.load, self.plan, self.files = load, plan, files_
        self.main, self.workers, self.stop_when = main, workers, stop_when
        self.poll_s = poll_s  # also the CPU sampling period
        self.start_wait_s = start_wait_s  # from launch to the test's start (workers connecting included)
        self.stop_slack_s = stop_slack_s
        self.main_cpu = CpuSampler(main.pid)
        # local workers report their CPU time themselves; these read where they run (placement)
        self.worker_cpus = [CpuSampler(worker.pid) for worker in workers]
        self.samples: list[Sample] = []
        self.tails: dict[Path, SampleTail] = {}
        self.windows = 0
        self.reason: str | None = None
        self.hooks = hooks
        self.measuring = False
        # a stop rule judges complete windows: wait for the rows of the window's last requests
        self.grace_s = 0.0 if stop_when is None else FLUSH_S + 2 * poll_s

    def until_stopped(self) -> None:
        """Poll until the main Locust process exits; ask it to stop once the windows are decided."""
        wait_s = self.start_wait_s
        start_deadline = time.monotonic() + wait_s
        stop_deadline = math.inf
        start_epoch: float | None = None
        while self.main.is_alive():
            for sampler in (self.main_cpu, *self.worker_cpus):
                sampler.sample()
            if self.reason is None:
                self._check_workers()
            if start_epoch is None:
                start_epoch = _read_start(self.files.started)
                if start_epoch is None and time.monotonic() > start_deadline:
                    raise RunError(
                        f"{self.main.name} did not start the test within {wait_s:.0f}s",
                        log=self.files.log,
                        log_tail=self.main.log_tail(),
                    )
            elif self.reason is None:
                self._follow(time.time() - start_epoch)
                if self.reason is not None:
                    # requests due before the measured end are still sent (the open loop drains them)
                    _write_json(self.files.stop, {"stop_due_s": self.plan.end_of(self.windows)})
                    drain_s = 4 * self.load.timeout_s + 20.0
                    stop_deadline = time.monotonic() + drain_s + self.stop_slack_s
            elif time.monotonic() > stop_deadline:
                raise RunError(
                    f"{self.main.name} did not stop when asked",
                    log=self.files.log,
                    log_tail=self.main.log_tail(),
                )
            time.sleep(self.poll_s)
        if self.reason is None and self.main.returncode == 0:
            raise RunError(
                f"{self.main.name} ended by itself before the measurement was complete",
                log=self.files.log,
                log_tail=self.main.log_tail(),
            )

    def _follow(self, now_s: float) -> None:
        for path in self.files.sample_files():
            self.tails.setdefault(path, SampleTail(path))
        for tail in self.tails.values():
            self.samples.extend(tail.read_new())
        if self.hooks is not None and not self.measuring and now_s >= self.plan.measure_start_s:
            self.measuring = True
            self.hooks.start()
        while self.reason is None and now_s >= self.plan.end_of(self.windows + 1) + self.grace_s:
            self.windows += 1
            self.reason = self.plan.decide(self.windows, self.samples, self.stop_when)
        if self.reason is not None and self.hooks is not None and self.measuring:
            self.measuring = False
            self.hooks.end()

    def _check_workers(self) -> None:
        for worker in self.workers:
            if not worker.is_alive():
                wait_exit(self.main, 3.0)  # a master that gave up makes its workers quit: report the master
                if not self.main.is_alive():
                    return
                raise RunError(
                    f"{worker.name} exited with code {worker.returncode} during the run",
                    log=worker.log_path,
                    log_tail=worker.log_tail(),
                )


def _read_start(path: Path) -> float | None:
    try:
        return float(json.loads(path.read_text())["test_start_epoch_s"])
    except (OSError, ValueError, KeyError):
        return None  # not written yet (or mid-rename)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)  # the Locust process never sees a half-written file


def wait_exit(proc: ManagedProcess, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while proc.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
