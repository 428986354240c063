"""The live stop rule and the final verdict judge stability alike (defect 2).

Drives `WindowPlan.decide` the way both load drivers do, showing the stop rule only the requests
that have finished when each window ends, then judges the run with `assess` over the windows
measured. A run stopped as "stable" must be judged stable.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from harness.load.plan import StopWhen, WindowPlan
from harness.load.result import Sample
from harness.load.validity import StabilityStopRule, ValidityVerdict, assess, is_stable
from harness.scenario.load_spec import LoadSpec

LOAD = LoadSpec(users=2, warmup_s=1.0, measure_s=3.0, window_s=1.0, validity={"max_windows": 16})
PERCENTILE = 95.0


def _closed_loop(users: int, latency_s_at: Callable[[float], float], until_s: float) -> list[Sample]:
    """Back-to-back requests per user, each taking latency_s_at(its start)."""
    samples = []
    for user in range(users):
        t = user * 0.003
        while t < until_s:
            latency_s = latency_s_at(t)
            samples.append(Sample(t, latency_s * 1000.0, "ok"))
            t += latency_s
    return sorted(samples)


def _drive_and_judge(
    samples: list[Sample], stop_when: StopWhen, *, lag_s: float = 0.0
) -> tuple[int, str, ValidityVerdict]:
    """Windows until the plan stops, the stop rule seeing requests finished `lag_s` after each
    window's end; then the verdict over the windows measured, as run/measure.py asks for it."""
    plan = WindowPlan.for_load(LOAD, has_stop_rule=True)
    windows, reason = 0, None
    while reason is None:
        windows += 1
        seen_until = plan.end_of(windows) + lag_s
        finished = [s for s in samples if s.start_s + s.latency_ms / 1000.0 <= seen_until]
        reason = plan.decide(windows, finished, stop_when)
    end = plan.end_of(windows)
    verdict = assess(
        [s for s in samples if plan.measure_start_s <= s.start_s < end],
        measure_start_s=plan.measure_start_s,
        window_s=plan.window_s,
        spec=LOAD.validity,
        percentile=PERCENTILE,
        warmup_s=LOAD.warmup_s,
        generator_cpu_percent=[],
        late_count=None,
        server_restarted=None,
        stopped_reason=reason,
        end_s=end,
    )
    return windows, reason, verdict


def _slows_down_at(t_s: float) -> list[Sample]:
    # 20 ms per request, then 40 ms (half the throughput, twice the p95) from t_s on
    return _closed_loop(2, lambda t: 0.020 if t < t_s else 0.040, 30.0)


def test_a_run_stopped_as_stable_is_judged_stable_by_the_verdict() -> None:
    # Steady windows 0..2, slower from window 3 on. With a stop rule that counted complete windows
    # from the latest completion, the request in flight at the end of window 2 (4.0 s) left it
    # looking incomplete: nothing was judged after window 2, and after window 3 it judged 0..2,
    # steady, and stopped "stable"; the verdict, told the run measured 4 windows, judged 1..3
    # and said "not stable after 4 windows" (defect 2). Told the end, it judges 0..2 after window 2.
    windows, reason, verdict = _drive_and_judge(
        _slows_down_at(4.0), StabilityStopRule.for_load(LOAD, PERCENTILE)
    )

    assert verdict.facts["stable"] == (reason == "stable"), (windows, reason, verdict.reasons)
    assert (windows, reason) == (3, "stable")
    assert verdict.facts["judged_windows"] == [0, 1, 2]
    assert verdict.valid, verdict.reasons


def test_a_change_in_the_last_window_keeps_the_run_going_until_stable_again() -> None:
    # slower from window 2 on: after window 2 the rule sees windows 0..2 disagree and measures on;
    # windows 2..4 agree again
    windows, reason, verdict = _drive_and_judge(
        _slows_down_at(3.0), StabilityStopRule.for_load(LOAD, PERCENTILE)
    )

    assert (windows, reason) == (5, "stable")
    assert verdict.facts["judged_windows"] == [2, 3, 4]
    assert verdict.facts["stable"] is True


def test_a_run_never_stable_is_unstable_after_max_windows_with_that_count() -> None:
    # every window slower than the one before: never within 10% across three windows
    samples = _closed_loop(2, lambda t: 0.010 * 1.3 ** int(t - 1.0), 30.0)
    windows, reason, verdict = _drive_and_judge(samples, StabilityStopRule.for_load(LOAD, PERCENTILE))

    assert (windows, reason) == (16, "max_windows")
    assert verdict.facts["judged_windows"] == [13, 14, 15]
    assert verdict.reasons[0].startswith("not stable after 16 windows:")


@pytest.mark.parametrize("change_at_s", [2.5, 3.0, 4.0, 4.5, 5.0, 6.0, 9.0])
@pytest.mark.parametrize("lag_s", [0.0, 0.01, 0.1])
def test_stop_and_verdict_agree_wherever_the_load_changes(change_at_s: float, lag_s: float) -> None:
    windows, reason, verdict = _drive_and_judge(
        _slows_down_at(change_at_s), StabilityStopRule.for_load(LOAD, PERCENTILE), lag_s=lag_s
    )
    assert verdict.facts["stable"] == (reason == "stable"), (windows, reason, verdict.reasons)


def test_a_steady_run_stops_as_soon_as_measure_s_is_covered_and_is_valid() -> None:
    samples = _closed_loop(2, lambda t: 0.005, 30.0)
    windows, reason, verdict = _drive_and_judge(samples, StabilityStopRule.for_load(LOAD, PERCENTILE))
    assert (windows, reason) == (3, "stable")
    assert verdict.valid, verdict.reasons


def test_is_stable_without_the_end_judges_the_windows_before_an_unfinished_last_one() -> None:
    # why the stop rule must be told the end: from the latest completion alone, the window whose
    # last request is still in flight does not count as complete
    samples = _slows_down_at(4.0)
    finished = [s for s in samples if s.start_s < 5.0 and s.start_s + s.latency_ms / 1000.0 <= 5.0]
    args = {"window_s": 1.0, "spec": LOAD.validity, "percentile": PERCENTILE}
    assert is_stable(finished, 1.0, **args)  # judged windows 0..2
    assert not is_stable(finished, 1.0, end_s=5.0, **args)  # judged windows 1..3
