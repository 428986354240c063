"""A short scenario against real TorchServe and real Locust, end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import psutil
import pytest

from harness.api import run_scenario
from harness.placement import available_cpus
from tests.conftest import scenario_dict
from tests.e2e.helpers import make_baseline_faster, report_path, run_cli

pytestmark = [
    pytest.mark.torchserve,
    pytest.mark.skipif(
        shutil.which("java") is None,
        reason="TorchServe needs Java 17: apt-get install openjdk-17-jre-headless",
    ),
]


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if text in cmdline:
            found.append(f"{proc.info['pid']}: {cmdline[:200]}")
    return found


def test_torchserve_scenario_measures_every_variant_and_leaves_no_process(write_scenario, tmp_path):
    data = scenario_dict(
        name="ts-e2e",
        serving={"target": "torchserve", "workers": 1, "batch_size": 4, "max_batch_delay_ms": 2},
        load={"users": 2, "warmup_s": 1, "measure_s": 3, "validity": {"max_spread": 5.0}},
    )
    scenario = write_scenario(data)
    result = run_scenario(scenario, reports_dir=tmp_path / "reports", baselines_dir=tmp_path / "baselines")

    assert [v.name for v in result.variants] == ["reference", "pruned-int8"]
    for variant in result.variants:
        m = variant.metrics
        # the served artifact through TorchServe must classify exactly like the same file in-process
        assert m["accuracy"] == pytest.approx(m["accuracy_inprocess"], abs=1e-9), variant.name
        assert m["accuracy"] > 0.9
        assert m["request_count"] > 20
        assert m["error_rate"] == 0
        reported = variant.reported
        assert reported is not None
        assert reported.gated is not None
        assert reported.gated.failures.get("connection", 0) == 0
        assert m["latency_p50_ms"] <= m["latency_p95_ms"] <= m["latency_max_ms"]
        assert m["throughput_rps"] > 0
        # TorchServe's own figures (metrics API, measured windows only) sit next to the client's
        assert 0 < m["server_request_ms"] <= m["latency_mean_ms"] * 1.5, variant.name
        assert m["server_inference_ms"] > 0
        assert m["server_cpu_percent"] > 0
        assert m["server_rss_mb"] > 50
        assert reported.gated.validity.valid in (True, False)
    pruned = result.variants[1].metrics
    assert pruned["sparsity"] >= 0.45
    assert pruned["model_size_gzip_bytes"] < result.variants[0].metrics["model_size_gzip_bytes"]

    assert result.target["target"] == "torchserve"
    assert result.baseline.status in ("recorded", "not_written")  # not_written: a variant stayed INVALID
    run_dir = tmp_path / "reports" / result.run_id
    assert (run_dir / "index.html").is_file()
    assert json.loads((run_dir / "results.json").read_text())["run_id"] == result.run_id
    assert any(run_dir.glob("variants/*/serving/**/*.log")), "server logs are kept in the run folder"
    assert _processes_mentioning(str(tmp_path)) == [], "TorchServe or Locust outlived the run"
    if len(available_cpus()) >= 2:
        _assert_auto_placement_is_disjoint(result.target["cpu_placement"], run_dir)


def _assert_auto_placement_is_disjoint(placement: dict, run_dir: Path) -> None:
    """The default placement gave TorchServe's tree and Locust disjoint CPUs, as read back from
    the live processes (the frontend and its model workers, the Locust process while measuring)."""
    assert placement["how"].startswith("auto"), placement
    assert placement["warnings"] == []
    planned_server, planned_load = set(placement["server_cpus"]), set(placement["load_cpus"])
    assert planned_server, placement
    assert planned_load, placement
    assert planned_server.isdisjoint(planned_load)
    assert planned_server | planned_load == set(available_cpus())
    written = json.loads((run_dir / "results.json").read_text())
    assert written["target"]["cpu_placement"] == placement
    for variant in written["variants"]:
        for measurement in variant["measurements"]:
            assert measurement["serving"]["server_cpus"] == sorted(planned_server)
            point = measurement["points"][-1]
            gated = point["placement"]
            server, load, used = (
                set(gated["server_cpus"]),
                set(gated["load_cpus"]),
                set(gated["load_cpus_used"]),
            )
            assert (server, load) == (planned_server, planned_load), gated
            assert used, "the generator was seen while measuring"
            assert used <= load, gated
            assert not [note for note in point["notes"] if "may use too" in note], "no shared-CPU warning"


def test_torchserve_gate_fails_against_a_much_faster_baseline(write_scenario, tmp_path):
    data = scenario_dict(
        name="ts-gate",
        variants=[],
        serving={"target": "torchserve"},
        # short: the second run faces a baseline ten times faster than this machine measured
        load={"users": 2, "warmup_s": 0.5, "measure_s": 1.5, "validity": {"max_spread": 5.0}},
    )
    scenario = write_scenario(data)
    assert run_cli(scenario, tmp_path).returncode == 0
    make_baseline_faster(tmp_path / "baselines" / "ts-gate.json")

    result = run_cli(scenario, tmp_path)
    assert result.returncode == 1, result.stderr
    assert "latency_p95_ms" in result.stderr
    assert report_path(result.stdout).is_file()
    assert _processes_mentioning(str(tmp_path)) == []
