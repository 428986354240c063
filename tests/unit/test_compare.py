"""Configuration ids: which settings keep a variant away from a baseline measured under others."""

from __future__ import annotations

from harness.run.baseline import variant_config_ids
from harness.scenario.loader import load_scenario
from tests.conftest import ROOT, scenario_dict


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


def test_changed_data_is_a_new_configuration_never_compared_silently():
    scenario = load_scenario(ROOT / "scenarios" / "quickstart.yaml")
    one, other = variant_config_ids(scenario, "a" * 64), variant_config_ids(scenario, "b" * 64)
    assert one.keys() == other.keys()
    assert all(one[name] != other[name] for name in one)
