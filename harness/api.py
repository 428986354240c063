"""What the CLI and the pytest plugin call: run a scenario, or re-render a run folder's reports.

Heavy frameworks are imported inside the stages that need them, so importing this module is cheap.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from harness.baselines.fingerprint import environment_fingerprint
from harness.compression.pipeline import load_base_model
from harness.data.loaders import load_data
from harness.errors import RunInterrupted, UserError, first_line
from harness.history.acks import load_acks
from harness.history.options import HistoryOptions
from harness.history.recording import record_run
from harness.history.store import read as read_history
from harness.history.testbed import current_commit
from harness.progress import Progress, SilentProgress
from harness.report import write_reports
from harness.results import RunFailure, RunResult
from harness.run.baseline import read_baseline, settle_baseline
from harness.run.variants import failure_of, measure_all, tracked
from harness.scenario.applicability import check_loaded_data
from harness.scenario.loader import load_scenario
from harness.scenario.schema import Scenario
from harness.serving.placement import scenario_placement
from harness.serving.registry import TARGETS
from harness.timing import timed

TEST_LABELS_FILE = "test_labels.npy"


def run_scenario(
    scenario_path: str | Path,
    *,
    reports_dir: str | Path = "reports",
    baselines_dir: str | Path = "baselines",
    update_baselines: bool = False,
    keep_samples: bool = False,
    progress: Progress | None = None,
    history: HistoryOptions | None = None,
) -> RunResult:
    """Run every variant of a scenario end to end and write its run folder; return the record.

    Bad input found before any work (scenario, unavailable target, corrupt baseline) raises
    UserError. From then on nothing raises except an interrupt: a broken run returns its record
    with `failure` set (outcome ERROR), after writing results.json and the reports with what it
    measured. The caller reads `result.outcome` for the exit code. An interrupt (Ctrl-C, SIGTERM)
    writes the same files (outcome "interrupted"), then raises RunInterrupted, a KeyboardInterrupt
    naming the report, so callers unwind as from Ctrl-C and the CLI exits 130.
    With `history`, a run that completed is appended to the history store and its report shows
    each gated metric's trend; the store and the acknowledgements are read first, so a corrupt one
    is bad input before any work.
    """
    scenario_path = Path(scenario_path)
    timings: dict[str, float] = {}
    started = _now()
    with timed(timings, "load_scenario"):
        scenario = load_scenario(scenario_path)
    reason = target_unavailable_reason(scenario)
    if reason:
        raise UserError(f"{scenario_path}: serving.target: {reason}")
    placement = scenario_placement(scenario, scenario_path)
    environment = environment_fingerprint()
    # before anything is written: bad data is bad input (exit 2), and its hash keys the baseline
    with timed(timings, "data"):
        data = load_data(scenario, scenario_path.parent, scenario_file=scenario_path)
    check_loaded_data(scenario, data, scenario_path)
    if history is not None:  # both read before any work: a corrupt one is bad input (exit 2)
        read_history(history.directory)
        load_acks(history.acks)
    plan = read_baseline(
        scenario,
        str(baselines_dir),
        environment,
        update=update_baselines,
        data_fingerprint=data.fingerprint(),
    )

    run_id = f"{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-{scenario.name}-{secrets.token_hex(2)}"
    # absolute: servers and Locust run with their own working directories
    run_dir = (Path(reports_dir) / run_id).resolve()
    (run_dir / "inputs").mkdir(parents=True)
    shutil.copy2(scenario_path, run_dir / "inputs" / scenario_path.name)
    if data.test.labels is not None:
        # in the order the served outputs (variants/*/outputs.npy) are in, so anyone can rescore them
        np.save(run_dir / "inputs" / TEST_LABELS_FILE, data.test.labels)
    result = RunResult(
        run_id=run_id,
        scenario_name=scenario.name,
        scenario=scenario.model_dump(mode="json"),
        started_at=started,
        environment=environment,
        data=data.describe(),
        target={"target": scenario.serving.target, "cpu_placement": placement.describe()},
        stage_seconds=timings,
        run_dir=str(run_dir),
    )
    progress = progress or SilentProgress()
    stages = tracked(progress, scenario.deadline_s(), time.monotonic)
    interrupted: BaseException | None = None
    try:
        # first on its own, so a model that does not load or fit the data is named as this stage;
        # the pipeline reuses the load for every variant
        with stages.stage("loading the model"), timed(timings, "base_model"):
            load_base_model(scenario.model, scenario_path.parent, data)
        measure_all(
            result, scenario, scenario_path.parent, run_dir, data, plan.compare_with, stages,
            keep_samples=keep_samples,
        )  # fmt: skip
        with stages.stage("comparing with baseline"), timed(timings, "baseline"):
            settle_baseline(result, plan, data.test.labels)
    except KeyboardInterrupt as exc:
        interrupted = exc
        result.failure = failure_of(stages, exc, run_dir)
    except Exception as exc:
        if os.environ.get("HARNESS_DEBUG"):
            raise
        result.failure = failure_of(stages, exc, run_dir)
    if result.failure is not None and result.baseline.status in ("none", "not_written"):
        result.baseline.status = "not_written"
        failure = result.failure
        result.baseline.message = (
            f"the baseline was not touched: the run did not complete ({failure.stage}: {failure.message})"
        )
    # not timed into stage_seconds: results.json is written inside this stage and must be final;
    # and past the deadline too, since a run that broke still leaves its record
    with progress.stage("writing report"):
        result.finished_at = _now()
        if history is not None and result.failure is None:
            _append_history(result, history, scenario_path.parent)
        result.write(run_dir)
        write_reports(result, run_dir)
    if interrupted is not None:
        raise RunInterrupted(str(interrupted), run_dir / "index.html") from interrupted
    return result


def _append_history(result: RunResult, history: HistoryOptions, scenario_dir: Path) -> None:
    """Append the run to the store and attach its trends; a store that cannot be written breaks the
    run (exit 2): CI asked for the record, and a silently missing night hides a change point."""
    try:
        result.trends = record_run(
            history.directory,
            result,
            testbed_label=history.testbed,
            acks_path=history.acks,
            commit=current_commit(scenario_dir),
        )
    except (UserError, OSError) as exc:
        result.failure = RunFailure(stage="appending to the history", message=first_line(exc))


def render_run(run_dir: str | Path) -> Path:
    """Re-render index.html, junit.xml and summary.md of a run folder from its results.json."""
    result = RunResult.load(run_dir)
    return write_reports(result, Path(run_dir))


def target_unavailable_reason(scenario: Scenario) -> str | None:
    """One line saying why the scenario's serving target cannot run here (e.g. no TF Serving
    binary), or None. Lets `harness run` stop before any work and pytest skip the scenario."""
    check = getattr(TARGETS.resolve(scenario.serving.target), "unavailable_reason", None)
    return check(scenario.serving) if check is not None else None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
