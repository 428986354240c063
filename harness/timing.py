"""Wall-clock timing of the stages of a run, for the `timings` of its results.

One context manager, so every stage is timed alike: seconds, rounded to the millisecond, recorded
whether the stage finished or raised (a stage that failed after ten minutes should say so).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from time import perf_counter


@contextmanager
def timed(timings: dict[str, float], key: str) -> Iterator[None]:
    """Time the `with` block into `timings[key]`, in seconds rounded to 3 decimals.

    The duration is recorded even when the block raises; the exception still propagates. A key
    already present is overwritten: time a repeated stage under distinct keys (`load:v1:users-4`).
    Uses `time.perf_counter`, which a change of the system clock cannot disturb.
    """
    start = perf_counter()
    try:
        yield
    finally:
        timings[key] = round(perf_counter() - start, 3)
