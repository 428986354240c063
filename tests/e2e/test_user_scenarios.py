"""The shipped user-model scenarios end to end: a multi-input int64 text classifier on TorchServe and
a regression model in-process, each with its own python: model factory and data function.

Each test runs the shipped scenario's model, data, variants and gates as they are, with a shorter
load block whose stability limit is loose (these tests check the pipeline, not the machine's noise;
0.5 s windows on a shared 2-core machine are rarely within 30%). The copy sits in tmp_path next
to a symlink to scenarios/examples, so its python: names resolve as they do for the shipped file.
The quality figures in results.json are recomputed with scikit-learn from the served outputs the
run folder keeps (`Measurement.outputs_file`) and the test labels.
"""

from __future__ import annotations

import importlib
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import yaml
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, mean_squared_error

from harness.api import run_scenario
from harness.results import Outcome, RunResult
from tests.conftest import ROOT

SCENARIOS = ROOT / "scenarios"
SHORT_LOAD: dict[str, Any] = {
    "warmup_s": 0.5,
    "measure_s": 1.5,
    "window_s": 0.5,
    "validity": {"max_spread": 5.0, "max_windows": 4},
}

pytestmark = pytest.mark.slow


def _example(name: str) -> ModuleType:
    sys.path.insert(0, str(SCENARIOS))
    try:
        return importlib.import_module(f"examples.{name}")
    finally:
        sys.path.remove(str(SCENARIOS))


