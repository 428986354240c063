"""Defect 10: a scenario cannot exhaust the machine; impossible settings are refused by validate."""

from __future__ import annotations

import math
from typing import Any

import pytest

from harness.scenario.bounds import MAX_USERS
from harness.scenario.loader import load_scenario
from harness.scenario.schema import Scenario
from tests.conftest import load_error, scenario_dict


def _error(write_scenario, data: dict[str, Any]) -> str:
    return load_error(write_scenario(data))


def _with(section: str, **values: Any) -> dict[str, Any]:
    data = scenario_dict()
    data.setdefault(section, {}).update(values)
    return data


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("load", "users", 10_000_000),
        ("load", "users", [1, 10_000_000]),
        ("load", "workers", 100_000),
        ("load", "request_batch_size", 100_000_000),
        ("load", "measure_s", 1e12),
        ("load", "warmup_s", 1e9),
        ("load", "timeout_s", 1e9),
        ("load", "spawn_rate", 1e9),
        ("load", "remote_workers", 10**9),
        ("serving", "workers", 10**6),
        ("serving", "batch_size", 10**8),
        ("serving", "startup_timeout_s", 1e12),
        ("model", "seed", 10**23),
        ("gate_policy", "bootstrap_resamples", 10**12),
        ("gate_policy", "confirm_runs", 10**6),
    ],
)
def test_values_that_would_exhaust_the_machine_are_refused(write_scenario, section, key, value):
    message = _error(write_scenario, _with(section, **{key: value}))
    assert f"{section}.{key}" in message
    assert "expected" in message


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
@pytest.mark.parametrize(
    ("section", "key"), [("load", "measure_s"), ("load", "warmup_s"), ("serving", "startup_timeout_s")]
)
def test_nan_and_infinite_durations_are_refused(write_scenario, section, key, value):
    message = _error(write_scenario, _with(section, **{key: value}))
    assert f"{section}.{key}: expected" in message


def test_inf_in_a_validity_setting_is_refused(write_scenario):
    data = scenario_dict()
    data["load"]["validity"] = {"max_spread": math.inf}
    assert "load.validity.max_spread: expected" in _error(write_scenario, data)


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("load", "users"),
        ("load", "measure_s"),
        ("load", "workers"),
        ("load", "request_batch_size"),
        ("serving", "workers"),
        ("serving", "startup_timeout_s"),
        ("model", "seed"),
        ("gate_policy", "confirm_runs"),
        ("gate_policy", "alpha"),
    ],
)
def test_yaml_boolean_is_not_a_number(write_scenario, section, key):
    message = _error(write_scenario, _with(section, **{key: True}))
    assert f"{section}.{key}: expected" in message
    assert "(got True)" in message


def test_yaml_boolean_in_a_user_sweep_is_refused(write_scenario):
    assert "load.users" in _error(write_scenario, _with("load", users=[1, True]))


def test_yaml_boolean_in_recipe_params_is_refused(write_scenario):
    data = scenario_dict(
        variants=[{"name": "v", "steps": [{"recipe": "torch.prune", "params": {"amount": True}}]}]
    )
    assert "variants[0].steps[0].params.amount: expected" in _error(write_scenario, data)


def test_string_that_looks_like_a_float_is_not_silently_a_number(write_scenario):
    # PyYAML reads 1e8 (no dot) as the string "1e8"
    assert "load.request_batch_size: expected" in _error(
        write_scenario, _with("load", request_batch_size="1e8")
    )


