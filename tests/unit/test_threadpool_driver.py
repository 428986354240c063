"""ThreadPoolDriver against fake predict functions: exact latencies, warm-up cut, failure classes,
open loop, measured windows and stop rules."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from harness.errors import RunError
from harness.load import threadpool_driver
from harness.load.plan import plan_points
from harness.load.result import LoadResult, Sample
from harness.load.threadpool_driver import ThreadPoolDriver
from harness.scenario.load_spec import LoadSpec

ROWS = {"inputs": np.arange(40, dtype=np.float32).reshape(10, 4)}


def short_load(**overrides: object) -> LoadSpec:
    values = {"users": 2, "warmup_s": 0.2, "measure_s": 0.4, "request_batch_size": 1, "timeout_s": 5.0}
    values.update(overrides)
    return LoadSpec(**values)


class SleepyPredict:
    """Sleeps, then returns one row of outputs per example; counts calls and keeps the batches it saw."""

    def __init__(self, sleep_s: float = 0.002) -> None:
        self.sleep_s = sleep_s
        self.calls = 0
        self.batches: list[dict[str, np.ndarray]] = []
        self._lock = threading.Lock()

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        with self._lock:
            self.calls += 1
            self.batches.append({name: array.copy() for name, array in batch.items()})
        time.sleep(self.sleep_s)
        return np.zeros((len(batch["inputs"]), 10), dtype=np.float32)


def test_sleeping_predict_gives_exact_latencies_and_no_failures() -> None:
    load = short_load()
    result = ThreadPoolDriver().run(SleepyPredict(0.002), load, ROWS)

    assert result.generator == "threadpool"
    assert result.failure_count == 0
    assert result.ok_count > 20
    assert min(result.latencies_ms) >= 2.0
    assert any(not float(x).is_integer() for x in result.latencies_ms)
    assert result.measure_s == pytest.approx(load.measure_s)
    assert result.throughput_rps == pytest.approx(result.ok_count / load.measure_s)
    # two users each at most one call per 2 ms
    assert result.ok_count <= load.users * load.measure_s / 0.002 + load.users
    assert result.client_cpu_percent is None, "in-process, the client's CPU is the model's: not reported"


def test_warmup_calls_are_not_counted() -> None:
    predict = SleepyPredict(0.002)
    load = short_load(warmup_s=0.3, measure_s=0.3)
    result = ThreadPoolDriver().run(predict, load, ROWS)

    # about half the calls fall in the warm-up; allow generous scheduling noise
    assert result.request_count < predict.calls * 0.8
    assert result.request_count > predict.calls * 0.2


def test_exceptions_count_as_exception_failures_and_are_kept_as_examples() -> None:
    calls = iter(range(10**9))
    lock = threading.Lock()

    def flaky(batch: dict[str, np.ndarray]) -> np.ndarray:
        with lock:
            n = next(calls)
        time.sleep(0.001)
        if n % 3 == 0:
            raise ValueError(f"model exploded on call {n}")
        return np.zeros((len(batch["inputs"]), 10))

    result = ThreadPoolDriver().run(flaky, short_load(), ROWS)

    assert result.failures["exception"] > 0
    assert result.ok_count > 0
    assert result.request_count == result.ok_count + result.failures["exception"]
    assert result.failures["exception"] == pytest.approx(result.request_count / 3, rel=0.3)
    assert result.failure_examples
    assert all(e.startswith("exception: ValueError: model exploded") for e in result.failure_examples)


def test_wrong_number_of_output_rows_counts_as_bad_payload() -> None:
    def short_by_one(batch: dict[str, np.ndarray]) -> np.ndarray:
        time.sleep(0.001)
        return np.zeros((len(batch["inputs"]) - 1, 10))

    result = ThreadPoolDriver().run(short_by_one, short_load(request_batch_size=4), ROWS)

    assert result.ok_count == 0
    assert result.failures["bad_payload"] == result.request_count > 0
    assert "3 output rows for 4 examples" in result.failure_examples[0]
    assert "no call succeeded in the measure window" in result.warnings


def test_calls_slower_than_the_timeout_count_as_timeouts() -> None:
    result = ThreadPoolDriver().run(SleepyPredict(0.06), short_load(users=1, timeout_s=0.05), ROWS)

    assert result.ok_count == 0
    assert result.failures["timeout"] == result.request_count > 0


def test_batches_take_the_next_examples_cycling_over_them() -> None:
    predict = SleepyPredict(0.0)
    ThreadPoolDriver().run(
        predict, short_load(users=1, warmup_s=0.0, measure_s=0.05, request_batch_size=4), ROWS
    )

    first_column = [int(b["inputs"][0, 0]) // 4 for b in predict.batches[:3]]
    assert first_column == [0, 4, 8]
    assert [int(v) // 4 for v in predict.batches[2]["inputs"][:, 0]] == [8, 9, 0, 1]


def test_every_input_of_a_multi_input_batch_is_cycled_in_step() -> None:
    seen: list[dict[str, np.ndarray]] = []
    lock = threading.Lock()

    def predict(batch: dict[str, np.ndarray]) -> np.ndarray:
        with lock:
            seen.append(batch)
        return np.zeros((len(batch["input_ids"]), 1), dtype=np.float32)

    examples = {
        "input_ids": np.arange(5 * 16, dtype=np.int64).reshape(5, 16),
        "pixels": np.arange(5, dtype=np.uint8).reshape(5, 1, 1, 1) * np.ones((1, 4, 4, 3), np.uint8),
    }
    ThreadPoolDriver().run(predict, short_load(users=1, warmup_s=0.0, measure_s=0.05, request_batch_size=2),
                           examples)  # fmt: skip

    assert all(set(batch) == {"input_ids", "pixels"} for batch in seen)
    for batch in seen[:5]:
        assert batch["input_ids"].dtype == np.int64
        assert batch["pixels"].dtype == np.uint8
        # the same examples of each input, row for row
        assert (batch["input_ids"][:, 0] // 16).tolist() == batch["pixels"][:, 0, 0, 0].tolist()
    assert [int(v) for v in seen[2]["pixels"][:, 0, 0, 0]] == [4, 0]


def test_a_predict_call_that_never_returns_counts_as_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threadpool_driver, "JOIN_SLACK_S", 0.1)
    release = threading.Event()
    started = time.perf_counter()

    def hangs_in_window(batch: dict[str, np.ndarray]) -> np.ndarray:
        if time.perf_counter() - started > 0.35:
            release.wait(10)
        time.sleep(0.002)
        return np.zeros((len(batch["inputs"]), 10))

    try:
        result = ThreadPoolDriver().run(hangs_in_window, short_load(users=1, timeout_s=0.2), ROWS)
    finally:
        release.set()

    assert result.failures["timeout"] == 1
    assert result.ok_count > 0
    assert any("had not returned" in w for w in result.warnings)


@pytest.mark.parametrize(
    ("examples", "message"),
    [
        ({"inputs": np.zeros((0, 4))}, "non-zero number of rows"),
        ({"a": np.zeros((3, 4)), "b": np.zeros((2, 4))}, "same, non-zero number of rows"),
        ({}, "mapping of input name to array"),
        (np.zeros((3, 4)), "mapping of input name to array"),
    ],
)
def test_examples_must_be_named_arrays_with_rows(examples: object, message: str) -> None:
    with pytest.raises(RunError, match=message):
        ThreadPoolDriver().run(SleepyPredict(), short_load(), examples)  # type: ignore[arg-type]


def test_open_loop_calls_at_the_target_rate_and_times_from_the_due_time() -> None:
    load = short_load(mode="open", rate_rps=200.0, arrival="constant", users=4, warmup_s=0.2, measure_s=0.6)
    result = ThreadPoolDriver().run(SleepyPredict(0.002), load, ROWS)

    assert result.mode == "open"
    assert result.target_rate_rps == 200.0
    assert result.offered_rps == pytest.approx(200.0, rel=0.1)
    assert result.failure_count == 0
    dues = sorted(s.start_s for s in result.samples)
    assert np.allclose(np.diff(dues), 1 / 200.0)  # the constant schedule, not the calls' pace
    assert all(s.service_ms is not None and s.latency_ms >= s.service_ms >= 2.0 for s in result.samples)
    assert len(result.service_latencies_ms) == result.ok_count
    assert result.generator_cpu_percent == []


def test_open_loop_shows_a_stall_that_the_closed_loop_hides() -> None:
    started = time.perf_counter()
    stall = (0.45, 0.75)  # seconds after the start: inside the measured part

    def stalls_once(batch: dict[str, np.ndarray]) -> np.ndarray:
        now = time.perf_counter() - started
        if stall[0] <= now < stall[1]:
            time.sleep(stall[1] - now)
        time.sleep(0.001)
        return np.zeros((len(batch["inputs"]), 10))

    common = {"warmup_s": 0.2, "measure_s": 0.9, "users": 4}
    open_result = ThreadPoolDriver().run(
        stalls_once, short_load(mode="open", rate_rps=200.0, arrival="poisson", **common), ROWS, seed=1
    )
    started = time.perf_counter()
    closed_result = ThreadPoolDriver().run(stalls_once, short_load(**common), ROWS)

    def slow(result: LoadResult) -> float:
        return float(np.mean(np.asarray(result.latencies_ms) > 100.0))

    assert slow(open_result) >= 0.10  # about 60 calls fell due during the 0.3 s stall
    assert open_result.queued_count >= 20
    assert 0 < slow(closed_result) <= 0.02  # only the 4 calls in flight
    assert np.percentile(open_result.latencies_ms, 99) >= 200.0
    assert np.percentile(closed_result.latencies_ms, 99) < 100.0


def test_a_stop_rule_that_never_agrees_runs_until_max_windows() -> None:
    calls: list[int] = []

    def never(samples: list[Sample], measure_start_s: float) -> bool:
        calls.append(len(samples))
        return False

    load = short_load(warmup_s=0.1, measure_s=0.2, window_s=0.1, validity={"max_windows": 4})
    result = ThreadPoolDriver().run(SleepyPredict(0.002), load, ROWS, stop_when=never)

    assert result.stopped_reason == "max_windows"
    assert result.windows_measured == 4
    assert result.measure_s == pytest.approx(0.4)
    assert len(calls) == 3  # after windows 2, 3 and 4
    assert calls == sorted(calls)  # each time the samples of all windows so far
    assert len(result.windows()) == 4


def test_a_stop_rule_that_agrees_stops_once_measure_s_is_covered() -> None:
    load = short_load(warmup_s=0.1, measure_s=0.2, window_s=0.1, validity={"max_windows": 8})
    result = ThreadPoolDriver().run(SleepyPredict(0.002), load, ROWS, stop_when=lambda _s, _t: True)

    assert result.stopped_reason == "stable"
    assert result.windows_measured == 2
    assert result.measure_s == pytest.approx(0.2)


def test_a_swept_load_runs_the_point_it_is_given() -> None:
    load = short_load(users=[1, 3])
    with pytest.raises(ValueError, match="pass the LoadPoint"):
        ThreadPoolDriver().run(SleepyPredict(), load, ROWS)

    result = ThreadPoolDriver().run(SleepyPredict(), load, ROWS, point=plan_points(load)[1])
    assert result.users == 3
    assert result.stopped_reason == "measure_s"


def test_open_loop_calls_still_queued_at_the_end_are_drained_not_dropped() -> None:
    # one thread at 20 ms per call serves 50 calls/s of the 100 scheduled: a queue builds up
    load = short_load(
        mode="open", rate_rps=100.0, arrival="constant", users=1, warmup_s=0.1, measure_s=0.6, timeout_s=0.25
    )
    result = ThreadPoolDriver().run(SleepyPredict(0.02), load, ROWS)

    assert result.request_count == pytest.approx(100 * 0.6, abs=1)  # every call due in the window
    assert result.ok_count > 0
    assert result.failures["timeout"] > 0  # the ones that waited longer than the timeout
    assert any("not called: waited" in e for e in result.failure_examples)
    assert result.queued_count > 0
