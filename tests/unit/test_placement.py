"""CPU placement: parsing `serving.cpus` / `load.cpus`, splitting the CPUs between the server tree and
the load generator, and the one-line errors a scenario gets for CPUs it cannot have."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from harness.errors import UserError
from harness.placement import ANY, AUTO, cpulist, parse_cpus, pinned_argv, plan_placement
from harness.scenario.loader import load_scenario
from harness.scenario.schema import Scenario
from harness.serving.placement import scenario_placement, shared_cpus_warning
from tests.conftest import load_error, scenario_dict

FOUR = (0, 1, 2, 3)
EXPECTED_FORM = "'auto', 'any', or CPUs such as '1' or '0-1,3'"


def _error(write_scenario, data: dict[str, Any]) -> str:
    return load_error(write_scenario(data))


def _with_cpus(serving: Any = AUTO, load: Any = AUTO, target: str = "inprocess") -> dict[str, Any]:
    data = scenario_dict()
    data["serving"].update(target=target, cpus=serving)
    data["load"]["cpus"] = load
    return data


# ---- parse_cpus and cpulist -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("auto", AUTO),
        (" any ", ANY),
        ("2", (2,)),
        ("0-1,3", (0, 1, 3)),
        ("5,1-2", (1, 2, 5)),
        ("0-2,1", (0, 1, 2)),
        (" 4 , 6 ", (4, 6)),
        ([3, 1, 1], (1, 3)),
        ((0,), (0,)),
    ],
)
def test_parse_cpus_reads_keywords_lists_and_ranges(value, expected):
    assert parse_cpus(value) == expected


@pytest.mark.parametrize("value", ["banana", "", "1,,2", "1-", "-1", "a-b", "0-1-2", "1.5", "Auto"])
def test_parse_cpus_refuses_malformed_text_saying_what_is_expected(value):
    with pytest.raises(ValueError, match=EXPECTED_FORM):
        parse_cpus(value)


def test_parse_cpus_refuses_a_backwards_range_naming_it():
    with pytest.raises(ValueError, match=r"'3-1'.*runs backwards"):
        parse_cpus("0,3-1")


@pytest.mark.parametrize("value", [[-1], [True], ["1"], [1.0], [0, None]])
def test_parse_cpus_refuses_list_items_that_are_not_cpu_numbers(value):
    with pytest.raises(ValueError, match="CPU numbers"):
        parse_cpus(value)


def test_parse_cpus_refuses_an_empty_list():
    with pytest.raises(ValueError, match="at least one CPU"):
        parse_cpus([])


@pytest.mark.parametrize("value", ["0-99999", "100000", [100000]])
def test_parse_cpus_refuses_cpu_numbers_no_machine_has(value):
    # a typo such as "0-4294967295" must be refused, not expanded into a set of 4 billion CPUs
    with pytest.raises(ValueError, match="CPU numbers"):
        parse_cpus(value)


@pytest.mark.parametrize(
    ("cpus", "text"),
    [([0, 1, 2, 5], "0-2,5"), ([3], "3"), ([7, 1, 0, 1], "0-1,7"), ([1, 3, 5], "1,3,5"), ([], "")],
)
def test_cpulist_writes_runs_as_ranges(cpus, text):
    assert cpulist(cpus) == text


@pytest.mark.parametrize("cpus", [{0}, {0, 1}, {0, 2, 3, 4, 9}, {1, 3, 5, 6, 7}, set(range(64))])
def test_cpulist_and_parse_cpus_round_trip(cpus):
    text = cpulist(cpus)
    assert parse_cpus(text) == tuple(sorted(cpus))
    assert cpulist(parse_cpus(text)) == text


def test_pinned_argv_runs_the_program_after_setting_affinity_and_leaves_it_alone_for_none():
    argv = ["torchserve", "--start", "a b"]
    assert pinned_argv(argv, None) == argv
    pinned = pinned_argv(argv, (1, 3))
    assert pinned[0] == sys.executable
    assert pinned[-4:] == ["1,3", *argv]


# ---- plan_placement ----------------------------------------------------------------------------------


def test_auto_on_two_cpus_gives_the_server_one_and_the_load_the_other():
    plan = plan_placement("local", AUTO, AUTO, available=(0, 1))
    assert (plan.server, plan.load) == ((0,), (1,))
    assert plan.how == "auto: server on CPU 0, load on CPU 1"
    assert plan.warnings == ()


def test_auto_gives_the_load_one_cpu_per_locust_process_from_the_end():
    plan = plan_placement("local", AUTO, AUTO, load_processes=2, available=FOUR)
    assert (plan.server, plan.load) == ((0, 1), (2, 3))
    assert plan.warnings == ()


def test_auto_gives_the_load_at_most_half_of_the_cpus():
    plan = plan_placement("local", AUTO, AUTO, load_processes=8, available=FOUR)
    assert (plan.server, plan.load) == ((0, 1), (2, 3))


def test_auto_splits_the_cpus_this_process_may_use_not_the_machines():
    plan = plan_placement("local", AUTO, AUTO, available=(2, 5, 7))
    assert (plan.server, plan.load) == ((2, 5), (7,))


def test_auto_on_one_cpu_places_nothing_and_warns_that_load_and_server_share_it():
    plan = plan_placement("local", AUTO, AUTO, available=(3,))
    assert (plan.server, plan.load) == (None, None)
    assert plan.how.startswith("not placed: 1 CPU")
    assert len(plan.warnings) == 1
    assert "shares CPU 3 with the server" in plan.warnings[0]


def test_explicit_overlapping_sets_are_kept_but_warned_about():
    plan = plan_placement("local", "0-1", [1, 2], available=FOUR)
    assert (plan.server, plan.load) == ((0, 1), (1, 2))
    assert plan.how == "scenario: server on CPU 0-1, load on CPU 1-2"
    assert len(plan.warnings) == 1
    assert "shares CPU 1 with the server" in plan.warnings[0]


def test_explicit_disjoint_sets_are_taken_as_given():
    plan = plan_placement("local", [0], "3", available=FOUR)
    assert (plan.server, plan.load) == ((0,), (3,))
    assert plan.warnings == ()


@pytest.mark.parametrize(
    ("serving", "load", "server", "load_set"),
    [("0", AUTO, (0,), (1, 2, 3)), (AUTO, [3], (0, 1, 2), (3,)), (AUTO, "1-2", (0, 3), (1, 2))],
)
def test_an_auto_side_gets_the_cpus_the_explicit_side_leaves(serving, load, server, load_set):
    plan = plan_placement("local", serving, load, available=FOUR)
    assert (plan.server, plan.load) == (server, load_set)
    assert plan.how.startswith("scenario: ")
    assert plan.warnings == ()


def test_an_explicit_side_taking_every_cpu_leaves_the_auto_side_unplaced_with_a_warning():
    plan = plan_placement("local", "0-3", AUTO, available=FOUR)
    assert (plan.server, plan.load) == ((0, 1, 2, 3), None)
    assert "load on any CPU" in plan.how
    assert len(plan.warnings) == 1


def test_any_is_not_placed():
    plan = plan_placement("local", ANY, [3], available=FOUR)
    assert (plan.server, plan.load) == (None, (3,))
    assert "server on any CPU" in plan.how
    assert "shares CPU 3" in plan.warnings[0]


@pytest.mark.parametrize(("serving", "load"), [(AUTO, AUTO), ("0", "1"), (ANY, ANY)])
def test_an_in_process_target_is_never_placed(serving, load):
    plan = plan_placement("in-process", serving, load, available=FOUR)
    assert (plan.server, plan.load) == (None, None)
    assert plan.how.startswith("not placed: an in-process target")
    assert plan.warnings == ()


def test_a_remote_server_is_not_placed_and_auto_load_is_left_alone():
    plan = plan_placement("remote", AUTO, AUTO, available=FOUR)
    assert (plan.server, plan.load) == (None, None)
    assert plan.how == "not placed: the server is remote"
    assert plan.warnings == ()


def test_a_remote_server_keeps_an_explicit_load_set():
    plan = plan_placement("remote", AUTO, "2-3", available=FOUR)
    assert (plan.server, plan.load) == (None, (2, 3))
    assert plan.how.startswith("not placed: the server is remote")
    assert plan.warnings == ()


def test_describe_is_json_data():
    plan = plan_placement("local", AUTO, AUTO, available=(0, 1))
    assert plan.describe() == {
        "server_cpus": [0],
        "load_cpus": [1],
        "how": "auto: server on CPU 0, load on CPU 1",
        "warnings": [],
    }
    assert plan_placement("in-process", AUTO, AUTO).describe()["server_cpus"] is None


# ---- shared_cpus_warning --------------------------------------------------------------------------


@pytest.mark.parametrize(("server", "load"), [(None, [1]), ([0], None), ([], [1]), ([0, 1], [2, 3])])
def test_no_warning_when_the_observed_sets_are_unknown_or_disjoint(server, load):
    assert shared_cpus_warning(server, load) is None


def test_warning_names_the_cpus_server_and_load_could_share():
    warning = shared_cpus_warning([0, 1, 2], [2, 3])
    assert warning is not None
    assert "ran on CPU 2 that the server may use too" in warning
    assert "serving.cpus and load.cpus" in warning


# ---- scenarios -----------------------------------------------------------------------------------


def test_scenario_cpus_default_to_auto(write_scenario):
    scenario = load_scenario(write_scenario(scenario_dict()))
    assert (scenario.serving.cpus, scenario.load.cpus) == (AUTO, AUTO)


def test_scenario_keeps_cpu_lists_as_written(write_scenario, monkeypatch):
    monkeypatch.setattr("harness.scenario.checks.available_cpus", lambda: FOUR)
    scenario = load_scenario(write_scenario(_with_cpus("0-1", [3, 2], target="torchserve")))
    assert (scenario.serving.cpus, scenario.load.cpus) == ("0-1", [3, 2])


@pytest.mark.parametrize(
    ("serving", "load", "key", "missing"),
    [
        ("2-3", AUTO, "serving.cpus", "2-3"),
        ("0", [1, 5], "load.cpus", "5"),
        (AUTO, "0,7-8", "load.cpus", "7-8"),
    ],
)
def test_a_cpu_this_run_may_not_use_is_refused_naming_the_key(
    write_scenario, monkeypatch, serving, load, key, missing
):
    monkeypatch.setattr("harness.scenario.checks.available_cpus", lambda: (0, 1))
    message = _error(write_scenario, _with_cpus(serving, load))
    assert f"{key}: CPU {missing} is not available to this run" in message
    assert "expected CPUs among 0-1, 'auto' or 'any'" in message


@pytest.mark.parametrize("key", ["serving.cpus", "load.cpus"])
@pytest.mark.parametrize("value", ["banana", "0-", "1;2"])
def test_a_malformed_cpu_string_is_refused_naming_the_key(write_scenario, key, value):
    section = key.split(".")[0]
    data = scenario_dict()
    data[section]["cpus"] = value
    message = _error(write_scenario, data)
    assert f"{key}: expected {EXPECTED_FORM} (got {value!r})" in message
    assert message.count(repr(value)) == 1, "the bad value is quoted once"


@pytest.mark.parametrize(
    ("value", "says"), [("3-1", "runs backwards"), ([], "at least one CPU"), ([-1], "CPU numbers")]
)
def test_other_bad_cpu_values_are_refused_naming_the_key(write_scenario, value, says):
    data = scenario_dict()
    data["load"]["cpus"] = value
    message = _error(write_scenario, data)
    assert "load.cpus: expected " in message
    assert says in message
    assert "expected expected" not in message


def test_a_bare_yaml_number_is_that_one_cpu(write_scenario, monkeypatch):
    monkeypatch.setattr("harness.scenario.checks.available_cpus", lambda: FOUR)
    scenario = load_scenario(write_scenario(_with_cpus(0, 3, target="torchserve")))
    assert parse_cpus(scenario.serving.cpus) == (0,)
    assert parse_cpus(scenario.load.cpus) == (3,)


@pytest.mark.parametrize("value", [[True], [0, "1"]])
def test_a_list_item_that_is_not_a_cpu_number_is_named(write_scenario, value):
    data = scenario_dict()
    data["serving"]["cpus"] = value
    message = _error(write_scenario, data)
    assert "serving.cpus: expected integer CPU numbers" in message
    assert message.endswith(f"not {value[-1]!r}")


def test_scenario_placement_refuses_a_cpu_list_for_an_in_process_server(write_scenario):
    path = write_scenario(_with_cpus(serving=[0]))
    with pytest.raises(UserError) as info:  # `harness validate` refuses it too
        load_scenario(path)
    message = str(info.value)
    assert message.startswith(f"{path}: serving.cpus: expected 'auto' or 'any'")
    assert "in-process server (inprocess), got [0]" in message
    assert "\n" not in message


def test_scenario_placement_refuses_a_load_cpu_list_for_an_in_process_target(write_scenario):
    path = write_scenario(_with_cpus(load="0"))
    with pytest.raises(UserError, match=r"load\.cpus: expected 'auto' or 'any'"):
        load_scenario(path)


def test_scenario_placement_refuses_a_cpu_list_for_a_remote_server():
    options = {"mode": "remote", "url": "http://127.0.0.1:9"}
    scenario = Scenario.model_validate(
        scenario_dict(serving={"target": "tfserving", "cpus": [0], "options": options})
    )
    with pytest.raises(
        UserError, match=r"^s.yaml: serving.cpus: expected 'auto' or 'any' for a remote server"
    ):
        scenario_placement(scenario, "s.yaml")


def test_scenario_placement_splits_a_local_server_and_its_locust_workers(write_scenario, monkeypatch):
    monkeypatch.setattr("harness.placement.available_cpus", lambda: FOUR)
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    data = _with_cpus(target="torchserve")
    data["load"]["workers"] = 2
    plan = scenario_placement(load_scenario(write_scenario(data)))
    assert (plan.server, plan.load) == ((0, 1), (2, 3))


def test_scenario_placement_leaves_an_in_process_target_unplaced(write_scenario):
    plan = scenario_placement(load_scenario(write_scenario(scenario_dict())))
    assert (plan.server, plan.load) == (None, None)
