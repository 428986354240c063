"""What the CLI and the pytest plugin call: run a scenario, compare with the baseline, report.

Heavy frameworks are imported inside the stages that need them, so importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import UserError
from harness.progress import Progress, SilentProgress
from harness.results import RunResult, VariantResult, Verdict
from harness.scenario import Scenario, load_scenario
from harness.scenario.schema import REFERENCE_VARIANT

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import numpy as np

    from harness.compression.pipeline import PreparedVariant


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
    `update_baselines`), so a failed or broken run never replaces a good baseline. A run that
    fails part way still writes what it measured (results.json and the report) before re-raising.
    """
    progress = progress or SilentProgress()
    scenario_path = Path(scenario_path)
    timings: dict[str, float] = {}
    started = _now()

    with _timed(timings, "load_scenario"):
        scenario = load_scenario(scenario_path)
    reason = target_unavailable_reason(scenario)
    if reason:
        raise UserError(f"{scenario_path}: serving.target: {reason}")
    run_id = f"{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-{scenario.name}-{secrets.token_hex(2)}"
    # absolute: servers and Locust run with their own working directories
    run_dir = (Path(reports_dir) / run_id).resolve()
    (run_dir / "inputs").mkdir(parents=True)
    shutil.copy2(scenario_path, run_dir / "inputs" / scenario_path.name)

    from harness.baselines.fingerprint import environment_fingerprint

    result = RunResult(
        run_id=run_id,
        scenario_name=scenario.name,
        scenario=scenario.model_dump(mode="json"),
        started_at=started,
        finished_at="",
        environment=environment_fingerprint(),
        target={"target": scenario.serving.target},
        variants=[],
        stage_seconds=timings,
        run_dir=str(run_dir),
    )
    try:
        remeasure = _measure_variants(result, scenario, scenario_path, run_dir, progress)
        with progress.stage("comparing with baseline"), _timed(timings, "gate"):
            record = compare(
                result,
                scenario,
                Path(baselines_dir),
                update_baselines=update_baselines,
                remeasure=remeasure,
            )
    except BaseException as exc:  # KeyboardInterrupt too: keep what was measured, then stop
        result.error = str(exc) or type(exc).__name__
        result.baseline_message = "the run did not complete; the baseline was not touched"
        result.finished_at = _now()
        # the original error is what the user must see; a failing partial write must not replace it
        with contextlib.suppress(Exception):
            write_run_outputs(result, run_dir)
        raise

    with progress.stage("writing report"), _timed(timings, "report"):
        result.finished_at = _now()
        # results first, then the baseline that names this run, then the human-facing files
        write_run_outputs(result, run_dir, before_report=record)
    return result


def target_unavailable_reason(scenario: Scenario) -> str | None:
    """One line saying why the scenario's serving target cannot run here (e.g. no TF Serving
    binary), or None. Lets `harness run` stop before any work and pytest skip the scenario."""
    from harness.serving.registry import TARGETS

    check = getattr(TARGETS.resolve(scenario.serving.target), "unavailable_reason", None)
    return check(scenario.serving) if check is not None else None


def _measure_variants(
    result: RunResult, scenario: Scenario, scenario_path: Path, run_dir: Path, progress: Progress
) -> Callable[[str, int], VariantResult]:
    """Prepare every variant (compress, export, evaluate), then serve and load each in turn.

    Returns how to measure one variant again (for confirming a failed gate)."""
    timings = result.stage_seconds
    with progress.stage("loading reference data"), _timed(timings, "data"):
        from harness.models.digits import load_digits_split

        data = load_digits_split(seed=scenario.model.seed)

    from harness.compression.pipeline import prepare_variant

    prepared: dict[str, PreparedVariant] = {}
    for variant in scenario.all_variants():
        label = f"compress + export + evaluate {variant.name}"
        with progress.stage(label), _timed(timings, f"prepare:{variant.name}"):
            prepared[variant.name] = prepare_variant(
                scenario.model, variant, scenario_path.parent, run_dir / "variants" / variant.name, data
            )

    from harness.measurement import measure_variant

    steps = {v.name: [step.model_dump() for step in v.steps] for v in scenario.all_variants()}

    def measure(name: str, attempt: int) -> VariantResult:
        measured = measure_variant(
            scenario, name, prepared[name], data, run_dir, timings, progress, attempt=attempt
        )
        measured.steps = steps[name]
        return measured

    for variant in scenario.all_variants():
        measured = measure(variant.name, 0)
        result.variants.append(measured)
        if variant.name == REFERENCE_VARIANT:
            result.target = measured.serving
    add_reference_deltas(result.variants)
    return measure


def add_reference_deltas(variants: list[VariantResult]) -> None:
    """accuracy_drop_vs_reference for every variant: what compression cost within this run."""
    reference = next((v for v in variants if v.name == REFERENCE_VARIANT), None)
    if reference is None or "accuracy" not in reference.metrics:
        return
    for v in variants:
        if "accuracy" in v.metrics:
            v.metrics["accuracy_drop_vs_reference"] = reference.metrics["accuracy"] - v.metrics["accuracy"]


