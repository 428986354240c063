"""`harness ab`: measure a scenario at the base ref and in the working tree, interleaved, and decide.

Order of work: resolve both sides (a git worktree of the base, or two files), load and check
each side's scenario and data (bad input is exit 2 before anything is measured), refuse a block
count that cannot reach alpha, then per variant: prepare both artifacts, serve both, evaluate
each side's served outputs once, optionally run A/A blocks (base against a second base server)
for the noise floor, run the A/B blocks, and compare. Like `harness run`, a broken run still
writes its record and reports, servers are always torn down, and an interrupt exits 130.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from harness.ab.blocks import (
    ServedSide,
    ServerPool,
    SlotTiming,
    choose_mode,
    interleave_refusal,
    run_blocks,
    run_interleaved,
    tree_rss_bytes,
)
from harness.ab.compare import SideFigures, compare_load, compare_model, load_metrics
from harness.ab.decide import noise_floor_of
from harness.ab.record import (
    AbMethod,
    AbResult,
    InconclusivePolicy,
    NoiseFloorSource,
    ServerMode,
    Side,
    SideName,
    Slot,
    VariantComparison,
)
from harness.ab.schedule import (
    DEFAULT_MIN_EFFECT,
    DEFAULT_ROUNDS,
    DEFAULT_SLICE_S,
    DEFAULT_SLOT_S,
    DEFAULT_WARMUP_S,
    best_reachable_alpha,
    check_pairs,
    check_rounds,
    order_text,
    round_sizes,
)
from harness.ab.sides import SideSource, file_sides, git_sides
from harness.api import target_unavailable_reason
from harness.baselines.fingerprint import environment_fingerprint
from harness.compression.pipeline import prepare_variant
from harness.data.dataset import Dataset
from harness.data.loaders import load_data
from harness.errors import RunInterrupted, UserError, first_line
from harness.history import changepoints, store
from harness.history.record import HistoryRecord
from harness.history.testbed import testbed_id
from harness.load.interleave import BlockSlices
from harness.metrics.quality import evaluate_outputs
from harness.progress import Progress, SilentProgress
from harness.report.ab_files import write_ab_reports
from harness.run.measure import served_outputs
from harness.run.variants import StageTracker, failure_of, tracked
from harness.scenario.applicability import check_loaded_data
from harness.scenario.bounds import REFERENCE_VARIANT
from harness.scenario.loader import load_scenario
from harness.scenario.schema import Scenario, VariantSpec
from harness.serving.base import Target
from harness.serving.placement import scenario_placement

BOOTSTRAP_RESAMPLES = 4000


@dataclass(frozen=True)
class AbOptions:
    """What `harness ab` was asked (CLI flags; None means the default the docstring names)."""

    base_ref: str | None = None  # default: the merge-base with the default branch
    base_scenario: Path | None = None  # compare two files instead of git refs
    pairs: int | None = None  # default: per round, the fewest blocks that can reach alpha (at least 5)
    rounds: int = DEFAULT_ROUNDS  # fresh starts of both servers; the blocks are split over them
    slot_s: float = DEFAULT_SLOT_S
    warmup_s: float = DEFAULT_WARMUP_S
    slice_s: float = DEFAULT_SLICE_S  # 0: one Locust run per slot even with both servers up
    alpha: float | None = None  # default: the head scenario's gate_policy.alpha
    min_effect: float = DEFAULT_MIN_EFFECT
    aa_pairs: int = 0
    history_dir: Path | None = None  # noise floor from history when there are no A/A blocks
    testbed: str | None = None
    inconclusive: InconclusivePolicy = "fail"
    reports_dir: Path = Path("reports")
    report_url: str | None = None
    servers: str = "auto"  # auto | both-up | restart
    variants: tuple[str, ...] = ()  # default: every variant both sides have


@dataclass
class LoadedSide:
    """One side's scenario, data and served reference outputs (fidelity's yardstick)."""

    name: SideName
    source: SideSource
    scenario: Scenario
    data: Dataset
    reference_outputs: np.ndarray | None = None

    @property
    def scenario_dir(self) -> Path:
        return self.source.scenario.parent

    def spec(self, variant: str) -> VariantSpec | None:
        return next((v for v in self.scenario.all_variants() if v.name == variant), None)


@dataclass
class _Context:
    """What every variant's comparison shares: both sides, the method, where to write, history."""

    base: LoadedSide
    head: LoadedSide
    options: AbOptions
    method: AbMethod
    run_dir: Path
    stages: StageTracker
    testbed: str
    history: list[HistoryRecord] = field(default_factory=list)
    mode: ServerMode | None = None  # settled when the first server is up
    reason: str = ""
    interleaving: str = ""  # how the last blocks were measured (AbMethod.interleaving)

    def measure_blocks(
        self, pool: ServerPool, first: ServedSide, second: ServedSide, pairs: int, timing: SlotTiming,
        label: str = "", first_block: int = 0,
    ) -> list[Slot]:  # fmt: skip
        """Both sides in turn within one Locust run when they allow it, else one run per slot."""
        slice_s = self.options.slice_s
        refusal = interleave_refusal(pool, first, second) if slice_s > 0 else "--slice-s 0"
        if refusal is None:
            slots = run_interleaved(
                pool, first, second, pairs, timing, slice_s, self.stages, label=label, first_block=first_block
            )
            layout = BlockSlices.plan(timing.slot_s, timing.first_warmup_s, slice_s)
            self.method.slice_s = layout.slice_s
            self.interleaving = (
                f"both sides in turn within one Locust run, {layout.slice_s:g}s at a time "
                f"({layout.per_side} slices of each side per block), after {layout.warmup_s:g}s of warm-up"
            )
            return slots
        self.method.slice_s = 0.0
        self.interleaving = f"one Locust run per slot ({refusal})"
        return run_blocks(
            pool, first, second, pairs, timing, self.stages, label=label, first_block=first_block
        )


