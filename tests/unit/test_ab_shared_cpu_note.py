"""`harness ab` says when both servers were placed on one CPU (they compete for it)."""

from __future__ import annotations

import pytest

from harness.ab.runner import _shared_server_cpus
from harness.scenario.loader import load_scenario
from tests.conftest import scenario_dict


def _scenario(write_scenario, target: str = "torchserve", cpus: object = "auto"):
    data = scenario_dict()
    data["serving"].update(target=target, cpus=cpus)
    return load_scenario(write_scenario(data))


def test_two_cpus_put_both_servers_on_one_and_the_note_says_so(write_scenario, monkeypatch):
    monkeypatch.setattr("harness.placement.available_cpus", lambda: (0, 1))
    note = _shared_server_cpus(_scenario(write_scenario))
    assert note is not None
    assert note.startswith("both servers were placed on CPU 0 (serving.cpus: auto)")
    assert "serving.cpus: any" in note


@pytest.mark.parametrize(
    ("cpus", "target", "available"),
    [("auto", "torchserve", (0, 1, 2, 3)), ("any", "torchserve", (0, 1)), ("auto", "inprocess", (0, 1))],
)
def test_no_note_when_the_servers_have_more_than_one_cpu_or_are_not_placed(
    write_scenario, monkeypatch, cpus, target, available
):
    monkeypatch.setattr("harness.placement.available_cpus", lambda: available)
    assert _shared_server_cpus(_scenario(write_scenario, target, cpus)) is None
