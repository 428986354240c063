"""Drive an in-process predict function from a pool of threads (the in-process target's load).

Each of `load.users` threads calls `predict` back to back (a closed loop, like Locust users)
for warm-up + measure seconds; latencies are exact perf_counter times of the call.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from harness.errors import RunError
from harness.load.result import LoadResult
from harness.load.samples import OK, Sample, summarize
from harness.scenario.schema import LoadSpec

Predict = Callable[[np.ndarray], Any]
MAX_MESSAGE_CHARS = 200
# after the window a thread still inside predict gets this long past its timeout to return
JOIN_SLACK_S = 5.0


class ThreadPoolDriver:
    """Closed-loop load on a Python callable; the same statistics as LocustDriver, no HTTP."""

    name = "threadpool"

    def run(self, predict: Predict, load: LoadSpec, instances: np.ndarray) -> LoadResult:
        """Call `predict` with batches of `load.request_batch_size` rows of `instances`, cycling."""
        rows = np.asarray(instances)
        if rows.ndim != 2 or rows.shape[0] == 0:
            raise RunError(f"load instances must be a non-empty 2-D array of rows, got shape {rows.shape}")
        batches = _BatchCycle(rows, load.request_batch_size)
        window_start = load.warmup_s
        window_end = load.warmup_s + load.measure_s
        per_thread: list[list[Sample]] = [[] for _ in range(load.users)]
        in_flight: list[float | None] = [None] * load.users  # start of the call each thread is inside
        barrier = threading.Barrier(load.users + 1)
        clock: dict[str, float] = {}

        def user(index: int) -> None:
            samples = per_thread[index]
            barrier.wait()
            t0 = clock["t0"]
            stop_at = t0 + window_end
            while True:
                batch = batches.next()
                start = time.perf_counter()
                if start >= stop_at:
                    return
                in_flight[index] = start - t0
                outcome, message = _call(predict, batch)
                latency_ms = (time.perf_counter() - start) * 1000.0
                in_flight[index] = None
                if outcome == OK and latency_ms > load.timeout_s * 1000.0:
                    outcome, message = "timeout", f"took {latency_ms:.1f} ms (limit {load.timeout_s:g}s)"
                samples.append(Sample(start - t0, latency_ms, outcome, message))

        threads = [
            threading.Thread(target=user, args=(i,), name=f"load-user-{i}", daemon=True)
            for i in range(load.users)
        ]
        for thread in threads:
            thread.start()
        clock["t0"] = t0 = time.perf_counter()
        barrier.wait()  # every thread reads t0 after this point
        _sleep_until(t0 + window_end)
        deadline = time.perf_counter() + load.timeout_s + JOIN_SLACK_S
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.perf_counter()))

        samples = [s for thread_samples in per_thread for s in thread_samples]
        warnings = []
        hung = [i for i, thread in enumerate(threads) if thread.is_alive()]
        for i in hung:
            started = in_flight[i]
            if started is not None:
                # never returned: a timeout, counted if it started inside the window
                samples.append(Sample(started, load.timeout_s * 1000.0, "timeout", "predict never returned"))
        if hung:
            warnings.append(
                f"{len(hung)} predict call(s) had not returned {load.timeout_s:g}s after the run ended"
            )

        result = summarize(
            samples,
            window_start_s=window_start,
            window_end_s=window_end,
            generator=self.name,
            users=load.users,
            request_batch_size=load.request_batch_size,
            warmup_s=load.warmup_s,
        )
        # No client_cpu_percent: this process is the client and the model at once, so its CPU says
        # nothing about whether the load generator is saturated.
        if result.ok_count == 0:
            warnings.append("no call succeeded in the measure window")
        result.warnings.extend(warnings)
        return result


class _BatchCycle:
    """The next `batch_size` rows on each call, wrapping around; safe to share between threads."""

    def __init__(self, rows: np.ndarray, batch_size: int) -> None:
        self._rows = rows
        self._batch_size = batch_size
        self._counter = itertools.count()
        self._lock = threading.Lock()

    def next(self) -> np.ndarray:
        with self._lock:
            first = next(self._counter) * self._batch_size
        index = (first + np.arange(self._batch_size)) % len(self._rows)
        return self._rows[index]


def _call(predict: Predict, batch: np.ndarray) -> tuple[str, str]:
    try:
        out = predict(batch)
    except Exception as exc:  # any failure of the model call is a counted failure
        return "exception", f"{type(exc).__name__}: {exc}"[:MAX_MESSAGE_CHARS]
    try:
        n = len(out)
    except TypeError:
        return "bad_payload", f"predict returned {type(out).__name__}, which has no length"
    if n != len(batch):
        return "bad_payload", f"{n} predictions for {len(batch)} instances"
    return OK, ""


def _sleep_until(deadline: float) -> None:
    """Sleep until perf_counter reaches `deadline`."""
    remaining = deadline - time.perf_counter()
    if remaining > 0:
        time.sleep(remaining)