def compare(
    result: RunResult,
    scenario: Scenario,
    baselines_dir: Path,
    *,
    update_baselines: bool,
    remeasure: Callable[[str, int], VariantResult] | None = None,
) -> Callable[[], object] | None:
    """Gate the result against the stored baseline for this environment and configuration.

    A first run on a new environment fingerprint records instead of comparing (limits written as
    bare numbers, like `error_rate: 0`, still apply). A variant is only compared with a baseline
    measured under the same settings (model, steps, serving, load), and an INVALID measurement is
    never compared at all: it fails with its reasons. Latency and accuracy gates use the stored
    distributions (rank test, McNemar) when both sides have them. A variant that fails is measured
    again (`gate_policy.confirm_runs`) and fails only if the failure holds. A baseline is written
    only when every verdict passed, or when the user asks with `update_baselines`; the write is
    returned as a callable for the caller to run once results.json is safely on disk.
    """
    from harness.baselines.fingerprint import fingerprint_id
    from harness.baselines.store import FileBaselineStore, variant_distributions, variant_metrics
    from harness.gates.evaluate import failed_variants, merge_confirmation
    from harness.gates.judge import judge_variants

    store = FileBaselineStore(baselines_dir)
    fp = fingerprint_id(result.environment)
    configs = variant_config_ids(scenario)
    entry = None if update_baselines else store.load(scenario.name, fp)
    baseline = variant_metrics(entry, configs) if entry else None
    baseline_dist = variant_distributions(entry, configs) if entry else None
    labels = _test_labels(scenario)

    first = judge_variants(result.variants, scenario, baseline, baseline_dist, labels)
    confirmations: list[list[Verdict]] = []
    for attempt in range(1, scenario.gate_policy.confirm_runs + 1):
        failing = failed_variants(merge_confirmation(first, *confirmations))
        if not failing or remeasure is None:
            break
        again = [_remeasured(result, name, attempt, remeasure) for name in sorted(failing)]
        add_reference_deltas(result.variants)
        confirmations.append(judge_variants(again, scenario, baseline, baseline_dist, labels))
        _attach_confirmation(result, confirmations[-1])
    result.verdicts = merge_confirmation(first, *confirmations)
    current = {v.name: v.metrics for v in result.variants}
    where = store.path_for(scenario.name)

    if entry is not None:
        result.baseline_status = "compared"
        result.baseline_message = (
            f"compared with baseline {entry.get('run_id', '?')} ({where}, environment {fp})"
        )
        missing = sorted(set(current) - set(baseline or {}))
        if missing:
            result.baseline_message += (
                f"; variant(s) {', '.join(missing)} have no baseline under these settings (new variant, or "
                "model, steps, serving or load changed): run with --update-baselines to record them"
            )
        return None
    if not result.passed:
        result.baseline_status = "none"
        why = "" if update_baselines else f"no baseline for environment {fp}; "
        result.baseline_message = f"{why}not recorded because gates failed"
        return None
    if update_baselines:
        result.baseline_status = "updated"
        result.baseline_message = f"baseline rewritten on request ({where}, environment {fp})"
    else:
        result.baseline_status = "recorded"
        result.baseline_message = (
            f"first run on environment {fp}: recorded as the baseline in {where}; nothing compared"
        )
    distributions = {
        v.name: {
            "latencies_ms": v.latencies_ms,
            "window_latencies": v.window_latencies,
            "predictions": v.predictions,
            "labels": labels,
        }
        for v in result.variants
    }
    return lambda: store.record(
        scenario.name,
        fp,
        result.environment,
        result.run_id,
        current,
        configs=configs,
        distributions=distributions,
    )


def _remeasured(
    result: RunResult, name: str, attempt: int, remeasure: Callable[[str, int], VariantResult]
) -> VariantResult:
    """Measure `name` again and make that the variant's result; the earlier one stays in details."""
    index = next(i for i, v in enumerate(result.variants) if v.name == name)
    earlier = result.variants[index]
    again = remeasure(name, attempt)
    again.details["superseded_measurement"] = earlier.details.get("superseded_measurement") or {
        "metrics": dict(earlier.metrics),
        "validity": earlier.details.get("validity"),
    }
    again.details["confirmations"] = list(earlier.details.get("confirmations", []))
    result.variants[index] = again
    return again


def _attach_confirmation(result: RunResult, verdicts: list[Verdict]) -> None:
    from dataclasses import asdict

    for name in {v.variant for v in verdicts}:
        mine = [v for v in verdicts if v.variant == name]
        variant = next(v for v in result.variants if v.name == name)
        variant.details.setdefault("confirmations", []).append(
            {
                "metrics": dict(variant.metrics),
                "verdicts": [asdict(v) for v in mine],
                "passed": all(v.passed for v in mine),
            }
        )


def _test_labels(scenario: Scenario) -> np.ndarray:
    from harness.models.digits import load_digits_split

    return load_digits_split(seed=scenario.model.seed).y_test


def variant_config_ids(scenario: Scenario) -> dict[str, str]:
    """Per variant, an id of every setting its measurements depend on."""
    from harness.baselines.fingerprint import config_id

    shared = scenario.model_dump(
        mode="json", include={"model", "serving", "load"}, exclude={"serving": {"startup_timeout_s"}}
    )
    return {
        v.name: config_id({**shared, "steps": [step.model_dump(mode="json") for step in v.steps]})
        for v in scenario.all_variants()
    }


def write_run_outputs(
    result: RunResult, run_dir: Path, *, before_report: Callable[[], object] | None = None
) -> Path:
    """results.json, then `before_report` (the baseline write), then index.html, junit.xml and summary.md."""
    from harness.atomic import atomic_write_json, atomic_write_text
    from harness.report.html import render_report
    from harness.report.junit import write_junit
    from harness.report.markdown import render_markdown

    atomic_write_json(run_dir / "results.json", result.to_dict(), indent=1)
    if before_report is not None:
        before_report()
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
