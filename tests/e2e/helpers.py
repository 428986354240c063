"""Shared steps of the end-to-end tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from harness.baselines import histogram
from tests.conftest import ROOT


def run_cli(scenario: Path, workdir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`harness run` in a subprocess, with reports and baselines kept under `workdir`."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "run",
            str(scenario),
            "--reports-dir",
            str(workdir / "reports"),
            "--baselines-dir",
            str(workdir / "baselines"),
            *extra,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
    )


def make_baseline_faster(baseline_file: Path, factor: float = 10.0) -> None:
    """Pretend the stored baseline was `factor` times faster than this machine really is."""
    data = json.loads(baseline_file.read_text())
    for env in data["environments"].values():
        for variant in env["variants"].values():
            metrics = variant["metrics"]
            for name in list(metrics):
                if name.startswith("latency_") and name.endswith("_ms"):
                    metrics[name] /= factor
            metrics["throughput_rps"] *= factor
            if variant.get("latency_histogram"):  # the rank test reads the stored distribution
                values, counts = histogram.decode(variant["latency_histogram"])
                variant["latency_histogram"] = histogram.encode(histogram.expand(values / factor, counts))
            for name, windows in variant.get("latency_windows", {}).items():  # the window test's input
                variant["latency_windows"][name] = [w / factor for w in windows]
    baseline_file.write_text(json.dumps(data))


def report_path(stdout: str) -> Path:
    line = next(line for line in stdout.splitlines() if line.startswith("report: "))
    return Path(line.removeprefix("report: "))
