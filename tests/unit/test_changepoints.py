"""Change points in a metric's history: known steps are found where they are, with their size;
noise alone gives none; short series and fresh steps wait for enough points; acknowledged steps
are not reported again. Also `harness history DIR`, which prints them and writes them as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.errors import UserError
from harness.history import store
from harness.history.acks import Ack
from harness.history.changepoints import detect_steps, find_change_points, noise_floor
from harness.history.record import HistoryRecord
from harness.history.view import history_command

NOISE = 0.03  # relative run-to-run noise of a quiet nightly testbed


def noisy(level: float, n: int, rng: np.random.Generator, noise: float = NOISE) -> np.ndarray:
    return level * np.exp(rng.normal(0.0, noise, n))


def rows(values: list[float] | np.ndarray, **overrides: object) -> list[HistoryRecord]:
    """A series of one key, one run a day; `overrides` maps a position to a dict of fields."""
    out = []
    for i, value in enumerate(values):
        fields = {
            "run_id": f"run{i:03d}",
            "time": f"2025-01-{1 + i // 24:02d}T{i % 24:02d}:00:00+00:00",
            "scenario": "digits",
            "variant": "int8",
            "metric": "latency_p95_ms",
            "value": float(value),
            "testbed": "ci-large",
            "commit": f"c{i:03d}",
            "annotations": {"torch": "2.12.0"},
        }
        fields.update(overrides.get(str(i), {}))  # type: ignore[call-overload]
        out.append(HistoryRecord(**fields))  # type: ignore[arg-type]
    return out


def test_known_step_is_found_at_its_index_with_its_magnitude() -> None:
    rng = np.random.default_rng(7)
    values = np.r_[noisy(10.0, 20, rng), noisy(12.0, 10, rng)]
    (step,) = detect_steps(values)
    assert step.index == 20
    assert step.magnitude == pytest.approx(0.20, abs=0.03)
    assert step.before_median == pytest.approx(10.0, rel=0.03)
    assert step.after_median == pytest.approx(12.0, rel=0.03)
    assert step.p_value < 0.01
    assert (step.points_before, step.points_after) == (20, 10)


def test_a_drop_and_a_second_step_are_each_found() -> None:
    rng = np.random.default_rng(5)
    values = np.r_[noisy(10.0, 15, rng), noisy(12.0, 15, rng), noisy(9.0, 10, rng)]
    steps = detect_steps(values)
    assert [s.index for s in steps] == [15, 30]
    assert steps[0].magnitude == pytest.approx(0.20, abs=0.04)
    assert steps[1].magnitude == pytest.approx(-0.25, abs=0.04)


def test_noise_without_a_step_gives_at_most_one_false_detection_in_100_series() -> None:
    # the permutation test holds each series' false-alarm rate to about alpha (1%); measured over
    # 1000 seeds it is 0.0% at 3% noise and 0.5% at 10% noise, so 2 in 100 would be a regression
    found = [s for seed in range(100) if (s := detect_steps(noisy(10.0, 30, np.random.default_rng(seed))))]
    assert len(found) <= 1
    noisier = [
        s
        for seed in range(100)
        if (s := detect_steps(noisy(10.0, 60, np.random.default_rng(seed), noise=0.10)))
    ]
    assert len(noisier) <= 2


def test_a_step_smaller_than_the_minimum_effect_is_not_reported() -> None:
    values = [10.0] * 15 + [10.2] * 15  # +2%: perfectly clear, too small to matter
    assert detect_steps(values) == []
    assert [s.index for s in detect_steps(values, min_effect=0.01)] == [15]


def test_fewer_points_than_the_minimum_history_give_nothing() -> None:
    values = [10.0] * 6 + [20.0] * 5
    assert detect_steps(values, min_history=12) == []
    assert [s.index for s in detect_steps(values, min_history=11)] == [6]


def test_a_step_in_too_few_points_cannot_reach_significance() -> None:
    # 9 points split 5/4: the observed order and its mirror are 2 of 126 orders, p = 0.016 > alpha
    (step,) = detect_steps([10.0] * 5 + [20.0] * 4, min_history=9, alpha=0.05)
    assert step.p_value == pytest.approx(2 / 126, abs=0.01)
    assert detect_steps([10.0] * 5 + [20.0] * 4, min_history=9) == []


def test_a_step_with_too_few_points_after_is_not_reported_yet() -> None:
    rng = np.random.default_rng(1)
    base = noisy(10.0, 20, rng)
    assert detect_steps(np.r_[base, noisy(12.0, 2, rng)]) == []
    (step,) = detect_steps(np.r_[base, noisy(12.0, 3, rng)])
    assert (step.index, step.points_after) == (20, 3)


def test_a_short_blip_is_not_a_step() -> None:
    rng = np.random.default_rng(3)
    values = np.r_[noisy(10.0, 15, rng), [14.0, 14.5], noisy(10.0, 15, rng)]
    assert detect_steps(values) == []


def test_series_with_zeros_falls_back_to_raw_values() -> None:
    # log is undefined at zero; a step from zero has no relative size, so it is not reported
    assert detect_steps([0.0] * 15 + [0.5] * 10) == []
    steps = detect_steps([1.0] * 15 + [0.0] * 10)
    assert [(s.index, s.magnitude) for s in steps] == [(15, -1.0)]


def test_constant_series_has_no_step() -> None:
    assert detect_steps([5.0] * 40) == []


def test_change_points_name_what_changed_and_the_commits_around_them() -> None:
    rng = np.random.default_rng(11)
    values = np.r_[noisy(10.0, 20, rng), noisy(12.0, 6, rng)]
    after = {str(i): {"annotations": {"torch": "2.13.0"}} for i in range(20, 26)}
    (change,) = find_change_points(rows(values, **after))
    assert (change.index, change.run_id) == (20, "run020")
    assert change.annotations_changed == {"torch": ["2.12.0", "2.13.0"]}
    assert (change.commit_before, change.commit_after) == ("c019", "c020")
    assert change.key == ("digits", "int8", "latency_p95_ms", "ci-large")


def test_invalid_points_are_not_used_and_indices_stay_positions_in_the_series() -> None:
    rng = np.random.default_rng(2)
    values = list(np.r_[noisy(10.0, 20, rng), noisy(12.0, 5, rng)])
    values[5] = 30.0  # a wild INVALID measurement: dropped, not a step
    values[21] = 3.0
    invalid = {"5": {"valid": False}, "21": {"valid": False}}
    (change,) = find_change_points(rows(values, **invalid))
    assert change.index == 20
    assert change.points_after == 4  # the INVALID point is not counted


def test_an_acknowledged_step_is_not_reported_again_while_a_later_step_is() -> None:
    rng = np.random.default_rng(4)
    values = np.r_[noisy(10.0, 15, rng), noisy(12.0, 15, rng), noisy(15.0, 5, rng)]
    records = rows(values)
    assert [c.index for c in find_change_points(records)] == [15, 30]
    ack = Ack("digits", "int8", "*", from_run="run015", reason="torch upgrade")
    assert [c.index for c in find_change_points(records, [ack])] == [30]
    other = Ack("digits", "fp32", "*", from_run="run015", reason="another variant")
    assert [c.index for c in find_change_points(records, [other])] == [15, 30]


def test_an_ack_applies_on_another_testbed_from_its_runs_time() -> None:
    rng = np.random.default_rng(4)
    values = np.r_[noisy(10.0, 15, rng), noisy(12.0, 15, rng)]
    here = rows(values)
    there = [HistoryRecord(**{**r.__dict__, "run_id": "b" + r.run_id, "testbed": "ci-small"}) for r in here]
    ack = Ack("digits", "*", "*", from_run="run015", reason="accepted")
    assert find_change_points([*here, *there], [ack]) == []


def test_noise_floor_is_the_typical_run_to_run_change_of_the_current_segment() -> None:
    rng = np.random.default_rng(9)
    values = np.r_[noisy(10.0, 20, rng, noise=0.20), noisy(20.0, 40, rng)]
    records = rows(values)
    floor = noise_floor(records, "digits", "int8", "latency_p95_ms", "ci-large")
    assert floor is not None
    # |difference| of two N(0, s^2) draws has median 0.954 s: about 3% here, not the noisy past
    assert floor == pytest.approx(0.954 * NOISE, rel=0.35)
    assert noise_floor(records[:9], "digits", "int8", "latency_p95_ms", "ci-large") is None
    assert noise_floor(records, "digits", "int8", "throughput_rps", "ci-large") is None


# ---- on demand: `harness history DIR` ---------------------------------------------------------------


def test_history_command_prints_each_change_point_and_writes_json_with_stable_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(11)
    after = {str(i): {"annotations": {"torch": "2.13.0"}} for i in range(20, 26)}
    stepped = rows(np.r_[noisy(10.0, 20, rng), noisy(12.0, 6, rng)], **after)
    flat = rows(noisy(100.0, 26, rng), **{str(i): {"metric": "throughput_rps"} for i in range(26)})
    short = rows([1.0, 2.0, 3.0], **{str(i): {"variant": "fp32"} for i in range(3)})
    store.append(tmp_path, [*stepped, *flat, *short])
    out = tmp_path / "out" / "changes.json"
    out.parent.mkdir()
    assert history_command(tmp_path, acks_path=None, scenario=None, json_out=out) == 0
    text = capsys.readouterr().out
    assert "digits / int8 / latency_p95_ms / ci-large: 26 points, 1 change point(s)" in text
    assert "from run run020 (2025-01-01T20:00:00+00:00): +1" in text
    assert "10.00 ms → 11.70 ms [20 points before, 6 after]; torch 2.12.0 → 2.13.0" in text
    assert "commit c019 → c020" in text
    assert "1 change point(s) in 2 series (1 with fewer than 10 points not checked)" in text
    (change,) = json.loads(out.read_text())
    assert change["run_id"] == "run020"
    assert change["index"] == 20
    assert change["magnitude"] == pytest.approx(0.2, abs=0.05)
    assert change["title"].startswith("latency_p95_ms of digits/int8 on ci-large: +")
    first_id = change["id"]
    store.append(tmp_path, rows([12.0], **{"0": {"run_id": "run999", "time": "2025-02-01T00:00:00+00:00"}}))
    history_command(tmp_path, acks_path=None, scenario=None, json_out=out)
    assert json.loads(out.read_text())[0]["id"] == first_id  # the same change keeps its issue


def test_history_command_with_the_step_acknowledged_reports_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(11)
    store.append(tmp_path, rows(np.r_[noisy(10.0, 20, rng), noisy(12.0, 6, rng)]))
    acks = tmp_path / "acks.yaml"
    acks.write_text(
        "- {scenario: digits, variant: int8, metric: '*', from-run: run020, reason: ok}\n"
        "- {scenario: digits, variant: int8, metric: '*', from-run: run-typo, reason: ok}\n"
    )
    out = tmp_path / "changes.json"
    assert history_command(tmp_path, acks_path=acks, scenario="digits", json_out=out) == 0
    text = capsys.readouterr().out
    assert "no change points in 1 series" in text
    assert "warning: acknowledged run 'run-typo' (digits) is not in the history" in text
    assert json.loads(out.read_text()) == []


def test_history_command_refuses_an_unknown_scenario(tmp_path: Path) -> None:
    store.append(tmp_path, rows([1.0]))
    with pytest.raises(UserError, match=r"--scenario 'other': not in .* \(it holds digits\)"):
        history_command(tmp_path, acks_path=None, scenario="other", json_out=None)