def run_ab(scenario_path: str | Path, options: AbOptions, progress: Progress | None = None) -> AbResult:
    """Compare `scenario_path` in the working tree with its base; write the run folder; return the record."""
    progress = progress or SilentProgress()
    with _sides(Path(scenario_path), options) as (base_source, head_source):
        head = _load_side("head", head_source)
        base = _load_side("base", base_source)
        return _run(base, head, options, progress)


@contextmanager
def _sides(scenario: Path, options: AbOptions) -> Iterator[tuple[SideSource, SideSource]]:
    if options.base_scenario is not None:
        if options.base_ref is not None:
            raise UserError("--base and --base-scenario both name the base; give one of them")
        with file_sides(scenario, options.base_scenario) as sides:
            yield sides
        return
    if not scenario.is_file():
        raise UserError(f"{scenario}: no such file")
    with git_sides(scenario, options.base_ref) as sides:
        yield sides


def _load_side(name: SideName, source: SideSource) -> LoadedSide:
    where = f"{source.scenario} ({name}: {source.ref})" if name == "base" else str(source.scenario)
    try:
        scenario = load_scenario(source.scenario)
    except UserError as exc:
        raise UserError(f"{name} side: {first_line(exc)}") from None
    reason = target_unavailable_reason(scenario)
    if reason:
        raise UserError(f"{where}: serving.target: {reason}")
    data = load_data(scenario, source.scenario.parent, scenario_file=source.scenario)
    check_loaded_data(scenario, data, source.scenario)
    return LoadedSide(name, source, scenario, data)


