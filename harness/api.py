"""What the CLI and the pytest plugin call: run a scenario, compare with the baseline, report.

Heavy frameworks are imported inside the stages that need them, so importing this module is cheap.
"""

from __future__ import annotations

import json
import secrets
import shutil
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.progress import Progress, SilentProgress
from harness.results import RunResult, VariantResult
from harness.scenario import Scenario, load_scenario

if TYPE_CHECKING:
    from collections.abc import Iterator

    from harness.compression.pipeline import PreparedVariant
    from harness.load.result import LoadResult
    from harness.models.digits import DigitsSplit


def run_scenario(
    scenario_path: str | Path,
    *,
    reports_dir: str | Path = "reports",
    baselines_dir: str | Path = "baselines",
    update_baselines: bool = False,
    progress: Progress | None = None,
) -> RunResult:
    """Run every variant of a scenario end to end and write its run folder.

    Returns the result whether or not gates pass; callers decide the exit code from `result.passed`.
    The baseline file is only written when the run completed and its gates passed (or on
    `update_baselines`), so a failed or broken run never replaces a good baseline.
    """
    progress = progress or SilentProgress()
    scenario_path = Path(scenario_path)
    timings: dict[str, float] = {}
    started = _now()

    with _timed(timings, "load_scenario"):
        scenario = load_scenario(scenario_path)
    run_id = f"{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-{scenario.name}-{secrets.token_hex(2)}"
    # absolute: servers and Locust run with their own working directories
    run_dir = (Path(reports_dir) / run_id).resolve()
    (run_dir / "inputs").mkdir(parents=True)
    shutil.copy2(scenario_path, run_dir / "inputs" / scenario_path.name)

    with progress.stage("loading reference data"), _timed(timings, "data"):
        from harness.models.digits import load_digits_split

        data = load_digits_split(seed=scenario.model.seed)

    prepared: dict[str, PreparedVariant] = {}
    for variant in scenario.all_variants():
        with (
            progress.stage(f"compress + export + evaluate {variant.name}"),
            _timed(timings, f"prepare:{variant.name}"),
        ):
            from harness.compression.pipeline import prepare_variant

            prepared[variant.name] = prepare_variant(
                scenario.model, variant, scenario_path.parent, run_dir / "variants" / variant.name, data
            )

    target_info: dict[str, Any] = {}
    variants: list[VariantResult] = []
    for variant in scenario.all_variants():
        measured, target_info = _serve_and_measure(
            scenario, variant.name, prepared[variant.name], data, run_dir, timings, progress
        )
        measured.steps = [step.model_dump() for step in variant.steps]
        variants.append(measured)

    from harness.baselines.fingerprint import environment_fingerprint

    result = RunResult(
        run_id=run_id,
        scenario_name=scenario.name,
        scenario=scenario.model_dump(mode="json"),
        started_at=started,
        finished_at="",
        environment=environment_fingerprint(),
        target=target_info,
        variants=variants,
        stage_seconds=timings,
        run_dir=str(run_dir),
    )
    with progress.stage("comparing with baseline"), _timed(timings, "gate"):
        compare(result, scenario, Path(baselines_dir), update_baselines=update_baselines)
    with progress.stage("writing report"), _timed(timings, "report"):
        result.finished_at = _now()
        write_run_outputs(result, run_dir)
    return result


