"""`harness ab` with two real TorchServe servers up at once, loaded in turn by real Locust."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT, scenario_dict

pytestmark = [
    pytest.mark.torchserve,
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("java") is None,
        reason="TorchServe needs Java 17: apt-get install openjdk-17-jre-headless",
    ),
]


def _torchserve_processes() -> list[int]:
    return [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if "org.pytorch.serve.ModelServer" in " ".join(p.info["cmdline"] or [])
    ]


def test_ab_on_torchserve_flags_a_slower_head_and_tears_both_servers_down(write_scenario, tmp_path):
    before = set(_torchserve_processes())
    base = scenario_dict(
        name="ab-ts", variants=[], serving={"target": "torchserve", "workers": 1},
        load={"users": 1, "warmup_s": 1, "measure_s": 2},
        gates={"latency_p95_ms": "+25%", "error_rate": 0},
    )  # fmt: skip
    head = json.loads(json.dumps(base))
    head["serving"]["options"] = {"inject_delay_ms": 3.0}
    base_file, head_file = write_scenario(base, "base.yaml"), write_scenario(head, "head.yaml")
    done = subprocess.run(
        [sys.executable, "-m", "harness", "ab", str(head_file), "--base-scenario", str(base_file),
         "--alpha", "0.05", "--pairs", "6", "--slot-s", "1.5", "--reports-dir", str(tmp_path / "reports")],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    report = Path(next(line for line in done.stdout.splitlines() if line.startswith("report: "))[8:])
    record = json.loads((report.parent / "ab.json").read_text())
    assert record["method"]["pairs"] == 6  # the fewest blocks that can reach alpha 0.05
    assert record["method"]["rounds"] == 2  # the default: 3 blocks on each of two server pairs
    assert record["method"]["servers"] == "both-up"
    # one Locust run took turns between the two servers every half second
    assert record["method"]["slice_s"] == 0.5
    assert record["method"]["interleaving"].startswith("both sides in turn within one Locust run")
    (variant,) = record["variants"]
    p95 = next(c for c in variant["comparisons"] if c["metric"] == "latency_p95_ms")
    assert p95["status"] == "regressed", p95["message"]
    assert p95["threshold"] == 0.25  # the scenario's own gate sets the minimum effect
    assert p95["change"] > 0.25  # 3 ms on top of a ~1-3 ms request
    assert all(s["requests"] > 100 for s in variant["slots"])
    # each side's server started once per round and served every slot of it: no restart between blocks
    assert variant["server_starts"] == {"base": 2, "head": 2}
    assert [s["round"] for s in variant["slots"]] == [0] * 6 + [1] * 6
    for side in ("base", "head"):
        serving = sorted(p.name for p in (report.parent / side / "variants" / "reference").glob("serving*"))
        assert serving == ["serving", "serving-2"], serving
        # the second round's server answered its own requests (its TorchServe log is not empty)
        logs = list((report.parent / side / "variants" / "reference" / "serving-2").rglob("*.log"))
        assert any(log.stat().st_size for log in logs), logs
    assert set(_torchserve_processes()) <= before, "a TorchServe of the A/B is still running"
