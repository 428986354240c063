"""What one load run drives (a LoadPoint) and how long it measures (a WindowPlan).

A scenario's `load` may sweep users or rates; each value becomes one LoadPoint, measured by its
own driver run. Every run measures in windows of `effective_window_s()` after the warm-up: at
least `measure_s` worth, then more until a caller's stop rule says the numbers are stable or
`validity.max_windows` is reached. Both drivers share this logic so that they stop alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from harness.load.result import Sample
from harness.scenario.load_spec import LoadSpec


@runtime_checkable
class WindowStopRule(Protocol):
    """A stop rule that judges windows (`harness.load.validity.StabilityStopRule`): it is told where
    the measured windows end, so it judges the very windows the verdict will judge."""

    def should_stop(self, samples: list[Sample], measure_start_s: float, end_s: float) -> bool:
        """Stop now? `samples`: the requests due in the measured windows so far, as far as they have
        finished; `end_s`: test time at which the last measured window ended."""
        ...


# a plain callable gets (samples due in the measured windows so far, measure start in test seconds);
# it does not learn where the windows end, so a rule that judges windows is a WindowStopRule
StopWhen = Callable[[list[Sample], float], bool] | WindowStopRule


@dataclass(frozen=True)
class LoadPoint:
    """One measured load level: `users` (closed loop) or `rate_rps` with `users` in-flight slots (open)."""

    users: int
    rate_rps: float | None
    label: str  # safe as a file or folder name, e.g. "users-4" or "rate-50rps"

    @property
    def mode(self) -> str:
        return "closed" if self.rate_rps is None else "open"


def point_label(users: int, rate_rps: float | None) -> str:
    return f"users-{users}" if rate_rps is None else f"rate-{rate_rps:g}rps"


def plan_points(load: LoadSpec) -> list[LoadPoint]:
    """The load levels of `load` in the order given: one, or one per swept value."""
    users, rates = load.user_counts(), load.rates()
    if load.mode == "closed":
        return [LoadPoint(u, None, point_label(u, None)) for u in users]
    if len(rates) > 1:
        return [LoadPoint(users[0], r, point_label(users[0], r)) for r in rates]
    # an open loop sweeping users keeps the rate and varies the in-flight slots
    if len(users) > 1:
        return [LoadPoint(u, rates[0], f"{point_label(u, rates[0])}-users-{u}") for u in users]
    return [LoadPoint(users[0], rates[0], point_label(users[0], rates[0]))]


def single_point(load: LoadSpec, point: LoadPoint | None) -> LoadPoint:
    """`point`, or the only point of an unswept `load` (a sweep must say which point to run)."""
    if point is not None:
        return point
    points = plan_points(load)
    if len(points) != 1:
        raise ValueError(f"load sweeps {len(points)} points; pass the LoadPoint to run (see plan_points)")
    return points[0]


@dataclass(frozen=True)
class MeasureHooks:
    """Called when the measured windows begin (warm-up over) and when the measurement is decided,
    so server-side counters and samplers cover the measured part, not the warm-up."""

    start: Callable[[], None]
    end: Callable[[], None]


@dataclass(frozen=True)
class WindowPlan:
    """Measured windows: [measure_start_s + k * window_s, + window_s) for k = 0, 1, ..."""

    measure_start_s: float
    window_s: float
    min_windows: int  # enough windows to cover measure_s
    max_windows: int  # most windows when a stop rule keeps saying "not yet"

    @classmethod
    def for_load(cls, load: LoadSpec, *, has_stop_rule: bool) -> WindowPlan:
        window_s = load.effective_window_s()
        least = max(1, math.ceil(load.measure_s / window_s - 1e-9))
        most = max(least, load.validity.max_windows) if has_stop_rule else least
        return cls(load.warmup_s, window_s, least, most)

    def end_of(self, windows: int) -> float:
        """Test time at which the first `windows` windows have ended."""
        return self.measure_start_s + windows * self.window_s

    @property
    def longest_s(self) -> float:
        """Warm-up plus the most windows: the longest a run can take before stopping."""
        return self.end_of(self.max_windows)

    def decide(self, windows: int, samples: Sequence[Sample], stop_when: StopWhen | None) -> str | None:
        """After `windows` complete windows: the stop reason, or None to measure another window.

        `samples` may include requests due after the windows; only those due inside are passed on,
        and a WindowStopRule also gets the end of the windows (never the latest completion, which
        falls short of the last window while its last requests are in flight).
        """
        if windows < self.min_windows:
            return None
        if stop_when is None:
            return "measure_s"
        end = self.end_of(windows)
        measured = [s for s in samples if self.measure_start_s <= s.start_s < end]
        if isinstance(stop_when, WindowStopRule):
            stop = stop_when.should_stop(measured, self.measure_start_s, end)
        else:
            stop = stop_when(measured, self.measure_start_s)
        if stop:
            return "stable"
        return "max_windows" if windows >= self.max_windows else None
