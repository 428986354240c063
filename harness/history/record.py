"""The typed rows of the history store and the trends a run's report draws from them.

Light on purpose (no pandas, no ruptures): the run record (`harness.results`) embeds `Trend`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

HISTORY_FORMAT_VERSION = 1


@dataclass(frozen=True)
class HistoryRecord:
    """One metric of one variant in one run on one testbed: a line of the store, never rewritten.

    The series key is (scenario, variant, metric, testbed). Library versions and the commit are
    annotations: shown where a change point appears, never part of the key."""

    run_id: str
    time: str  # ISO 8601, UTC, when the run started
    scenario: str
    variant: str
    metric: str
    value: float
    testbed: str
    commit: str | None = None
    outcome: str = ""  # the run's outcome (pass, regression, inconclusive, ...)
    valid: bool = True  # False: the measurement was INVALID (noisy); kept, shown, not used for steps
    annotations: dict[str, str] = field(default_factory=dict)  # package versions, python, cpu model
    format_version: int = HISTORY_FORMAT_VERSION

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.scenario, self.variant, self.metric, self.testbed)


@dataclass(frozen=True)
class ChangePoint:
    """A step in one series: from `run_id` on, the metric moved by `magnitude` (after/before - 1).

    `p_value` is a permutation test of the segments around the split; `annotations_changed` names
    the annotations (library versions, commit) that differ across it: the first suspects."""

    scenario: str
    variant: str
    metric: str
    testbed: str
    index: int  # position in the series (0-based) of the first point after the change
    run_id: str
    time: str
    before: float  # median of the segment before
    after: float  # median of the segment after
    magnitude: float
    p_value: float
    points_before: int
    points_after: int
    annotations_changed: dict[str, list[str]] = field(default_factory=dict)  # name -> [before, after]
    commit_before: str | None = None
    commit_after: str | None = None

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.scenario, self.variant, self.metric, self.testbed)


@dataclass
class Trend:
    """One gated metric's series for a run's report: every run of this testbed, change points
    marked, and this run's own point (`own_index`) highlighted."""

    variant: str
    metric: str
    testbed: str
    run_ids: list[str] = field(default_factory=list)
    times: list[str] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    valid: list[bool] = field(default_factory=list)
    own_index: int | None = None
    change_points: list[ChangePoint] = field(default_factory=list)
    acknowledged_from: list[str] = field(default_factory=list)  # run ids where an ack starts a segment
    note: str = ""  # e.g. "10 points are needed before change points are looked for (have 4)"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Trend:
        points = [ChangePoint(**c) for c in data.get("change_points", [])]
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "change_points"}
        return cls(**known, change_points=points)