def _run(base: LoadedSide, head: LoadedSide, options: AbOptions, progress: Progress) -> AbResult:
    alpha = options.alpha if options.alpha is not None else head.scenario.gate_policy.alpha
    if not 0 < alpha < 0.5:
        raise UserError(f"--alpha: expected a value between 0 and 0.5, got {alpha:g}")
    if options.slot_s <= 0 or options.warmup_s < 0 or not 0 <= options.min_effect < 1:
        raise UserError("--slot-s must be positive, --warmup-s at least 0, --min-effect in [0, 1)")
    if options.slice_s < 0 or options.slice_s > options.slot_s:
        raise UserError(
            f"--slice-s: expected 0 (off) or up to --slot-s ({options.slot_s:g}), got {options.slice_s:g}"
        )
    rounds = check_rounds(options.rounds)
    pairs = check_pairs(options.pairs, alpha, rounds)
    if options.aa_pairs:
        check_pairs(options.aa_pairs, alpha)
    names, new = _variants(base, head, options)
    if not names:
        raise UserError(f"{head.source.scenario}: no variant to compare: {'; '.join(new)}")
    # read before the run folder exists: a corrupt store is bad input, and nothing is half-written
    history = store.read(options.history_dir) if options.history_dir is not None else []
    environment = environment_fingerprint()
    run_id = f"{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-ab-{head.scenario.name}-{secrets.token_hex(2)}"
    run_dir = (options.reports_dir / run_id).resolve()
    (run_dir / "inputs").mkdir(parents=True)
    for side in (base, head):
        shutil.copy2(side.source.scenario, run_dir / "inputs" / f"{side.name}-{side.source.scenario.name}")
    method = AbMethod(
        alpha=alpha,
        min_effect=options.min_effect,
        pairs=pairs,
        order=order_text(pairs, rounds),
        slot_s=options.slot_s,
        warmup_s=options.warmup_s,
        bootstrap_resamples=BOOTSTRAP_RESAMPLES,
        best_reachable_alpha=best_reachable_alpha(pairs),
        servers="both-up",
        servers_reason="",
        aa_pairs=options.aa_pairs,
        rounds=rounds,
    )
    result = AbResult(
        run_id=run_id,
        scenario_name=head.scenario.name,
        started_at=_now(),
        base=_side_record(base),
        head=_side_record(head),
        method=method,
        testbed=testbed_id(environment, options.testbed),
        environment=environment,
        environment_warnings=[*_mismatches(base, head), *new],
        inconclusive=options.inconclusive,
        run_dir=str(run_dir),
        report_url=options.report_url or "",
    )
    stages = tracked(progress, None, time.monotonic)
    context = _Context(base, head, options, method, run_dir, stages, result.testbed, history)
    interrupted: BaseException | None = None
    try:
        if names and names[0] != REFERENCE_VARIANT:
            _reference_outputs(context)
        for name in names:
            result.variants.append(_compare_variant(name, context))
    except KeyboardInterrupt as exc:
        interrupted = exc
        result.failure = failure_of(stages, exc, run_dir)
    except Exception as exc:
        if os.environ.get("HARNESS_DEBUG"):
            raise
        result.failure = failure_of(stages, exc, run_dir)
    method.servers = context.mode or "both-up"
    method.servers_reason = context.reason
    method.interleaving = context.interleaving
    if method.servers == "both-up" and (shared := _shared_server_cpus(head.scenario)) is not None:
        result.environment_warnings.append(shared)
    with progress.stage("writing report"):
        result.finished_at = _now()
        result.write(run_dir)
        write_ab_reports(result, run_dir, report_url=options.report_url)
    if interrupted is not None:
        raise RunInterrupted(str(interrupted), run_dir / "index.html") from interrupted
    return result


def _variants(base: LoadedSide, head: LoadedSide, options: AbOptions) -> tuple[list[str], list[str]]:
    """The variants both sides have (in head's order), and a note per variant only head has."""
    head_names = [v.name for v in head.scenario.all_variants()]
    base_names = {v.name for v in base.scenario.all_variants()}
    for wanted in options.variants:
        if wanted not in head_names:
            raise UserError(f"--variants: {wanted!r} is not a variant of {head.source.scenario}")
    chosen = [n for n in head_names if not options.variants or n in options.variants]
    new = [f"variant {n!r} is new on head: nothing to compare it with" for n in chosen if n not in base_names]
    return [n for n in chosen if n in base_names], new


