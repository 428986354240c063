"""A run that fails part way says why in one line and still leaves its run folder readable."""

from __future__ import annotations

import json
import threading
import time

import psutil
import pytest

from tests.conftest import scenario_dict
from tests.e2e.helpers import run_cli


def test_unreadable_user_model_fails_with_one_line_and_keeps_a_report(write_scenario, tmp_path):
    (tmp_path / "model.pt2").write_bytes(b"this is not a torch.export archive")
    data = scenario_dict(
        name="broken-model", variants=[], model={"framework": "torch", "source": "model.pt2"}
    )
    result = run_cli(write_scenario(data), tmp_path)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("harness: error:")]
    assert len(error_lines) == 1
    assert "model.pt2" in error_lines[0]

    (run_dir,) = (tmp_path / "reports").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert "model.pt2" in results["failure"]["message"]
    assert results["outcome"] == "error"
    assert results["exit_code"] == 2
    assert results["baseline"]["status"] == "not_written"
    assert "did not complete" in (run_dir / "index.html").read_text()
    assert not (tmp_path / "baselines").exists()
    assert result.stdout.strip().endswith(str(run_dir / "index.html")), "the report path follows the error"


def test_a_server_that_dies_mid_run_is_one_line_exit_2_with_the_measured_variants_kept(
    write_scenario, tmp_path
):
    """The reference is measured on TorchServe; the variant's server is killed while under load."""
    pytest.importorskip("psutil")
    data = scenario_dict(
        name="dies-mid-run",
        serving={"target": "torchserve", "workers": 1},
        # long enough that the kill, 2 s after the variant's load begins, lands while it measures
        load={"users": 2, "warmup_s": 0.5, "measure_s": 3.5, "validity": {"max_spread": 5.0}},
    )
    scenario = write_scenario(data)
    killer = _kill_torchserve_of_variant_when_loaded(tmp_path, "pruned-int8")
    try:
        result = run_cli(scenario, tmp_path)
    finally:
        killer.join(timeout=5)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("harness: ")]
    assert len(lines) == 1, result.stderr
    assert "pruned-int8" in lines[0]
    assert "regression" not in result.stderr
    (run_dir,) = (tmp_path / "reports").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["exit_code"] == 2
    names = [v["name"] for v in results["variants"]]
    assert names == ["reference", "pruned-int8"]
    assert results["variants"][0]["measurements"], "the reference was measured and is kept"
    junit = (run_dir / "junit.xml").read_text()
    assert 'errors="0"' not in junit


def _kill_torchserve_of_variant_when_loaded(workdir, variant: str) -> threading.Thread:
    """SIGKILL the Java server of `variant` once its load has begun (its load folder exists)."""

    def watch() -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if any(workdir.glob(f"reports/*/variants/{variant}/load*")):
                time.sleep(2.0)  # into the measured windows
                for proc in psutil.process_iter(["cmdline"]):
                    cmdline = " ".join(proc.info["cmdline"] or [])
                    if "java" in cmdline and f"variants/{variant}/serving" in cmdline:
                        proc.kill()
                return
            time.sleep(0.2)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread
