"""`harness run --history` and `harness history` as a nightly job uses them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from harness.history import store
from harness.history.record import HistoryRecord
from tests.conftest import ROOT, scenario_dict
from tests.e2e.helpers import report_path, run_cli


def _harness(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def _history(scenario: str, testbed: str, values: list[float]) -> list[HistoryRecord]:
    return [
        HistoryRecord(
            run_id=f"2026110{i // 10}-{i:02d}-{scenario}",
            time=f"2026-11-{1 + i:02d}T02:17:00+00:00",
            scenario=scenario,
            variant="reference",
            metric="latency_p95_ms",
            value=value,
            testbed=testbed,
            commit=f"{i:040x}",
            annotations={"torch": "2.12.0" if i < 12 else "2.13.0"},
        )
        for i, value in enumerate(values)
    ]


def test_run_appends_to_the_history_and_its_report_draws_the_trend(write_scenario, tmp_path):
    # no latency gate: the second run is compared with the first as a baseline, and this test is
    # about the history, not about two 1 s measurements agreeing on a busy machine
    gates = {"accuracy": "-0.01 abs", "error_rate": 0}
    load = {"users": 2, "warmup_s": 0.3, "measure_s": 1.0, "validity": {"max_spread": 5.0}}
    scenario = write_scenario(scenario_dict(name="nightly", variants=[], gates=gates, load=load))
    history = tmp_path / "history"
    for _ in range(2):
        done = run_cli(scenario, tmp_path, "--history", str(history), "--testbed", "ci-runner")
        assert done.returncode == 0, done.stderr
    lines = (history / "history.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert {r["testbed"] for r in rows} == {"ci-runner"}
    assert len({r["run_id"] for r in rows}) == 2
    assert {"latency_p95_ms", "throughput_rps", "accuracy"} <= {r["metric"] for r in rows}
    assert rows[0]["annotations"]["torch"].startswith("2.13.0")
    results = json.loads((report_path(done.stdout).parent / "results.json").read_text())
    trend = next(t for t in results["trends"] if t["metric"] == "latency_p95_ms")
    assert len(trend["values"]) == 2
    assert trend["own_index"] == 1
    assert "10 valid points are needed" in trend["note"]  # too short to look for change points yet
    html = report_path(done.stdout).read_text()
    assert "Trend" in html
    assert "<svg" in html


def test_corrupt_history_is_bad_input_before_anything_runs(write_scenario, tmp_path):
    scenario = write_scenario(scenario_dict(name="nightly-bad", variants=[]))
    history = tmp_path / "history"
    history.mkdir()
    (history / "history.jsonl").write_text('{"run_id": "x"}\n')
    done = run_cli(scenario, tmp_path, "--history", str(history))
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "history.jsonl" in line
    assert "line 1" in line
    assert not (tmp_path / "reports").exists()
    assert (history / "history.jsonl").read_text() == '{"run_id": "x"}\n'  # untouched


def test_history_command_reports_a_step_once_and_not_after_it_is_acknowledged(tmp_path):
    history = tmp_path / "history"
    steady = [10.0, 10.2, 9.9, 10.1, 10.0, 9.8, 10.1, 10.2, 9.9, 10.0, 10.1, 9.9]
    store.append(history, _history("nightly", "ci-runner", [*steady, 12.0, 12.1, 11.9, 12.2, 12.0]))
    out = tmp_path / "changes.json"
    done = _harness("history", str(history), "--json", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (change,) = json.loads(out.read_text())
    assert change["index"] == 12
    assert change["run_id"] == "20261101-12-nightly"
    assert abs(change["magnitude"] - 0.20) < 0.03
    assert change["annotations_changed"] == {"torch": ["2.12.0", "2.13.0"]}
    assert change["id"]
    assert "+20" in done.stdout or "+19" in done.stdout or "+21" in done.stdout

    acks = tmp_path / "perf-acks.yaml"
    acks.write_text(
        "- scenario: nightly\n  variant: reference\n  metric: latency_p95_ms\n"
        "  from-run: 20261101-12-nightly\n  reason: torch 2.13 upgrade, accepted\n"
    )
    again = _harness("history", str(history), "--json", str(out), "--acks", str(acks), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(out.read_text()) == []


def test_history_of_a_missing_acks_file_is_bad_input(tmp_path):
    done = _harness("history", str(tmp_path), "--acks", str(tmp_path / "nope.yaml"), cwd=ROOT)
    assert done.returncode == 2
    assert "nope.yaml" in done.stderr
    assert "Traceback" not in done.stderr
