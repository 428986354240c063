"""The gate as a CI user sees it: exit 0 against a fresh baseline, exit 1 against a faster one."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import scenario_dict
from tests.e2e.helpers import make_baseline_faster, report_path, run_cli

# a short load: the tiny MLP answers thousands of requests a second, so even 0.1 s windows hold
# hundreds; the gates are +200% on p95 against a fresh baseline, and a baseline ten times faster
SHORT_LOAD = {"users": 2, "warmup_s": 0.3, "measure_s": 1.0, "validity": {"max_spread": 5.0}}


def test_gate_records_then_passes_then_fails_against_a_much_faster_baseline(write_scenario, tmp_path):
    # the reference alone: the variants add nothing a gate does not already judge on the reference
    data = scenario_dict(name="gate-inprocess", variants=[], load=SHORT_LOAD)
    data["load"]["window_s"] = 0.1  # ten windows: enough for the window test (eight per side)
    scenario = write_scenario(data)
    baseline_file = tmp_path / "baselines" / "gate-inprocess.json"

    first = run_cli(scenario, tmp_path)
    assert first.returncode == 0, first.stderr
    assert "recorded as the baseline" in first.stderr
    assert baseline_file.is_file()
    # the reports are a rendering of results.json alone: re-rendering gives the same bytes
    run_dir = report_path(first.stdout).parent
    written = {name: (run_dir / name).read_bytes() for name in ("index.html", "junit.xml", "summary.md")}
    for name in written:
        (run_dir / name).unlink()
    rendered = subprocess.run(
        [sys.executable, "-m", "harness", "report", str(run_dir)], capture_output=True, text=True, check=False
    )
    assert rendered.returncode == 0, rendered.stderr
    assert {name: (run_dir / name).read_bytes() for name in written} == written

    second = run_cli(scenario, tmp_path)
    assert second.returncode == 0, second.stderr
    assert "compared with baseline" in second.stderr
    results = json.loads((report_path(second.stdout).parent / "results.json").read_text())
    assert results["baseline"]["status"] == "compared"
    assert results["outcome"] == "pass"
    assert results["exit_code"] == 0
    verdicts = [v for variant in results["variants"] for v in variant["verdicts"]]
    assert {v["metric"] for v in verdicts} >= {"latency_p95_ms", "accuracy", "error_rate"}
    stored = json.loads(baseline_file.read_text())["environments"]
    windows = next(iter(stored.values()))["variants"]["reference"]["latency_windows"]["latency_p95_ms"]
    assert len(windows) == 10
    latency = [v for v in verdicts if v["metric"] == "latency_p95_ms"]
    assert {v["evidence"]["test"] for v in latency} == {"windows"}
    assert all(v["evidence"]["n_current"] == v["evidence"]["n_baseline"] == 10 for v in latency)

    make_baseline_faster(baseline_file)
    tampered = baseline_file.read_bytes()
    third = run_cli(scenario, tmp_path)
    assert third.returncode == 1, third.stderr
    assert "latency_p95_ms" in third.stderr
    third_results = json.loads((report_path(third.stdout).parent / "results.json").read_text())
    assert third_results["outcome"] == "regression"
    verdicts = [v for variant in third_results["variants"] for v in variant["verdicts"]]
    failed = [v for v in verdicts if v["status"] == "fail"]
    assert any(v["evidence"]["kind"] == "latency" and v["evidence"]["test"] == "windows" for v in failed)
    assert "Traceback" not in third.stderr
    assert baseline_file.read_bytes() == tampered, "a failing run must not touch the stored baseline"
    assert report_path(third.stdout).is_file(), "the report is written even when gates fail"


def test_update_baselines_rewrites_a_faster_baseline_deliberately(write_scenario, tmp_path):
    scenario = write_scenario(scenario_dict(name="gate-update", variants=[], load=SHORT_LOAD))
    baseline_file = tmp_path / "baselines" / "gate-update.json"
    assert run_cli(scenario, tmp_path).returncode == 0
    make_baseline_faster(baseline_file)

    updated = run_cli(scenario, tmp_path, "--update-baselines", "--keep-samples")
    assert updated.returncode == 0, updated.stderr
    assert "baseline rewritten" in updated.stderr
    # per-request latencies only on request, in their own file; results.json keeps the histogram
    run_dir = report_path(updated.stdout).parent
    results = json.loads((run_dir / "results.json").read_text())
    (point,) = results["variants"][0]["measurements"][0]["points"]
    samples = json.loads((run_dir / point["samples_file"]).read_text())
    assert len(samples) == results["variants"][0]["metrics"]["request_count"]
    assert point["latency_histogram"]
    assert "latencies_ms" not in results["variants"][0]
    assert run_cli(scenario, tmp_path).returncode == 0


def test_still_invalid_after_remeasuring_is_inconclusive_exit_3_and_not_compared(write_scenario, tmp_path):
    data = scenario_dict(name="gate-invalid", variants=[])
    data["load"]["validity"] = {"max_spread": 5.0, "min_requests": 1_000_000}
    data["gate_policy"] = {"confirm_runs": 1}
    result = run_cli(write_scenario(data), tmp_path)

    assert result.returncode == 3, result.stderr
    assert "inconclusive" in result.stderr
    assert "too few requests for p95" in result.stderr
    assert "regression" not in result.stderr
    assert "Traceback" not in result.stderr
    results = json.loads((report_path(result.stdout).parent / "results.json").read_text())
    assert results["outcome"] == "inconclusive"
    assert results["exit_code"] == 3
    reference = results["variants"][0]
    # measured, found INVALID, measured again, still INVALID: both measurements are kept
    assert [m["points"][-1]["validity"]["valid"] for m in reference["measurements"]] == [False, False]
    metrics = {v["metric"]: v["status"] for v in reference["verdicts"]}
    assert metrics.get("validity") == "inconclusive"
    # error_rate: 0 is a bare limit, judged even without a baseline, except on an INVALID window
    assert "error_rate" not in metrics, "an INVALID window's numbers are not judged as a result"
    assert results["baseline"]["status"] == "not_written"
    assert not (tmp_path / "baselines" / "gate-invalid.json").exists()
