"""Open-loop send schedules: evenly spaced or Poisson arrivals at a target rate, seeded.

One schedule is shared by all in-flight slots of a load process: a free slot takes the next due
time, waits for it, and sends. When every slot is busy, due times keep passing and the requests
wait in the client; their latency still counts from the due time (as wrk2 and MLPerf LoadGen's
Server scenario do), so a stalled server cannot hide the queue it causes.

The Locust process cannot import this module; harness/load/locustfiles/predict.py mirrors it
(same gaps for the same seed) and the integration tests check the rate it achieves.
"""

from __future__ import annotations

import random
import threading

ARRIVALS = ("constant", "poisson")


def process_seed(seed: int, index: int) -> str:
    """Seed of load process `index`: each Locust worker gets its own, reproducible stream."""
    return f"{seed}:{index}"


class ArrivalSchedule:
    """Due times (seconds from the schedule start) at `rate_rps`; `next()` is thread-safe."""

    def __init__(self, rate_rps: float, arrival: str, seed: int | str = 0) -> None:
        if rate_rps <= 0:
            raise ValueError(f"rate must be above 0 req/s, got {rate_rps}")
        if arrival not in ARRIVALS:
            raise ValueError(f"arrival must be one of {', '.join(ARRIVALS)}, got {arrival!r}")
        self.rate_rps = rate_rps
        self.arrival = arrival
        self._rng = random.Random(str(seed))
        self._due = 0.0
        self._lock = threading.Lock()

    def gap(self) -> float:
        """Seconds to the next send: 1/rate, or exponential with mean 1/rate (Poisson arrivals)."""
        if self.arrival == "constant":
            return 1.0 / self.rate_rps
        return self._rng.expovariate(self.rate_rps)

    def next(self) -> float:
        with self._lock:
            self._due += self.gap()
            return self._due

    def take(self, count: int) -> list[float]:
        return [self.next() for _ in range(count)]
