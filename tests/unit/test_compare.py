"""compare(): when a run is gated, recorded, or kept away from the stored baseline."""

from __future__ import annotations

import json

import pytest

from harness.api import compare, variant_config_ids
from harness.results import RunResult, VariantResult
from harness.scenario import load_scenario
from tests.conftest import scenario_dict

ENV = {"cpu_model": "test cpu", "logical_cores": 2, "python": "3.11"}


def _result(latencies: dict[str, list[float]], p95: float = 2.0) -> RunResult:
    variants = [
        VariantResult(
            name=name,
            steps=[],
            metrics={"latency_p95_ms": p95, "accuracy": 0.97, "error_rate": 0.0, "throughput_rps": 100.0}
            if samples
            else {"error_rate": 0.0, "throughput_rps": 0.0, "accuracy": 0.97},
            latencies_ms=samples,
        )
        for name, samples in latencies.items()
    ]
    return RunResult("run-1", "tiny", {}, "", "", dict(ENV), {}, variants)


@pytest.fixture
def scenario(write_scenario):
    return load_scenario(write_scenario(scenario_dict(variants=[])))


def test_first_run_records_only_after_the_caller_runs_the_write(scenario, tmp_path):
    result = _result({"reference": [1.0, 2.0]})
    record = compare(result, scenario, tmp_path, update_baselines=False)
    assert result.baseline_status == "recorded"
    assert not (tmp_path / "tiny.json").exists(), "nothing is written before results.json"
    assert record is not None
    record()
    stored = json.loads((tmp_path / "tiny.json").read_text())
    (entry,) = stored["environments"].values()
    assert entry["variants"]["reference"]["config"] == variant_config_ids(scenario)["reference"]


def test_a_variant_without_any_successful_request_fails_and_records_nothing(scenario, tmp_path):
    result = _result({"reference": []})
    record = compare(result, scenario, tmp_path, update_baselines=False)
    assert not result.passed
    assert any(v.metric == "request_count" and not v.passed for v in result.verdicts)
    assert record is None


def test_baseline_from_other_load_settings_is_not_compared(write_scenario, tmp_path):
    first = load_scenario(write_scenario(scenario_dict(variants=[])))
    record = compare(_result({"reference": [1.0]}, p95=1.0), first, tmp_path, update_baselines=False)
    assert record is not None
    record()

    data = scenario_dict(variants=[])
    data["load"]["users"] = 8
    changed = load_scenario(write_scenario(data, name="changed.yaml"))
    result = _result({"reference": [50.0]}, p95=50.0)  # 50x slower, but measured under other settings
    assert compare(result, changed, tmp_path, update_baselines=False) is None
    assert result.baseline_status == "compared"
    assert not [v for v in result.verdicts if v.metric == "latency_p95_ms"]
    assert "--update-baselines" in result.baseline_message


def test_same_settings_are_compared_and_a_regression_fails(scenario, tmp_path):
    record = compare(_result({"reference": [1.0]}, p95=1.0), scenario, tmp_path, update_baselines=False)
    assert record is not None
    record()
    result = _result({"reference": [50.0]}, p95=50.0)
    compare(result, scenario, tmp_path, update_baselines=False)
    failed = [v for v in result.verdicts if not v.passed]
    assert [v.metric for v in failed] == ["latency_p95_ms"]


def test_startup_timeout_does_not_change_the_configuration_id(write_scenario):
    data = scenario_dict()
    a = variant_config_ids(load_scenario(write_scenario(data, name="a.yaml")))
    data["serving"]["startup_timeout_s"] = 300
    b = variant_config_ids(load_scenario(write_scenario(data, name="b.yaml")))
    data["variants"][0]["steps"][0]["params"]["amount"] = 0.3
    c = variant_config_ids(load_scenario(write_scenario(data, name="c.yaml")))
    assert a == b
    assert c["reference"] == a["reference"]
    assert c["pruned-int8"] != a["pruned-int8"]
