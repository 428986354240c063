"""Bad scenario input gives one line naming the file, the key and what is expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.scenario.loader import load_scenario
from tests.conftest import ROOT, load_error, scenario_dict


def _error(path: Path) -> str:
    return load_error(path)


def test_shipped_scenarios_are_valid():
    for path in sorted((ROOT / "scenarios").glob("*.yaml")):
        scenario = load_scenario(path)
        assert scenario.all_variants()[0].name == "reference"


def test_reference_variant_is_measured_first_even_when_not_declared(write_scenario):
    scenario = load_scenario(write_scenario(scenario_dict()))
    assert [v.name for v in scenario.all_variants()] == ["reference", "pruned-int8"]


def test_unknown_top_level_key_is_named(write_scenario):
    message = _error(write_scenario(scenario_dict(servng={"target": "x"})))
    assert "servng: unknown key" in message


def test_unknown_nested_key_is_named_with_its_path(write_scenario):
    data = scenario_dict()
    data["load"]["userz"] = 3
    assert "load.userz: unknown key" in _error(write_scenario(data))


def test_wrong_type_names_key_and_expectation(write_scenario):
    data = scenario_dict()
    data["load"]["users"] = "many"
    message = _error(write_scenario(data))
    assert "load.users: expected" in message
    assert "integer" in message
    assert "'many'" in message


def test_missing_required_key(write_scenario):
    data = scenario_dict()
    del data["serving"]
    assert "serving: required key is missing" in _error(write_scenario(data))


def test_unknown_recipe_lists_known_ones(write_scenario):
    data = scenario_dict(variants=[{"name": "v", "steps": [{"recipe": "torch.magic"}]}])
    message = _error(write_scenario(data))
    assert "variants[0].steps[0].recipe: unknown recipe 'torch.magic'" in message
    assert "torch.prune" in message


def test_bad_recipe_parameter_names_its_full_key(write_scenario):
    data = scenario_dict(
        variants=[{"name": "v", "steps": [{"recipe": "torch.prune", "params": {"amount": 1.5}}]}]
    )
    assert "variants[0].steps[0].params.amount: expected" in _error(write_scenario(data))


def test_unknown_recipe_parameter(write_scenario):
    data = scenario_dict(
        variants=[{"name": "v", "steps": [{"recipe": "torch.prune", "params": {"amout": 0.5}}]}]
    )
    assert "variants[0].steps[0].params.amout: unknown key" in _error(write_scenario(data))


def test_unknown_target_lists_known_ones(write_scenario):
    data = scenario_dict(serving={"target": "triton"})
    message = _error(write_scenario(data))
    assert "serving.target: unknown target 'triton'" in message
    assert "torchserve" in message


def test_missing_model_file_is_reported_with_its_resolved_path(write_scenario, tmp_path):
    data = scenario_dict(model={"framework": "torch", "source": "models/missing.pt2"})
    message = _error(write_scenario(data))
    assert f"model.source: model file {tmp_path / 'models' / 'missing.pt2'} does not exist" in message


def test_bad_gate_threshold_names_the_metric(write_scenario):
    data = scenario_dict(gates={"latency_p95_ms": "fast please"})
    assert "gates.latency_p95_ms:" in _error(write_scenario(data))


def test_unknown_gate_metric(write_scenario):
    data = scenario_dict(gates={"latency_p97_ms": "+10%"})
    assert "gates.latency_p97_ms:" in _error(write_scenario(data))


def test_duplicate_variant_names(write_scenario):
    data = scenario_dict(variants=[{"name": "a"}, {"name": "a"}])
    assert "used twice" in _error(write_scenario(data))


def test_invalid_yaml_gives_line_number(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nmodel: [unclosed\n")
    assert "not valid YAML (line" in _error(path)


def test_missing_scenario_file(tmp_path):
    assert "scenario file not found" in _error(tmp_path / "nope.yaml")


def test_unknown_serving_option_is_caught_by_validate(write_scenario):
    data = scenario_dict(serving={"target": "torchserve", "options": {"modle_name": "x"}})
    assert "serving.options.modle_name: unknown key" in _error(write_scenario(data))


def test_yaml_boolean_is_not_a_gate_threshold(write_scenario):
    data = scenario_dict(gates={"error_rate": True})
    assert "gates: expected a threshold for 'error_rate'" in _error(write_scenario(data))


@pytest.mark.parametrize("name", ["..", ".hidden", "a/b"])
def test_variant_names_cannot_escape_their_folder(write_scenario, name):
    data = scenario_dict(variants=[{"name": name}])
    assert "variants[0].name: expected" in _error(write_scenario(data))
