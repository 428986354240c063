"""The one stage timer."""

from __future__ import annotations

import pytest

from harness import timing
from harness.timing import timed


class _FakeClock:
    def __init__(self, *readings: float) -> None:
        self.readings = list(readings)

    def __call__(self) -> float:
        return self.readings.pop(0)


def test_timed_records_the_block_duration_in_seconds_rounded_to_the_millisecond(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(timing, "perf_counter", _FakeClock(10.0, 12.34567))
    timings: dict[str, float] = {"earlier": 1.0}

    with timed(timings, "load:v1"):
        pass

    assert timings == {"earlier": 1.0, "load:v1": 2.346}


def test_timed_records_the_duration_of_a_block_that_raises_and_lets_the_error_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(timing, "perf_counter", _FakeClock(0.0, 0.5))
    timings: dict[str, float] = {}

    with pytest.raises(RuntimeError, match="boom"), timed(timings, "serve_start"):
        raise RuntimeError("boom")

    assert timings == {"serve_start": 0.5}


def test_timed_measures_real_time() -> None:
    timings: dict[str, float] = {}
    with timed(timings, "real"):
        sum(range(1000))
    assert 0.0 <= timings["real"] < 5.0
