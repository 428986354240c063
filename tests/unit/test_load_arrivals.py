"""Open-loop arrival schedules: rate, spacing, and seeded reproducibility."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from harness.load.arrivals import ArrivalSchedule, process_seed


def gaps(schedule: ArrivalSchedule, n: int) -> np.ndarray:
    return np.diff([0.0, *schedule.take(n)])


def test_constant_arrivals_are_evenly_spaced_at_the_rate() -> None:
    due = ArrivalSchedule(250.0, "constant").take(1000)

    assert np.allclose(np.diff(due), 1 / 250.0)
    assert due[-1] == pytest.approx(1000 / 250.0)


def test_poisson_arrivals_have_the_target_mean_rate_and_exponential_spread() -> None:
    g = gaps(ArrivalSchedule(100.0, "poisson", seed=1), 20_000)

    assert 1 / g.mean() == pytest.approx(100.0, rel=0.03)
    # an exponential distribution's standard deviation equals its mean (coefficient of variation 1)
    assert g.std() / g.mean() == pytest.approx(1.0, rel=0.05)
    assert (g > 0).all()


def test_poisson_arrivals_count_per_second_matches_the_rate() -> None:
    due = np.asarray(ArrivalSchedule(50.0, "poisson", seed=2).take(5000))
    per_second = np.bincount(due.astype(int))[:-1]  # whole seconds only

    assert per_second.mean() == pytest.approx(50.0, rel=0.05)
    assert per_second.var() == pytest.approx(50.0, rel=0.35)  # Poisson counts: variance = mean


def test_the_same_seed_gives_the_same_schedule_and_others_differ() -> None:
    first = ArrivalSchedule(80.0, "poisson", seed=process_seed(7, 0)).take(100)

    assert ArrivalSchedule(80.0, "poisson", seed=process_seed(7, 0)).take(100) == first
    assert ArrivalSchedule(80.0, "poisson", seed=process_seed(7, 1)).take(100) != first
    assert ArrivalSchedule(80.0, "poisson", seed=process_seed(8, 0)).take(100) != first


def test_threads_sharing_a_schedule_take_each_due_time_once() -> None:
    schedule = ArrivalSchedule(1000.0, "poisson", seed=3)
    taken: list[list[float]] = [[] for _ in range(4)]

    def take(out: list[float]) -> None:
        for _ in range(500):
            out.append(schedule.next())

    threads = [threading.Thread(target=take, args=(out,)) for out in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    merged = sorted(t for out in taken for t in out)
    assert merged == ArrivalSchedule(1000.0, "poisson", seed=3).take(2000)


@pytest.mark.parametrize(
    ("rate", "arrival", "error"), [(0.0, "poisson", "above 0"), (5.0, "burst", "one of")]
)
def test_bad_schedules_are_rejected(rate: float, arrival: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        ArrivalSchedule(rate, arrival)
