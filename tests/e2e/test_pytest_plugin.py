"""`pytest scenarios/` runs each scenario as a test that fails when a gate fails."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import yaml

from tests.conftest import ROOT, scenario_dict
from tests.e2e.helpers import make_baseline_faster


def _pytest(scenarios, tmp_path, *extra):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(scenarios),
            "-p",
            "no:cacheprovider",
            "-q",
            "--harness-reports-dir",
            str(tmp_path / "reports"),
            "--harness-baselines-dir",
            str(tmp_path / "baselines"),
            *extra,
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )


def test_scenarios_are_collected_and_gate_failures_fail_the_test(tmp_path):
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    # a short load: the gate that must fail faces a baseline a hundred times faster
    load = {"users": 2, "warmup_s": 0.3, "measure_s": 1.0, "validity": {"max_spread": 5.0}}
    data = scenario_dict(name="plugin", variants=[], load=load)
    (scenarios / "plugin.yaml").write_text(yaml.safe_dump(data))
    (scenarios / "not-a-scenario.yaml").write_text("just: data\n")

    first = _pytest(scenarios, tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "1 passed" in first.stdout

    # 1 s measurements: the first run's p95 can be several times the second's on a busy machine,
    # so the pretended baseline is far faster than the gate's +200% could excuse
    make_baseline_faster(tmp_path / "baselines" / "plugin.json", factor=100.0)
    second = _pytest(scenarios, tmp_path)
    assert second.returncode == 1
    assert "reference: latency_p95_ms" in second.stdout
    assert "1 failed" in second.stdout

    updated = _pytest(scenarios, tmp_path, "--update-baselines")
    assert updated.returncode == 0, updated.stdout


def test_repository_scenarios_are_collected_without_running_them():
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "scenarios", "--collect-only", "-q", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "scenarios/quickstart.yaml::quickstart" in result.stdout


def test_a_scenario_whose_target_cannot_run_here_is_skipped_with_the_reason(tmp_path):
    if shutil.which("tensorflow_model_server"):
        pytest.skip("tensorflow_model_server is installed here: the scenario would run, not skip")
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    data = scenario_dict(name="tfs", variants=[], serving={"target": "tfserving"})
    data["model"] = {"framework": "tensorflow", "source": "builtin:mlp"}
    (scenarios / "tfs.yaml").write_text(yaml.safe_dump(data))
    result = _pytest(scenarios, tmp_path, "-rs")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout
    assert "tensorflow_model_server not found" in result.stdout
    assert not (tmp_path / "reports").exists(), "nothing ran, so no run folder"
