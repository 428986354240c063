"""The measuring loop: prepare every variant, measure each, re-measure what is undecided, decide.

Each variant's measurements are appended to its record as they are taken, so a run that breaks
part way still reports what it measured. Reference deltas (what compression cost within this
run) are added to every measurement before it is judged. Whether to measure again and what the
measurements add up to are `harness.gates.decide`'s rule, not this module's.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.compression.pipeline import PreparedVariant, prepare_variant
from harness.data.dataset import Dataset
from harness.errors import RunError, UserError, first_line
from harness.gates.decide import decide, needs_remeasure
from harness.gates.judge import judge_measurement
from harness.metrics.quality import ExampleVectors
from harness.progress import Progress
from harness.results import Measurement, Outcome, RunFailure, RunResult, VariantResult
from harness.run.measure import measure_variant
from harness.samples import VariantSamples
from harness.scenario.bounds import REFERENCE_VARIANT
from harness.scenario.schema import Scenario
from harness.timing import timed


@dataclass
class Baseline:
    """What this run compares with: per variant, stored metrics and distributions (same settings)."""

    metrics: Mapping[str, Mapping[str, float]] | None = None
    samples: Mapping[str, VariantSamples] = field(default_factory=dict)
    examples: Mapping[str, ExampleVectors] = field(default_factory=dict)  # per-example quality vectors


class StageTracker:
    """A Progress that remembers the stage and variant in progress, and enforces the run deadline.

    When a stage raises, the run's failure names `current` and `variant`: the one line a user
    reads says where the run broke."""

    def __init__(self, inner: Progress, deadline_at: float | None, clock: Callable[[], float]) -> None:
        self.inner = inner
        self.deadline_at = deadline_at
        self.clock = clock
        self.current = "setup"
        self.variant = ""

    @contextmanager
    def stage(self, label: str) -> Iterator[None]:
        if self.deadline_at is not None and self.clock() > self.deadline_at:
            raise RunError(
                f"the run passed its deadline before {label!r}: the scenario's durations allow "
                "at most this long (see Scenario.deadline_s in the README)"
            )
        previous, self.current = self.current, label
        with self.inner.stage(label):
            yield
        self.current = previous

    def note(self, message: str) -> None:
        self.inner.note(message)


def measure_all(
    result: RunResult,
    scenario: Scenario,
    scenario_dir: Path,
    run_dir: Path,
    data: Dataset,
    baseline: Baseline,
    progress: StageTracker,
    *,
    keep_samples: bool = False,
) -> None:
    """Fill `result.variants`: prepare all, measure each once, re-measure while undecided, decide."""
    timings = result.stage_seconds
    variants = scenario.all_variants()
    prepared: dict[str, PreparedVariant] = {}
    for spec in variants:
        record = VariantResult(name=spec.name, steps=[step.model_dump(mode="json") for step in spec.steps])
        result.variants.append(record)
        progress.variant = spec.name
        with (
            progress.stage(f"compress + export + evaluate {spec.name}"),
            timed(timings, f"prepare:{spec.name}"),
        ):
            prepared[spec.name] = ready = prepare_variant(
                scenario.model, spec, scenario_dir, run_dir / "variants" / spec.name, data
            )
        record.model_metrics = dict(ready.metrics)
        record.compression = ready.compression
        record.details = {"base_model": ready.base, "stage_seconds": ready.stage_seconds, **ready.details}
        record.artifact = str(ready.artifact.path.relative_to(run_dir))
        record.warnings = list(ready.warnings)

    reference_outputs: list[np.ndarray] = []  # the reference's first served outputs: fidelity's yardstick

    def measure(record: VariantResult) -> None:
        progress.variant = record.name
        number = len(record.measurements) + 1
        progress.current = f"measurement {number} of {record.name}"  # its own stages refine this
        m = measure_variant(
            scenario, record.name, prepared[record.name], data, run_dir, timings, progress,
            number=number, keep_samples=keep_samples,
            reference_outputs=reference_outputs[0] if reference_outputs else None,
            scenario_dir=scenario_dir,
        )  # fmt: skip
        record.measurements.append(m)
        if record.name == REFERENCE_VARIANT and number == 1:
            result.target = m.serving
            if m.outputs_file:
                reference_outputs.append(np.load(run_dir / m.outputs_file))
        if not m.served_anything:
            record.error = _dead_measurement(m)

    for record in result.variants:
        measure(record)
    labels = data.test.labels
    examples_fingerprint = data.fingerprint()
    for record in result.variants:
        for m in record.measurements:
            _judge(record, m, scenario, baseline, labels, result, examples_fingerprint)
    for record in result.variants:
        while (
            not record.error
            and len(record.measurements) <= scenario.gate_policy.confirm_runs
            and needs_remeasure(record.measurements)
        ):
            measure(record)
            _judge(record, record.measurements[-1], scenario, baseline, labels, result, examples_fingerprint)
        settle(record)
    progress.variant = ""


def settle(record: VariantResult) -> None:
    """The variant's final verdicts and outcome, from all of its measurements."""
    record.verdicts, outcome = decide(record.measurements)
    record.outcome = Outcome.ERROR if record.error else outcome


