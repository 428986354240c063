"""Ctrl-C or a CI job cancellation in the middle of a run leaves no server or load process behind."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, scenario_dict
from tests.e2e.test_torchserve_scenario import _processes_mentioning

pytestmark = [
    pytest.mark.torchserve,
    pytest.mark.skipif(
        shutil.which("java") is None,
        reason="TorchServe needs Java 17: apt-get install openjdk-17-jre-headless",
    ),
]


def _long_torchserve_scenario(name: str) -> dict:
    return scenario_dict(
        name=name, variants=[], serving={"target": "torchserve"}, load={"users": 1, "measure_s": 120}
    )


def _signal_during_load(
    argv: list[str], workdir: Path, sig: signal.Signals, cwd: Path, *, repeat_every_s: float | None = None
) -> tuple[int, str]:
    """Run `argv`, send `sig` once Locust is loading TorchServe; return the exit code and the output.

    With `repeat_every_s`, keep sending `sig` at that interval until the process has exited, so
    that further signals land in every phase of the shutdown, its last moments included.
    """
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(workdir.glob("reports/*/variants/reference/load/locust.log")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run never reached the load stage"
            time.sleep(0.2)
        time.sleep(1.0)  # let Locust's users start sending
        assert _processes_mentioning(str(workdir)), "TorchServe should be running during the load stage"

        proc.send_signal(sig)
        if repeat_every_s is not None:
            repeat_until = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < repeat_until:
                time.sleep(repeat_every_s)
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, output


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_load_tears_down_torchserve_and_locust(write_scenario, tmp_path, sig):
    scenario = write_scenario(_long_torchserve_scenario("cli-interrupted"))
    argv = [sys.executable, "-m", "harness", "run", str(scenario),
            "--reports-dir", str(tmp_path / "reports"),
            "--baselines-dir", str(tmp_path / "baselines")]  # fmt: skip

    code, output = _signal_during_load(argv, tmp_path, sig, cwd=ROOT)

    assert code == 130, output
    assert "harness: interrupted" in output
    assert "Traceback" not in output
    assert _processes_mentioning(str(tmp_path)) == [], "a server or load process outlived the interrupted run"
    assert not (tmp_path / "baselines").exists(), "an interrupted run must not record a baseline"
    # the run folder says the same as the exit code
    (run_dir,) = (tmp_path / "reports").iterdir()
    assert f"report: {run_dir / 'index.html'}" in output
    results = json.loads((run_dir / "results.json").read_text())
    assert results["outcome"] == "interrupted"
    assert results["exit_code"] == 130
    assert results["failure"]["interrupted"] is True
    assert results["variants"], "what was measured before the signal is kept"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_further_signals_during_shutdown_are_absorbed_and_the_exit_code_stays_130(
    write_scenario, tmp_path, sig
):
    scenario = write_scenario(_long_torchserve_scenario("cli-interrupted-twice"))
    argv = [sys.executable, "-m", "harness", "run", str(scenario),
            "--reports-dir", str(tmp_path / "reports"),
            "--baselines-dir", str(tmp_path / "baselines")]  # fmt: skip

    code, output = _signal_during_load(argv, tmp_path, sig, cwd=ROOT, repeat_every_s=0.05)

    assert code == 130, output
    assert "harness: interrupted" in output
    assert "Traceback" not in output
    assert _processes_mentioning(str(tmp_path)) == [], "a server or load process outlived the interrupted run"


def test_sigterm_to_pytest_during_load_tears_down_torchserve_and_locust(write_scenario, tmp_path):
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    write_scenario(_long_torchserve_scenario("pytest-interrupted"), name="scenarios/interrupted.yaml")
    argv = [sys.executable, "-m", "pytest", str(scenarios), "-p", "no:cacheprovider", "-q",
            "--harness-reports-dir", str(tmp_path / "reports"),
            "--harness-baselines-dir", str(tmp_path / "baselines")]  # fmt: skip

    code, output = _signal_during_load(argv, tmp_path, signal.SIGTERM, cwd=tmp_path)

    assert code == pytest.ExitCode.INTERRUPTED, output
    assert "RunInterrupted" in output, "pytest names the KeyboardInterrupt the run raised"
    assert "received SIGTERM" in output
    assert _processes_mentioning(str(tmp_path)) == [], "a server or load process outlived pytest"
    assert not (tmp_path / "baselines").exists(), "an interrupted run must not record a baseline"
