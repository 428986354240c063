"""Load points of a scenario's load profile and the measured-window plan both drivers follow."""

from __future__ import annotations

import pytest

from harness.load.plan import LoadPoint, WindowPlan, WindowStopRule, plan_points, single_point
from harness.load.result import Sample
from harness.load.validity import StabilityStopRule
from harness.scenario.load_spec import LoadSpec


def test_a_plain_closed_loop_is_one_point() -> None:
    assert plan_points(LoadSpec(users=3)) == [LoadPoint(3, None, "users-3")]


def test_a_user_sweep_is_one_closed_loop_point_per_count_in_order() -> None:
    points = plan_points(LoadSpec(users=[8, 1, 4]))

    assert [p.users for p in points] == [8, 1, 4]
    assert all(p.rate_rps is None and p.mode == "closed" for p in points)
    assert [p.label for p in points] == ["users-8", "users-1", "users-4"]


def test_a_rate_sweep_keeps_the_in_flight_slots_and_varies_the_rate() -> None:
    points = plan_points(LoadSpec(mode="open", users=16, rate_rps=[50, 100.5]))

    assert points == [LoadPoint(16, 50.0, "rate-50rps"), LoadPoint(16, 100.5, "rate-100.5rps")]
    assert all(p.mode == "open" for p in points)


def test_an_open_loop_sweeping_users_keeps_the_rate() -> None:
    points = plan_points(LoadSpec(mode="open", users=[2, 8], rate_rps=40))

    assert [(p.users, p.rate_rps) for p in points] == [(2, 40.0), (8, 40.0)]
    assert len({p.label for p in points}) == 2


def test_single_point_needs_the_point_when_the_load_sweeps() -> None:
    load = LoadSpec(users=[1, 2])
    with pytest.raises(ValueError, match="sweeps 2 points"):
        single_point(load, None)
    assert single_point(load, LoadPoint(2, None, "x")).users == 2
    assert single_point(LoadSpec(users=5), None).users == 5


def test_window_plan_covers_measure_s_and_allows_more_windows_only_with_a_stop_rule() -> None:
    load = LoadSpec(warmup_s=2.0, measure_s=3.0, window_s=1.0, validity={"max_windows": 6})

    with_rule = WindowPlan.for_load(load, has_stop_rule=True)
    without = WindowPlan.for_load(load, has_stop_rule=False)

    assert (with_rule.min_windows, with_rule.max_windows) == (3, 6)
    assert (without.min_windows, without.max_windows) == (3, 3)
    assert with_rule.end_of(2) == 4.0
    assert with_rule.longest_s == 8.0


def test_default_window_is_measure_s_over_the_stable_windows() -> None:
    plan = WindowPlan.for_load(LoadSpec(measure_s=6.0), has_stop_rule=False)
    assert plan.window_s == 2.0
    assert plan.min_windows == 3


def test_window_count_rounds_up_to_cover_measure_s() -> None:
    plan = WindowPlan.for_load(LoadSpec(measure_s=2.5, window_s=1.0), has_stop_rule=False)
    assert plan.min_windows == 3


def test_max_windows_below_measure_s_still_measures_measure_s() -> None:
    load = LoadSpec(measure_s=10.0, window_s=1.0, validity={"max_windows": 4})
    assert WindowPlan.for_load(load, has_stop_rule=True).max_windows == 10


def test_decide_waits_for_measure_s_then_asks_the_rule_with_only_the_measured_samples() -> None:
    plan = WindowPlan(measure_start_s=1.0, window_s=1.0, min_windows=2, max_windows=4)
    samples = [Sample(t / 2, 1.0, "ok") for t in range(12)]  # due 0.0 .. 5.5
    seen: list[list[float]] = []

    def never(measured: list[Sample], start: float) -> bool:
        seen.append([s.start_s for s in measured])
        assert start == 1.0
        return False

    assert plan.decide(1, samples, never) is None
    assert seen == []  # measure_s not covered yet: not asked
    assert plan.decide(2, samples, never) is None
    assert seen[-1] == [1.0, 1.5, 2.0, 2.5]
    assert plan.decide(3, samples, never) is None
    assert plan.decide(4, samples, never) == "max_windows"


def test_decide_stops_as_stable_when_the_rule_agrees_and_at_measure_s_without_a_rule() -> None:
    plan = WindowPlan(measure_start_s=0.0, window_s=1.0, min_windows=2, max_windows=5)

    assert plan.decide(2, [], lambda _s, _t: True) == "stable"
    assert plan.decide(2, [], None) == "measure_s"
    assert plan.decide(1, [], None) is None


class _RecordingWindowRule:
    """A WindowStopRule that records what it was asked about."""

    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.calls: list[tuple[list[float], float, float]] = []

    def should_stop(self, samples: list[Sample], measure_start_s: float, end_s: float) -> bool:
        self.calls.append(([s.start_s for s in samples], measure_start_s, end_s))
        return self.answer


def test_decide_tells_a_window_stop_rule_where_the_measured_windows_end() -> None:
    plan = WindowPlan(measure_start_s=1.0, window_s=1.0, min_windows=2, max_windows=4)
    samples = [Sample(t / 2, 1.0, "ok") for t in range(12)]  # due 0.0 .. 5.5
    rule = _RecordingWindowRule(answer=False)

    assert plan.decide(1, samples, rule) is None
    assert rule.calls == []
    assert plan.decide(3, samples, rule) is None
    assert rule.calls == [([1.0, 1.5, 2.0, 2.5, 3.0, 3.5], 1.0, 4.0)]  # the end, not the last completion
    assert plan.decide(4, samples, rule) == "max_windows"
    assert rule.calls[-1][2] == 5.0


def test_decide_stops_as_stable_when_a_window_stop_rule_agrees() -> None:
    plan = WindowPlan(measure_start_s=0.0, window_s=1.0, min_windows=2, max_windows=5)
    assert plan.decide(2, [], _RecordingWindowRule(answer=True)) == "stable"


def test_the_stability_stop_rule_is_a_window_stop_rule_for_the_load() -> None:
    load = LoadSpec(measure_s=6.0, validity={"stable_windows": 3, "max_spread": 0.2})
    rule = StabilityStopRule.for_load(load, 99.0)

    assert isinstance(rule, WindowStopRule)
    assert (rule.window_s, rule.percentile, rule.spec.max_spread) == (2.0, 99.0, 0.2)
