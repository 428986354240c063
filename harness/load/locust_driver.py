"""Drive an HTTP endpoint with Locust running as a separate process.

Locust is never imported here: gevent's monkey patching breaks once TensorFlow is loaded, and
a separate process also keeps the load generator's CPU visible on its own. The packaged
locustfile records every request's exact latency; this module reads those samples, cuts the
measurement window out of them and watches the Locust process's CPU.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import RunError
from harness.load.result import LoadResult
from harness.load.samples import read_samples, summarize
from harness.scenario.schema import LoadSpec
from harness.serving.base import HttpEndpoint
from harness.serving.process import ManagedProcess

LOCUSTFILE_PACKAGE = "harness.load.locustfiles"
LOCUSTFILE_NAME = "predict.py"
# Locust is one gevent loop on one core: near 100% of a core it queues its own requests
SATURATION_CPU_PERCENT = 90.0
# Only tracebacks mean a locustfile bug; failed requests are classified by the locustfile
LOCUST_FATAL_MARKERS = ("Traceback (most recent call last)",)


class LocustDriver:
    """Runs `python -m locust --headless` against an endpoint and returns exact per-request results."""

    name = "locust"

    def __init__(
        self, *, startup_slack_s: float = 60.0, poll_s: float = 0.2, python: str | None = None
    ) -> None:
        self.startup_slack_s = startup_slack_s  # Locust import and exit, on a busy machine
        self.poll_s = poll_s  # also the CPU sampling period
        self.python = python or sys.executable

    def run(self, endpoint: HttpEndpoint, load: LoadSpec, instances: np.ndarray, run_dir: Path) -> LoadResult:
        """Drive `load` at `endpoint` with rows of `instances`; files go to `run_dir`."""
        rows = _instances_to_rows(instances)
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        paths = {
            "instances": run_dir / "load_instances.json",
            "samples": run_dir / "locust_samples.csv",
            "meta": run_dir / "locust_meta.json",
            "log": run_dir / "locust.log",
        }
        for stale in ("samples", "meta"):
            paths[stale].unlink(missing_ok=True)
        paths["instances"].write_text(json.dumps(rows))

        # Locust's --run-time is whole seconds and its timer starts from gevent's cached loop time,
        # which can lag by a few hundred ms: run a second longer and cut the window ourselves
        run_time_s = math.ceil(load.warmup_s + load.measure_s) + 1
        # users finish the request in flight at the end instead of being killed mid-request
        stop_timeout_s = math.ceil(load.timeout_s) + 1
        env = _locust_env(endpoint, load, paths)
        with as_file(files(LOCUSTFILE_PACKAGE).joinpath(LOCUSTFILE_NAME)) as locustfile:
            argv = [
                self.python, "-m", "locust",
                "-f", str(locustfile),
                "--headless",
                "-u", str(load.users),
                "-r", f"{load.spawn_rate:g}",
                "--run-time", f"{run_time_s}s",
                "--stop-timeout", f"{stop_timeout_s}s",
                "--host", endpoint.base_url.rstrip("/"),
                "--exit-code-on-error", "0",  # failed requests are classified by us, not fatal
                "--only-summary",
                "--csv", str(run_dir / "locust"),  # for humans only: it misses the last second
            ]  # fmt: skip
            proc = ManagedProcess(
                argv, paths["log"], name="locust", env=env, cwd=run_dir, fatal_markers=LOCUST_FATAL_MARKERS
            )
            with proc:
                cpu = _CpuSampler(proc.pid)
                allowed_s = run_time_s + stop_timeout_s + self.startup_slack_s
                deadline = time.monotonic() + allowed_s
                while proc.is_alive():
                    cpu.sample()
                    if time.monotonic() > deadline:
                        raise RunError(
                            f"locust did not exit within {allowed_s:.0f}s (run time {run_time_s}s); "
                            f"log {paths['log']}:\n{proc.log_tail()}"
                        )
                    time.sleep(self.poll_s)
                code = proc.returncode
                fatal = proc.fatal_line()
                tail = proc.log_tail()
        if code != 0 or fatal:
            raise RunError(f"locust failed (exit code {code}); log {paths['log']}:\n{tail}")
        if not paths["meta"].exists():
            raise RunError(f"locust exited without writing {paths['meta'].name}; log {paths['log']}:\n{tail}")
        meta = json.loads(paths["meta"].read_text())
        return self._result(load, meta, paths["samples"], cpu)

    def _result(
        self, load: LoadSpec, meta: dict[str, Any], samples_path: Path, cpu: _CpuSampler
    ) -> LoadResult:
        window_start = load.warmup_s
        window_end = min(load.warmup_s + load.measure_s, float(meta["stop_s"]))
        if window_end <= window_start:
            raise RunError(
                f"locust stopped {meta['stop_s']:.1f}s into the run, before the measure window "
                f"({load.warmup_s:g}s warm-up) began"
            )
        result = summarize(
            read_samples(samples_path),
            window_start_s=window_start,
            window_end_s=window_end,
            generator=self.name,
            users=load.users,
            request_batch_size=load.request_batch_size,
            warmup_s=load.warmup_s,
        )
        start_epoch = float(meta["test_start_epoch_s"])
        result.client_cpu_percent = cpu.percent(start_epoch + window_start, start_epoch + window_end)
        result.warnings.extend(_warnings(load, meta, result))
        return result


def _instances_to_rows(instances: np.ndarray) -> list[list[float]]:
    array = np.asarray(instances)
    if array.ndim != 2 or array.shape[0] == 0:
        raise RunError(f"load instances must be a non-empty 2-D array of rows, got shape {array.shape}")
    return array.astype(float).tolist()


def _locust_env(endpoint: HttpEndpoint, load: LoadSpec, paths: dict[str, Path]) -> dict[str, str]:
    # inherited LOCUST_* variables would silently change the run (Locust reads its options from them)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
    env.update(
        PYTHONUNBUFFERED="1",
        HARNESS_LOAD_PATH=endpoint.path if endpoint.path.startswith("/") else "/" + endpoint.path,
        HARNESS_LOAD_HEADERS=json.dumps(endpoint.headers or {}),
        HARNESS_LOAD_INSTANCES=str(paths["instances"]),
        HARNESS_LOAD_BATCH=str(load.request_batch_size),
        HARNESS_LOAD_TIMEOUT_S=repr(load.timeout_s),
        HARNESS_LOAD_SAMPLES=str(paths["samples"]),
        HARNESS_LOAD_META=str(paths["meta"]),
    )
    return env


def _warnings(load: LoadSpec, meta: dict[str, Any], result: LoadResult) -> list[str]:
    warnings = []
    cpu = result.client_cpu_percent
    if cpu is not None and cpu > SATURATION_CPU_PERCENT:
        warnings.append(
            f"load generator saturated (Locust used {cpu:.0f}% of one core): "
            "results may understate the server"
        )
    spawned = meta.get("spawning_complete_s")
    if spawned is None or spawned > load.warmup_s:
        when = "never" if spawned is None else f"{spawned:.1f}s into the run"
        warnings.append(
            f"not all {load.users} users had started by the end of the {load.warmup_s:g}s warm-up "
            f"(spawning completed {when}): raise warmup_s or spawn_rate"
        )
    if result.ok_count == 0:
        warnings.append("no request succeeded in the measure window")
    return warnings


class _CpuSampler:
    """Cumulative CPU seconds of one process, sampled against wall-clock time."""

    def __init__(self, pid: int | None) -> None:
        import psutil

        self._samples: list[tuple[float, float]] = []  # (epoch s, cpu s)
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
        except psutil.Error:  # exited between the liveness check and now
            return
        self._samples.append((time.time(), times.user + times.system))

    def percent(self, start_epoch: float, end_epoch: float) -> float | None:
        """Average CPU (% of one core) over the samples inside [start, end], else over the whole run."""
        inside = [s for s in self._samples if start_epoch <= s[0] <= end_epoch]
        chosen = inside if len(inside) >= 2 else self._samples
        if len(chosen) < 2 or chosen[-1][0] <= chosen[0][0]:
            return None
        (t0, c0), (t1, c1) = chosen[0], chosen[-1]
        return 100.0 * (c1 - c0) / (t1 - t0)
