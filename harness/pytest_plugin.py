"""pytest plugin: `pytest scenarios/` runs each scenario file as a test that fails on a gate failure.

Registered through the `pytest11` entry point, so it loads in every pytest session of the venv:
it must stay light (the scenario is only imported and run when its test item runs).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.errors import HarnessError
from harness.signals import interrupts_unwind

SCENARIO_KEYS = {"name", "model", "serving"}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "harness scenarios")
    group.addoption(
        "--update-baselines",
        action="store_true",
        default=False,
        help="rewrite stored baselines with this run",
    )
    group.addoption("--harness-reports-dir", default=None, help="run folders (default: <rootdir>/reports)")
    group.addoption(
        "--harness-baselines-dir", default=None, help="baseline store (default: <rootdir>/baselines)"
    )
    group.addoption(
        "--ab-base",
        default=None,
        metavar="REF",
        help="instead of comparing with stored baselines, compare each scenario with itself at this "
        "git ref, interleaved on this machine (as `harness ab --base REF`)",
    )
    group.addoption(
        "--ab-slot-s",
        type=float,
        default=None,
        help="with --ab-base: measured seconds of each side in each block (as `harness ab --slot-s`)",
    )
    group.addoption(
        "--ab-warmup-s",
        type=float,
        default=None,
        help="with --ab-base: warm-up seconds before each slot (as `harness ab --warmup-s`)",
    )
    group.addoption(
        "--ab-rounds",
        type=int,
        default=None,
        help="with --ab-base: fresh starts of both servers the blocks are split over "
        "(as `harness ab --rounds`)",
    )


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix in {".yaml", ".yml"} and _looks_like_scenario(file_path):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


def _looks_like_scenario(path: Path) -> bool:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and data.keys() >= SCENARIO_KEYS


class ScenarioFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        yield ScenarioItem.from_parent(self, name=self.path.stem)


class ScenarioFailed(Exception):
    """A scenario that did not pass: its outcome (regression, error, inconclusive), the one-line
    causes and the report path. pytest has no "inconclusive", so that fails too, saying so."""


class ScenarioItem(pytest.Item):
    def runtest(self) -> None:
        # local: this plugin loads in every pytest session of the venv, the run machinery only here
        from harness.api import run_scenario, target_unavailable_reason
        from harness.scenario.loader import load_scenario

        # a target that cannot run on this machine (no TF Serving binary) skips with its reason
        reason = target_unavailable_reason(load_scenario(self.path))
        if reason:
            pytest.skip(reason)
        config = self.config
        root = config.rootpath
        reports = config.getoption("--harness-reports-dir") or root / "reports"
        baselines = config.getoption("--harness-baselines-dir") or root / "baselines"
        ab_base = config.getoption("--ab-base")
        if ab_base:
            self._run_ab(ab_base, Path(reports))
            return
        # pytest leaves SIGTERM fatal: a cancelled CI job would skip teardown and leave the servers
        # (own sessions) running. Only while the scenario runs; the old handlers come back after.
        with interrupts_unwind():
            result = run_scenario(
                self.path,
                reports_dir=reports,
                baselines_dir=baselines,
                update_baselines=config.getoption("--update-baselines"),
            )
        report = Path(result.run_dir) / "index.html"
        self.user_properties.append(("report", str(report)))
        self.user_properties.append(("outcome", result.outcome.value))
        if not result.passed:
            head = f"outcome: {result.outcome.value} (harness run would exit {result.outcome.exit_code})"
            raise ScenarioFailed("\n".join([head, *result.causes(), f"report: {report}"]))

    def _run_ab(self, base: str, reports: Path) -> None:
        from harness.ab.runner import AbOptions, run_ab  # local: the run machinery only when it runs

        with interrupts_unwind():
            flags = {"slot_s": "--ab-slot-s", "warmup_s": "--ab-warmup-s", "rounds": "--ab-rounds"}
            given = {field: self.config.getoption(flag) for field, flag in flags.items()}
            options = AbOptions(base_ref=base, reports_dir=reports)
            options = replace(options, **{k: v for k, v in given.items() if v is not None})
            result = run_ab(self.path, options)
        report = Path(result.run_dir) / "index.html"
        self.user_properties.append(("report", str(report)))
        self.user_properties.append(("outcome", result.outcome.value))
        if result.exit_code != 0:
            head = f"A/B against {base}: {result.outcome.value} (harness ab would exit {result.exit_code})"
            raise ScenarioFailed("\n".join([head, *result.causes(), f"report: {report}"]))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str | Any:
        if isinstance(excinfo.value, ScenarioFailed | HarnessError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"scenario {self.name}"
