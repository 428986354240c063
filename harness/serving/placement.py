"""The scenario's CPU placement (harness.placement) for its serving target, and what was observed.

Planned once from the scenario and the CPUs this process may use; the same plan is given to
every server start and every load run, and the record keeps both the plan and the affinities
read back from the live processes."""

from __future__ import annotations

from pathlib import Path

from harness.errors import UserError
from harness.placement import ANY, AUTO, CpuPlacement, cpulist, plan_placement
from harness.scenario.schema import Scenario
from harness.serving.registry import TARGETS


def scenario_placement(scenario: Scenario, path: Path | str = "scenario") -> CpuPlacement:
    """The placement for `scenario`'s target; a CPU list set for a server that is not a local
    process tree is bad input (UserError naming the key)."""
    serving, load = scenario.serving, scenario.load
    location = TARGETS.resolve(serving.target).server_location(serving)
    if location != "local" and serving.cpus not in (AUTO, ANY):
        raise UserError(
            f"{path}: serving.cpus: expected 'auto' or 'any' for {'an' if location == 'in-process' else 'a'} "
            f"{location} server "
            f"({serving.target}), got {serving.cpus!r}"
        )
    if location == "in-process" and load.generator != "locust":
        raise UserError(
            f"{path}: load.generator: the in-process target is called from the harness's own threads, "
            f"not over HTTP; expected locust (the default) or an HTTP target, got {load.generator!r}"
        )
    if location == "in-process" and load.cpus not in (AUTO, ANY):
        raise UserError(
            f"{path}: load.cpus: expected 'auto' or 'any': the in-process target drives load from "
            f"the harness's own threads, got {load.cpus!r}"
        )
    return plan_placement(location, serving.cpus, load.cpus, load_processes=max(1, load.workers))


def shared_cpus_warning(server: list[int] | None, load: list[int] | None) -> str | None:
    """A warning when the observed affinities of the server tree and the load processes overlap."""
    if not server or not load:
        return None
    shared = set(server) & set(load)
    if not shared:
        return None
    return (
        f"the load generator ran on CPU {cpulist(shared)} that the server may use too: its CPU use "
        "slows the server it measures (see serving.cpus and load.cpus)"
    )
