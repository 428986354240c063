"""Ctrl-C or a CI job cancellation in the middle of a run leaves no server or load process behind."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, scenario_dict
from tests.e2e.test_torchserve_scenario import _processes_mentioning

pytestmark = [
    pytest.mark.torchserve,
    pytest.mark.skipif(
        shutil.which("java") is None, reason="TorchServe needs Java 17: apt-get install openjdk-17-jre-headless"
    ),
]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_load_tears_down_torchserve_and_locust(write_scenario, tmp_path, sig):
    data = scenario_dict(
        name="interrupted", variants=[], serving={"target": "torchserve"}, load={"users": 1, "measure_s": 120}
    )
    scenario = write_scenario(data)
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", str(scenario),
         "--reports-dir", str(tmp_path / "reports"), "--baselines-dir", str(tmp_path / "baselines")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob("reports/*/variants/reference/load/locust.log")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run never reached the load stage"
            time.sleep(0.2)
        time.sleep(1.0)  # let Locust's users start sending
        assert _processes_mentioning(str(tmp_path)), "TorchServe should be running during the load stage"

        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr
    assert "Traceback" not in stderr
    assert _processes_mentioning(str(tmp_path)) == [], "a server or load process outlived the interrupted run"
    assert not (tmp_path / "baselines").exists(), "an interrupted run must not record a baseline"