def _compare_variant(name: str, ctx: _Context) -> VariantComparison:
    record = VariantComparison(name=name)
    stages, options, method = ctx.stages, ctx.options, ctx.method
    stages.variant = name
    served: dict[SideName, ServedSide] = {}
    for side in (ctx.base, ctx.head):
        spec = side.spec(name)
        assert spec is not None  # _variants kept only names both sides have
        out_dir = ctx.run_dir / side.name / "variants" / name
        with stages.stage(f"compress + export + evaluate {name} ({side.name})"):
            prepared = prepare_variant(side.scenario.model, spec, side.scenario_dir, out_dir, side.data)
        served[side.name] = ServedSide(
            side.name, side.scenario, side.scenario_dir, side.data, prepared, out_dir
        )
        record.warnings += [f"{side.name}: {w}" for w in prepared.warnings]
    gates = dict(ctx.head.scenario.gates)
    timing = SlotTiming(
        options.slot_s, options.warmup_s, max(options.warmup_s, ctx.head.scenario.load.warmup_s)
    )
    twin: ServedSide | None = None
    first_block = 0
    for round_, size in enumerate(round_sizes(method.pairs, method.rounds)):
        pool = ServerPool(ctx.mode or "both-up", stages)
        with ExitStack() as stack:
            stack.callback(pool.close)
            if round_ == 0:
                figures = {
                    side.name: _serve_and_evaluate(side, served[side.name], pool, ctx)
                    for side in (ctx.base, ctx.head)
                }
                if options.aa_pairs:
                    twin = _twin(ctx, served["base"], name)
                    record.aa_slots = ctx.measure_blocks(
                        pool, served["base"], twin, options.aa_pairs, timing, "A/A "
                    )
            elif pool.mode == "both-up":
                for one in (served["base"], served["head"]):
                    pool.keep_up(one)  # up before the blocks, which take turns between running servers
            slots = ctx.measure_blocks(
                pool, served["base"], served["head"], size, timing, first_block=first_block
            )
            record.slots += [replace(slot, round=round_) for slot in slots]
        first_block += size
        for stopped in (served["base"], served["head"], twin):
            if stopped is not None:  # the next round starts its servers afresh
                stopped.target = stopped.requests = None
    record.server_starts = {side: one.starts for side, one in served.items()}
    if twin is not None:
        record.server_starts["base-twin"] = twin.starts
    record.noise_floor, record.noise_floor_source = _noise_floor(record, gates, ctx)
    record.base_metrics = {**figures["base"].metrics, **_pooled(record, "base")}
    record.head_metrics = {**figures["head"].metrics, **_pooled(record, "head")}
    record.comparisons = compare_load(
        name, record.slots, gates, alpha=method.alpha, min_effect=method.min_effect,
        noise_floor=record.noise_floor, resamples=method.bootstrap_resamples,
    )  # fmt: skip
    policy = ctx.head.scenario.gate_policy.model_copy(update={"alpha": method.alpha})
    record.comparisons += compare_model(
        name, gates, policy, figures["base"], figures["head"], min_effect=method.min_effect
    )
    stages.variant = ""
    return record


def _twin(ctx: _Context, base: ServedSide, variant: str) -> ServedSide:
    """A second server of base's artifact, for the A/A blocks (measured in the first round only)."""
    side = ctx.base
    folder = ctx.run_dir / "base-twin" / "variants" / variant
    return ServedSide("base", side.scenario, side.scenario_dir, side.data, base.prepared, folder)


def _reference_outputs(ctx: _Context) -> None:
    """Fidelity's yardstick when --variants leaves the reference out: each side's reference
    artifact, exported and run in-process (it is not served, so not compared)."""
    for side in (ctx.base, ctx.head):
        spec = side.spec(REFERENCE_VARIANT)
        assert spec is not None  # every scenario has it (Scenario.all_variants)
        out_dir = ctx.run_dir / side.name / "variants" / REFERENCE_VARIANT
        with ctx.stages.stage(f"reference outputs ({side.name})"):
            prepared = prepare_variant(side.scenario.model, spec, side.scenario_dir, out_dir, side.data)
        side.reference_outputs = prepared.outputs


def _serve_and_evaluate(side: LoadedSide, one: ServedSide, pool: ServerPool, ctx: _Context) -> SideFigures:
    """Start the side's server (both-up: kept for the blocks) and evaluate its served outputs.

    The first server of the run settles the server mode: when a second would not fit in memory,
    this one goes down again and every slot restarts its side's server."""
    label = f"outputs of {one.prepared.name} ({side.name})"
    if pool.mode == "restart":
        with pool.serving(one) as (target, _), ctx.stages.stage(label):
            return _figures(side, one, target)
    target = pool.keep_up(one)
    if ctx.mode is None:
        ctx.mode, ctx.reason = choose_mode(ctx.options.servers, tree_rss_bytes(target.server_pid))
        pool.mode = ctx.mode
    with ctx.stages.stage(label):
        figures = _figures(side, one, target)
    if pool.mode == "restart":
        pool.close()
        pool.stack = ExitStack()
        one.target = one.requests = None
    return figures