def _judge(
    record: VariantResult,
    m: Measurement,
    scenario: Scenario,
    baseline: Baseline,
    labels: np.ndarray | None,
    result: RunResult,
    examples_fingerprint: str,
) -> None:
    _add_reference_deltas(m, result)
    if record.error:
        return
    stored = None if baseline.metrics is None else baseline.metrics.get(record.name)
    m.verdicts = judge_measurement(
        record.name,
        m,
        dict(scenario.gates),
        scenario.gate_policy,
        stored,
        baseline.samples.get(record.name) if stored is not None else None,
        labels,
        examples_fingerprint=examples_fingerprint,
        baseline_examples=baseline.examples.get(record.name) if stored is not None else None,
    )


def _add_reference_deltas(m: Measurement, result: RunResult) -> None:
    """accuracy_drop_vs_reference: the reference's served accuracy minus this measurement's."""
    reference = next((v for v in result.variants if v.name == REFERENCE_VARIANT), None)
    reported = reference.reported if reference is not None else None
    if reported is None or reported.accuracy is None or m.accuracy is None:
        return
    m.metrics["accuracy_drop_vs_reference"] = reported.accuracy - m.accuracy


def _dead_measurement(m: Measurement) -> str:
    """Why nothing could be measured: no request succeeded (the server or the model is broken)."""
    gated = m.gated
    failures = ", ".join(f"{k} x{n}" for k, n in sorted((gated.failures if gated else {}).items()) if n)
    example = gated.failure_examples[0] if gated is not None and gated.failure_examples else ""
    detail = f" ({failures}{'; e.g. ' + example if example else ''})" if failures else ""
    return f"no request succeeded in measurement {m.number}{detail}; nothing could be measured"


def tracked(progress: Progress, deadline_s: float | None, clock: Callable[[], float]) -> StageTracker:
    return StageTracker(progress, None if deadline_s is None else clock() + deadline_s, clock)


def failure_of(stages: StageTracker, exc: BaseException, run_dir: Path) -> RunFailure:
    """Why a run (or an A/B) broke: one line naming the stage and variant in progress, plus, for
    the report, the log to read (relative to `run_dir` when inside it) and its tail."""
    interrupted = isinstance(exc, KeyboardInterrupt)
    if interrupted:
        message = f"interrupted ({first_line(exc) or 'KeyboardInterrupt'}); servers were stopped"
    elif isinstance(exc, UserError | RunError):
        message = first_line(exc)
    else:
        message = f"internal error: {type(exc).__name__}: {first_line(exc)}"
    log = getattr(exc, "log", "") or ""
    tail = getattr(exc, "log_tail", "") or ""
    if not tail and not interrupted and not isinstance(exc, UserError | RunError):
        tail = "".join(traceback.format_exception(exc))  # an internal error: the traceback is the detail
    if log:
        path = Path(log)
        log = str(path.relative_to(run_dir)) if path.is_relative_to(run_dir) else str(path)
    return RunFailure(
        stage=stages.current,
        message=message,
        variant=stages.variant,
        log=log,
        log_tail=tail,
        interrupted=interrupted,
    )