def test_load_workers_above_cpu_count_need_force_workers(write_scenario, monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    message = _error(write_scenario, _with("load", workers=3))
    assert "load.workers: expected at most this machine's 2 CPUs" in message
    assert "force_workers" in message
    scenario = load_scenario(write_scenario(_with("load", workers=3, force_workers=True)))
    assert scenario.load.workers == 3


def test_force_workers_does_not_change_the_configuration_id(write_scenario):
    plain = load_scenario(write_scenario(scenario_dict(), name="a.yaml"))
    forced = load_scenario(write_scenario(_with("load", force_workers=True), name="b.yaml"))
    assert plain.model_dump(mode="json") == forced.model_dump(mode="json")


def test_stable_windows_above_the_most_windows_is_refused(write_scenario):
    data = scenario_dict()
    data["load"].update(window_s=0.5, validity={"stable_windows": 9, "max_windows": 5})
    message = _error(write_scenario, data)
    assert "load: expected validity.stable_windows (9) at most" in message


def test_min_requests_beyond_any_plausible_rate_is_refused(write_scenario):
    data = scenario_dict()
    data["load"]["validity"] = {"min_requests": 900_000_000}
    assert "load: expected validity.min_requests at most" in _error(write_scenario, data)


def test_min_requests_beyond_an_open_loop_rate_is_refused(write_scenario):
    data = scenario_dict()
    data["load"].update(mode="open", rate_rps=10.0, arrival="constant", validity={"min_requests": 662})
    # 1.5 s measured, default 8 windows of 0.5 s = 4 s at 10 req/s: about 40 requests
    assert "validity.min_requests at most 41" in _error(write_scenario, data)


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ({"slo_ms": 20, "low": 50, "high": 10}, "low at most high"),
        (
            {"slo_ms": 20, "over": "users", "high": 5000},
            f"high at most {MAX_USERS} when searching over users",
        ),
        ({"slo_ms": 20, "over": "users", "low": 1.2, "high": 1.8}, "a whole user count"),
        ({"slo_ms": 1000, "high": 50_000}, "requests in flight"),
    ],
)
def test_search_that_can_never_run_is_refused(write_scenario, search, expected):
    data = scenario_dict()
    data["load"]["search"] = search
    message = _error(write_scenario, data)
    assert "load.search: expected" in message
    assert expected in message


def test_every_number_in_the_json_schema_has_a_documented_upper_bound():
    unbounded: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if node.get("type") in ("integer", "number"):
                bound = node.get("maximum", node.get("exclusiveMaximum"))
                if bound is None or not math.isfinite(bound):
                    unbounded.append(where)
            for key, value in node.items():
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    walk(Scenario.model_json_schema(), "#")
    # users and rate_rps are bounded by a validator (int or list); their descriptions state the bound.
    # A bare-number gate is a finite limit on a metric's value, not a size: any finite value is safe.
    allowed = ("LoadSpec.properties.users", "LoadSpec.properties.rate_rps", "properties.gates.")
    assert [w for w in unbounded if not any(a in w for a in allowed)] == []
    load = Scenario.model_json_schema()["$defs"]["LoadSpec"]["properties"]
    assert str(MAX_USERS) in load["users"]["description"]
    assert "100,000" in load["rate_rps"]["description"]


def test_deadline_is_finite_generous_and_grows_with_the_scenario(write_scenario):
    small = load_scenario(write_scenario(scenario_dict(variants=[]), name="small.yaml"))
    assert math.isfinite(small.deadline_s())
    load = small.load
    one_variant = small.serving.startup_timeout_s + load.warmup_s + load.longest_measure_s()
    assert small.deadline_s() > 2 * one_variant  # measured twice with confirm_runs: 1

    data = scenario_dict()
    data["load"]["users"] = [1, 2, 4]
    data["load"]["search"] = {"slo_ms": 20, "high": 100}
    bigger = load_scenario(write_scenario(data, name="big.yaml"))
    assert bigger.deadline_s() > small.deadline_s() + 2 * 3 * load.longest_measure_s()


def test_deadline_of_the_largest_scenario_is_still_bounded(write_scenario):
    data = scenario_dict(
        variants=[{"name": f"v{i}", "steps": [{"recipe": "torch.int8"}]} for i in range(32)],
    )
    data["load"] = {
        "users": [1000] * 64,
        "spawn_rate": 0.001,
        "warmup_s": 3600,
        "measure_s": 3600,
        "timeout_s": 600,
        "validity": {"max_windows": 1000, "stable_windows": 2},
        "search": {"slo_ms": 1, "over": "users", "high": 1000, "iterations": 20, "probe_s": 3600},
    }
    data["serving"]["startup_timeout_s"] = 3600
    data["gate_policy"] = {"confirm_runs": 10}
    deadline = load_scenario(write_scenario(data)).deadline_s()
    assert math.isfinite(deadline)
