"""Drive an in-process predict function from a pool of threads (the in-process target's load).

Closed loop: each of `users` threads calls `predict` back to back, like Locust users. Open loop:
the threads are in-flight slots sharing one seeded arrival schedule (harness/load/arrivals.py);
a free thread takes the next due time, waits for it and calls, and latency counts from the due
time. Latencies are exact perf_counter times of the call. The run measures in windows after the
warm-up, like LocustDriver, and ends when `measure_s` is covered and the stop rule (if any) agrees.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from harness.data.tensors import Batch
from harness.errors import RunError
from harness.load.arrivals import ArrivalSchedule, process_seed
from harness.load.plan import LoadPoint, StopWhen, WindowPlan, single_point
from harness.load.result import OK, LoadResult, Sample
from harness.load.samples import summarize
from harness.scenario.load_spec import LoadSpec

Predict = Callable[[Batch], Any]
MAX_MESSAGE_CHARS = 200
# after the run a thread still inside predict gets this long past its timeout to return
JOIN_SLACK_S = 5.0
# with a stop rule, a window is judged this long after it ends (calls due in it still finishing)
WINDOW_GRACE_S = 0.1


class ThreadPoolDriver:
    """Closed- or open-loop load on a Python callable; the same statistics as LocustDriver, no HTTP."""

    name = "threadpool"

    def run(
        self,
        predict: Predict,
        load: LoadSpec,
        batch: Batch,
        *,
        point: LoadPoint | None = None,
        stop_when: StopWhen | None = None,
        seed: int = 0,
    ) -> LoadResult:
        """Call `predict` with batches (input name -> array) of `load.request_batch_size` examples of
        `batch`, cycling over them.

        `point`, `stop_when` and `seed` mean what they mean for LocustDriver.run.
        """
        examples = _examples(batch)
        point = single_point(load, point)
        plan = WindowPlan.for_load(load, has_stop_rule=stop_when is not None)
        pool = _Pool(predict, load, point, examples, seed, plan.longest_s)
        pool.start()
        windows, reason = 0, None
        grace = 0.0 if stop_when is None else WINDOW_GRACE_S
        try:
            while reason is None:
                windows += 1
                _sleep_until(pool.t0 + plan.end_of(windows) + grace)
                reason = plan.decide(windows, pool.samples(), stop_when)
        finally:
            # never in the future (an interrupted wait): the threads then have nothing left to wait for
            pool.stop(min(plan.end_of(windows), time.perf_counter() - pool.t0))
        join_s = 2 * load.timeout_s + JOIN_SLACK_S  # open loop: the drain, then the last call
        hung = pool.join(join_s)

        result = summarize(
            pool.samples(),
            window_start_s=plan.measure_start_s,
            window_end_s=plan.end_of(windows),
            generator=self.name,
            users=point.users,
            request_batch_size=load.request_batch_size,
            warmup_s=load.warmup_s,
            mode=point.mode,
            target_rate_rps=point.rate_rps,
            late_threshold_ms=load.validity.late_ms,
            window_s=plan.window_s,
        )
        result.stopped_reason = reason
        # No client CPU: this process is the client and the model at once, so its CPU says
        # nothing about whether the load generator is saturated.
        if hung:
            result.warnings.append(f"{hung} predict call(s) had not returned {join_s:g}s after the run ended")
        if point.mode == "open" and result.late_fraction > load.validity.max_late_fraction:
            result.warnings.append(
                f"the load threads called {result.late_count} of {result.request_count} times more than "
                f"{load.validity.late_ms:g} ms late (worst {result.max_late_ms:.0f} ms): they could not "
                f"keep up with {point.rate_rps:g} calls/s"
            )
        if result.ok_count == 0:
            result.warnings.append("no call succeeded in the measure window")
        return result


class _Pool:
    """The load threads of one run: each records its own samples; `stop()` ends them."""

    def __init__(
        self,
        predict: Predict,
        load: LoadSpec,
        point: LoadPoint,
        examples: dict[str, np.ndarray],
        seed: int,
        longest_s: float,
    ) -> None:
        self.predict, self.load, self.point = predict, load, point
        self.batches = _BatchCycle(examples, load.request_batch_size)
        self.schedule = (
            ArrivalSchedule(point.rate_rps, load.arrival, process_seed(seed, 0)) if point.rate_rps else None
        )
        self.per_thread: list[list[Sample]] = [[] for _ in range(point.users)]
        self.in_flight: list[float | None] = [None] * point.users  # due time of the call a thread is in
        self.stop_at = longest_s  # test time from which no call starts
        self.stopped = threading.Event()
        self.t0 = 0.0
        self.threads = [
            threading.Thread(target=self._user, args=(i,), name=f"load-user-{i}", daemon=True)
            for i in range(point.users)
        ]
        self._barrier = threading.Barrier(point.users + 1)

    def start(self) -> None:
        for thread in self.threads:
            thread.start()
        self.t0 = time.perf_counter()
        self._barrier.wait()  # every thread reads t0 after this point

    def stop(self, at_s: float) -> None:
        self.stop_at = at_s
        self.stopped.set()

    def join(self, timeout_s: float) -> int:
        """Wait for the threads; a call that never returned becomes a timeout. Returns how many hung."""
        deadline = time.perf_counter() + timeout_s
        for thread in self.threads:
            thread.join(timeout=max(0.0, deadline - time.perf_counter()))
        hung = 0
        for i, thread in enumerate(self.threads):
            due = self.in_flight[i]
            if thread.is_alive() and due is not None:
                hung += 1
                # counted if it was due inside the window
                self.per_thread[i].append(
                    Sample(due, self.load.timeout_s * 1000.0, "timeout", "predict never returned")
                )
        return hung

    def samples(self) -> list[Sample]:
        return [s for thread_samples in self.per_thread for s in list(thread_samples)]

    def _user(self, index: int) -> None:
        self._barrier.wait()
        t0, samples, limit_ms = self.t0, self.per_thread[index], self.load.timeout_s * 1000.0
        while True:
            batch = self.batches.next()
            if self.schedule is None:
                sent = time.perf_counter()
                due = free = sent - t0
            else:
                free = time.perf_counter() - t0
                due = self.schedule.next()
                # calls due before the measured end are still made after the run stops (drained):
                # dropping the queued ones would hide the overload the open loop is there to show
                while due < self.stop_at and (wait := t0 + due - time.perf_counter()) > 0:
                    self.stopped.wait(wait)  # a stop wakes the wait at once (stop_at has changed)
                waited_ms = (time.perf_counter() - t0 - due) * 1000.0
                if due < self.stop_at and waited_ms > limit_ms:
                    message = (
                        f"not called: waited {waited_ms:.0f} ms for a free thread (limit {limit_ms:g} ms)"
                    )
                    samples.append(Sample(due, waited_ms, "timeout", message, 0.0, 0.0))
                    continue
                sent = time.perf_counter()
            if due >= self.stop_at:
                return
            self.in_flight[index] = due
            outcome, message = _call(self.predict, batch)
            end = time.perf_counter()
            self.in_flight[index] = None
            service_ms = (end - sent) * 1000.0
            if outcome == OK and service_ms > limit_ms:
                outcome, message = "timeout", f"took {service_ms:.1f} ms (limit {self.load.timeout_s:g}s)"
            if self.schedule is None:
                samples.append(Sample(due, service_ms, outcome, message))
            else:
                late_ms = max(0.0, (sent - t0 - max(due, free)) * 1000.0)
                samples.append(Sample(due, (end - t0 - due) * 1000.0, outcome, message, late_ms, service_ms))


class _BatchCycle:
    """The next `batch_size` examples on each call, wrapping around; safe to share between threads."""

    def __init__(self, examples: dict[str, np.ndarray], batch_size: int) -> None:
        self._examples = examples
        self._total = len(next(iter(examples.values())))
        self._batch_size = batch_size
        self._counter = itertools.count()
        self._lock = threading.Lock()

    def next(self) -> dict[str, np.ndarray]:
        with self._lock:
            first = next(self._counter) * self._batch_size
        index = (first + np.arange(self._batch_size)) % self._total
        return {name: array[index] for name, array in self._examples.items()}


def _examples(batch: Batch) -> dict[str, np.ndarray]:
    """The load's examples as arrays with one shared, non-zero number of rows; RunError otherwise."""
    if not isinstance(batch, Mapping) or not batch:
        raise RunError(f"load examples must be a mapping of input name to array, got {type(batch).__name__}")
    arrays = {str(name): np.asarray(array) for name, array in batch.items()}
    rows = {name: array.shape[0] if array.ndim else 0 for name, array in arrays.items()}
    if len(set(rows.values())) != 1 or 0 in rows.values():
        raise RunError(f"load examples must have the same, non-zero number of rows per input, got {rows}")
    return arrays


def _call(predict: Predict, batch: dict[str, np.ndarray]) -> tuple[str, str]:
    try:
        out = predict(batch)
    except Exception as exc:  # any failure of the model call is a counted failure
        return "exception", f"{type(exc).__name__}: {exc}"[:MAX_MESSAGE_CHARS]
    try:
        n = len(out)
    except TypeError:
        return "bad_payload", f"predict returned {type(out).__name__}, which has no length"
    rows = len(next(iter(batch.values())))
    if n != rows:
        return "bad_payload", f"{n} output rows for {rows} examples"
    return OK, ""


def _sleep_until(deadline: float) -> None:
    """Sleep until perf_counter reaches `deadline`."""
    remaining = deadline - time.perf_counter()
    if remaining > 0:
        time.sleep(remaining)