def _shipped_with_short_load(name: str, folder: Path) -> Path:
    data = yaml.safe_load((SCENARIOS / f"{name}.yaml").read_text())
    data["load"] = {**data["load"], **SHORT_LOAD}
    (folder / "examples").symlink_to(SCENARIOS / "examples", target_is_directory=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _run(scenario: Path, workdir: Path) -> tuple[RunResult, Path, dict[str, Any]]:
    result = run_scenario(scenario, reports_dir=workdir / "reports", baselines_dir=workdir / "baselines")
    run_dir = workdir / "reports" / result.run_id
    return result, run_dir, json.loads((run_dir / "results.json").read_text())


def _served_outputs(run_dir: Path, results: dict[str, Any]) -> dict[tuple[str, int], np.ndarray]:
    """Every measurement's served outputs on the test split, by (variant, measurement number)."""
    found = {}
    for variant in results["variants"]:
        for measurement in variant["measurements"]:
            assert measurement["outputs_file"], (variant["name"], measurement["number"])
            found[variant["name"], measurement["number"]] = np.load(run_dir / measurement["outputs_file"])
    return found


def _measured(
    results: dict[str, Any], outputs: dict[tuple[str, int], np.ndarray]
) -> Iterator[tuple[dict[str, Any], np.ndarray]]:
    """Every measurement of every variant in results.json, with its served outputs."""
    for variant in results["variants"]:
        for measurement in variant["measurements"]:
            yield measurement, outputs[variant["name"], measurement["number"]]


def _check_passed(result: RunResult, results: dict[str, Any], variants: list[str]) -> None:
    assert result.failure is None, result.failure
    assert [v.name for v in result.variants] == variants
    assert result.outcome == Outcome.PASS, [(v.name, v.outcome, v.verdicts) for v in result.variants]
    assert results["outcome"] == "pass"
    assert results["exit_code"] == 0
    for variant in result.variants:
        assert variant.metrics["error_rate"] == 0, variant.name
        assert variant.metrics["request_count"] > 0, variant.name


@pytest.mark.torchserve
@pytest.mark.skipif(
    shutil.which("java") is None, reason="TorchServe needs Java 17: apt-get install openjdk-17-jre-headless"
)
def test_text_classifier_scenario_serves_int64_ids_and_masks_and_scores_them_as_sklearn_does(tmp_path):
    scenario = _shipped_with_short_load("text_classifier", tmp_path)
    result, run_dir, results = _run(scenario, tmp_path)

    _check_passed(result, results, ["reference", "int8-dynamic", "pruned"])
    assert result.target["target"] == "torchserve"
    _, labels = _example("text_bag").load()["test"]
    outputs = _served_outputs(run_dir, results)
    for measurement, served in _measured(results, outputs):
        assert served.shape == (len(labels), 4)
        predicted = served.argmax(axis=1)
        metrics = measurement["metrics"]
        assert metrics["accuracy"] == pytest.approx(accuracy_score(labels, predicted), abs=1e-12)
        assert metrics["macro_f1"] == pytest.approx(f1_score(labels, predicted, average="macro"), abs=1e-12)
        assert measurement["predictions"] == predicted.tolist()
        # the served file classifies exactly as the same file in-process
        assert metrics["accuracy"] == pytest.approx(metrics["accuracy_inprocess"], abs=1e-12)

    by_name = {v.name: v.metrics for v in result.variants}
    for name, metrics in by_name.items():
        assert {"accuracy", "macro_f1", "agreement", "accuracy_drop_vs_reference"} <= set(metrics), name
        assert metrics["accuracy"] > 0.75, name  # four topics, chance 0.30
    assert by_name["reference"]["agreement"] == 1.0
    assert by_name["int8-dynamic"]["agreement"] >= 0.9
    assert by_name["pruned"]["agreement"] >= 0.9
    reference = outputs["reference", 1].argmax(axis=1)
    pruned = outputs["pruned", result.variants[2].reported.number].argmax(axis=1)
    assert by_name["pruned"]["agreement"] == pytest.approx(float(np.mean(pruned == reference)), abs=1e-12)
    assert by_name["pruned"]["sparsity"] > 0  # the Linear layers only: the embedding table is untouched
    gated = {v["metric"] for variant in results["variants"] for v in variant["verdicts"]}
    assert {"agreement", "accuracy_drop_vs_reference", "error_rate"} <= gated


def test_diabetes_scenario_reports_mae_and_rmse_as_sklearn_computes_them_and_gates_on_its_baseline(tmp_path):
    scenario = _shipped_with_short_load("diabetes_regression", tmp_path)
    first, run_dir, results = _run(scenario, tmp_path)

    _check_passed(first, results, ["reference", "int8-dynamic", "pruned"])
    assert first.baseline.status == "recorded"
    _, labels = _example("diabetes").load()["test"]
    outputs = _served_outputs(run_dir, results)
    for measurement, served in _measured(results, outputs):
        assert served.shape == (len(labels), 1)
        metrics = measurement["metrics"]
        assert "accuracy" not in metrics
        # in float64, as the harness computes them (float32 sums differ in the 8th digit)
        truth, predicted = labels.astype(np.float64), served[:, 0].astype(np.float64)
        assert metrics["mae"] == pytest.approx(mean_absolute_error(truth, predicted), rel=1e-9)
        rmse = np.sqrt(mean_squared_error(truth, predicted))
        assert metrics["rmse"] == pytest.approx(rmse, rel=1e-9)
        assert metrics["mae"] == pytest.approx(metrics["mae_inprocess"], rel=1e-9)
    for variant in first.variants:
        assert variant.metrics["mae"] < 48, variant.name  # LinearRegression: about 45 on this split
        assert variant.metrics["rmse"] < 60, variant.name
    assert first.variants[0].metrics["output_abs_diff_mean"] == 0.0

    # the second run compares with the first: the relative mae and rmse gates are judged
    second, _, results = _run(scenario, tmp_path)
    _check_passed(second, results, ["reference", "int8-dynamic", "pruned"])
    assert second.baseline.status == "compared"
    judged = {
        (v["variant"], v["metric"]): v["status"]
        for variant in results["variants"]
        for v in variant["verdicts"]
    }
    for name in ("reference", "int8-dynamic", "pruned"):
        assert judged[name, "mae"] == "pass"
        assert judged[name, "rmse"] == "pass"
        assert judged[name, "output_abs_diff_mean"] == "pass"