def _figures(side: LoadedSide, served: ServedSide, target: Target) -> SideFigures:
    """Evaluate the side's served outputs once: quality, fidelity to its own reference, size."""
    prepared = served.prepared
    outputs = served_outputs(target, prepared, side.data)
    signature = prepared.artifact.signature
    quality = evaluate_outputs(
        outputs,
        task=signature.task,
        output_kind=signature.output.kind,
        labels=side.data.test.labels,
        num_classes=side.data.num_classes,
        reference=outputs if side.reference_outputs is None else side.reference_outputs,
    )
    if side.reference_outputs is None:
        side.reference_outputs = outputs  # the first variant is the reference (all_variants order)
    np.save(served.out_dir / "outputs.npy", outputs)
    return SideFigures(
        metrics={**prepared.metrics, **quality.metrics},
        predictions=quality.predictions,
        per_example=dict(quality.per_example),
        labels=side.data.test.labels,
        examples_fingerprint=side.data.fingerprint(),
    )


def _pooled(record: VariantComparison, side: str) -> dict[str, float]:
    """The median over blocks of each load metric of one side, for the tables."""
    slots = [s for s in record.slots if s.side == side]
    keys = {k for s in slots for k in s.metrics}
    return {k: float(np.nanmedian([s.metrics.get(k, np.nan) for s in slots])) for k in sorted(keys)}


def _noise_floor(
    record: VariantComparison, gates: dict[str, str | int | float], ctx: _Context
) -> tuple[dict[str, float], NoiseFloorSource]:
    """Per load metric, the change noise alone gives: from the A/A blocks when they ran, else from
    the history of this scenario on this testbed, else none (the minimum effect decides alone)."""
    floors: dict[str, float] = {}
    source: NoiseFloorSource = "none"
    metrics = load_metrics(gates)
    if record.aa_slots:
        for metric in metrics:
            a = [s.metrics.get(metric, np.nan) for s in record.aa_slots if s.side == "base"]
            b = [s.metrics.get(metric, np.nan) for s in record.aa_slots if s.side == "head"]
            floor = noise_floor_of(a, b, alpha=ctx.method.alpha)
            if floor is not None:
                floors[metric] = floor
        return floors, "aa-blocks"
    for metric in metrics:
        floor = changepoints.noise_floor(
            ctx.history, ctx.head.scenario.name, record.name, metric, ctx.testbed
        )
        if floor is not None:
            floors[metric] = floor
            source = "history"
    return floors, source


def _side_record(side: LoadedSide) -> Side:
    source = side.source
    return Side(
        name=side.name,
        ref=source.ref,
        sha=source.sha,
        dirty=source.dirty,
        scenario_file=str(source.scenario),
        data_fingerprint=side.data.fingerprint(),
    )


def _mismatches(base: LoadedSide, head: LoadedSide) -> list[str]:
    """What differs between the sides beyond the model: each one is part of what is compared."""
    notes = []
    if base.data.fingerprint() != head.data.fingerprint():
        notes.append(
            "the test data differ between base and head: quality is not paired per example "
            f"(base {base.data.fingerprint()[:12]}, head {head.data.fingerprint()[:12]})"
        )
    if base.scenario.load != head.scenario.load:
        notes.append("the load profiles differ between base and head: latency changes include that")
    if base.scenario.serving != head.scenario.serving:
        notes.append("the serving settings differ between base and head: latency changes include that")
    return notes


def _shared_server_cpus(scenario: Scenario) -> str | None:
    """A note when both servers were placed on a single CPU: they take turns on it while one is
    loaded, and on a 2-core VM that widened a block's p95 log-ratio 2-3x against unplaced servers
    (README, "A/B gate validity")."""
    server = scenario_placement(scenario).server
    if server is None or len(server) != 1:
        return None
    return (
        f"both servers were placed on CPU {server[0]} (serving.cpus: {scenario.serving.cpus}): the idle one "
        "competes with the loaded one for it, which makes p95 noisier; with load.generator: native, "
        "serving.cpus: any is usually quieter on a small machine"
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