def _serve_and_measure(
    scenario: Scenario,
    name: str,
    prepared: PreparedVariant,
    data: DigitsSplit,
    run_dir: Path,
    timings: dict[str, float],
    progress: Progress,
) -> tuple[VariantResult, dict[str, Any]]:
    """Start the target on the variant's artifact, check accuracy through it, then drive load."""
    from harness.metrics.accuracy import accuracy
    from harness.metrics.latency import latency_summary
    from harness.serving.registry import TARGETS

    target_cls = TARGETS.resolve(scenario.serving.target)
    variant_dir = run_dir / "variants" / name
    load = scenario.load
    with target_cls(scenario.serving, variant_dir / "serving") as target:
        with (
            progress.stage(f"starting {scenario.serving.target} for {name}"),
            _timed(timings, f"serve_start:{name}"),
        ):
            target.start(prepared.artifact)
        with (
            progress.stage(f"accuracy of {name} through {scenario.serving.target}"),
            _timed(timings, f"accuracy_served:{name}"),
        ):
            served_accuracy = accuracy(target.predict(data.x_test), data.y_test)
        label = f"load {name}: {load.users} users, {load.warmup_s:g}s warm-up + {load.measure_s:g}s measured"
        with progress.stage(label), _timed(timings, f"load:{name}"):
            load_result = _drive_load(target, scenario, data, variant_dir / "load")
        info = target.describe()

    metrics: dict[str, float] = dict(prepared.metrics)
    metrics["accuracy"] = served_accuracy
    metrics.update(latency_summary(load_result.latencies_ms))
    metrics["throughput_rps"] = load_result.throughput_rps
    metrics["error_rate"] = load_result.error_rate
    metrics["request_count"] = float(load_result.request_count)
    if load_result.client_cpu_percent is not None:
        metrics["client_cpu_percent"] = load_result.client_cpu_percent
    warnings = list(load_result.warnings)
    if load_result.ok_count == 0:
        warnings.append("no request succeeded in the measurement window")
    for warning in warnings:
        progress.note(f"{name}: {warning}")
    return (
        VariantResult(
            name=name,
            steps=[],
            metrics=metrics,
            compression=prepared.compression,
            failures=dict(load_result.failures),
            failure_examples=list(load_result.failure_examples),
            latencies_ms=list(load_result.latencies_ms),
            artifact=str(prepared.artifact.path.relative_to(run_dir)),
            warnings=warnings,
        ),
        info,
    )


def _drive_load(target: Any, scenario: Scenario, data: DigitsSplit, load_dir: Path) -> LoadResult:
    endpoint = target.endpoint
    if endpoint is None:
        from harness.load.threadpool_driver import ThreadPoolDriver

        return ThreadPoolDriver().run(target.predict, scenario.load, data.x_test)
    from harness.load.locust_driver import LocustDriver

    return LocustDriver().run(endpoint, scenario.load, data.x_test, load_dir)


def compare(result: RunResult, scenario: Scenario, baselines_dir: Path, *, update_baselines: bool) -> None:
    """Gate the result against the stored baseline for this environment, or record one.

    A first run on a new environment fingerprint records instead of comparing (limits written as
    bare numbers, like `error_rate: 0`, still apply). A baseline is written only when every verdict
    passed, or when the user asks for it with `update_baselines`.
    """
    from harness.baselines.fingerprint import fingerprint_id
    from harness.baselines.store import FileBaselineStore, variant_metrics
    from harness.gates.evaluate import evaluate

    store = FileBaselineStore(baselines_dir)
    fp = fingerprint_id(result.environment)
    current = {v.name: v.metrics for v in result.variants}
    entry = None if update_baselines else store.load(scenario.name, fp)
    baseline = variant_metrics(entry) if entry else None
    result.verdicts = evaluate(dict(scenario.gates), current, baseline)
    where = store.path_for(scenario.name)

    if entry is not None:
        result.baseline_status = "compared"
        result.baseline_message = (
            f"compared with baseline {entry.get('run_id', '?')} ({where}, environment {fp})"
        )
        missing = sorted(set(current) - set(baseline or {}))
        if missing:
            result.baseline_message += f"; no baseline yet for variant(s) {', '.join(missing)}"
        return
    if not result.passed:
        result.baseline_status = "none"
        result.baseline_message = f"no baseline for environment {fp}; not recorded because gates failed"
        return
    store.record(scenario.name, fp, result.environment, result.run_id, current)
    if update_baselines:
        result.baseline_status = "updated"
        result.baseline_message = f"baseline rewritten on request ({where}, environment {fp})"
    else:
        result.baseline_status = "recorded"
        result.baseline_message = (
            f"first run on environment {fp}: recorded as the baseline in {where}; nothing compared"
        )


def write_run_outputs(result: RunResult, run_dir: Path) -> Path:
    """results.json, index.html, junit.xml and summary.md in the run folder; returns the HTML path."""
    from harness.atomic import atomic_write_text
    from harness.report.html import render_report
    from harness.report.junit import write_junit
    from harness.report.markdown import render_markdown

    atomic_write_text(run_dir / "results.json", json.dumps(result.to_dict(), indent=1))
    write_junit(result, run_dir / "junit.xml")
    atomic_write_text(run_dir / "summary.md", render_markdown(result))
    return render_report(result, run_dir)


@contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[key] = round(time.perf_counter() - start, 3)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
