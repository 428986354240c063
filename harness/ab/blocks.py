"""Serve both sides of one variant and measure them slot by slot, in ABBA blocks.

Both servers stay up and only one is loaded at a time (`both-up`). Then one Locust run measures
every block, taking turns between the servers every slice (`run_interleaved`,
harness.load.interleave), so that both sides see the same moments of a wandering machine.
Where one Locust process cannot load both alike, every slot is its own Locust run of the side's
gated load point for a fixed time after its own warm-up (`run_blocks`); and when memory cannot
hold a second server, each slot starts its side's server afresh and stops it after (`restart`).
The record says which. No stop rule applies: the blocks, not the windows, carry the statistics.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import psutil

from harness.ab.record import ServerMode, SideName, Slot
from harness.ab.schedule import block_order
from harness.compression.pipeline import PreparedVariant
from harness.data.dataset import Dataset
from harness.load.drivers import http_driver
from harness.load.interleave import BlockSlices, Interleave, InterleavedTarget
from harness.load.plan import plan_points
from harness.load.result import OK, Sample
from harness.metrics.latency import latency_summary
from harness.progress import Progress
from harness.run.measure import drive_load
from harness.scenario.schema import Scenario
from harness.serving.base import EncodedRequests, Target
from harness.serving.placement import scenario_placement
from harness.serving.registry import TARGETS

# a second server needs its own footprint again, plus room for the load generator and the harness
MEMORY_MARGIN_BYTES = 1 << 30


@dataclass
class ServedSide:
    """One side of one variant: what it serves and, once started, its target and encoded requests."""

    name: SideName
    scenario: Scenario
    scenario_dir: Path
    data: Dataset
    prepared: PreparedVariant
    out_dir: Path  # serving and load folders of this side and variant
    target: Target | None = None
    requests: EncodedRequests | None = None
    starts: int = 0
    slots_run: int = 0


@dataclass
class SlotTiming:
    """How long each slot measures and warms up."""

    slot_s: float
    warmup_s: float
    first_warmup_s: float  # after a server start: the scenario's own warm-up if longer


@dataclass
class ServerPool:
    """Starts and stops the sides' servers according to the server mode."""

    mode: ServerMode
    progress: Progress
    stack: ExitStack = field(default_factory=ExitStack)

    def start(self, side: ServedSide, stack: ExitStack) -> Target:
        side.starts += 1
        # restart mode numbers every start; both-up only the starts of later rounds
        suffix = f"-{side.starts}" if self.mode == "restart" or side.starts > 1 else ""
        target_cls = TARGETS.resolve(side.scenario.serving.target)
        folder = side.out_dir / f"serving{suffix}"
        cpus = scenario_placement(side.scenario).server
        target = stack.enter_context(
            target_cls(side.scenario.serving, folder, scenario_dir=side.scenario_dir, cpus=cpus)
        )
        with self.progress.stage(f"starting {side.scenario.serving.target} for {side.name}"):
            target.start(side.prepared.artifact)
        requests = None
        if target.endpoint is not None:
            requests = target.encode_requests(side.data.test.inputs, side.scenario.load.request_batch_size)
        side.target, side.requests = target, requests
        return target

    def keep_up(self, side: ServedSide) -> Target:
        """Both-up mode: start the side once; it is stopped when the pool closes."""
        return side.target if side.target is not None else self.start(side, self.stack)

    @contextmanager
    def serving(self, side: ServedSide) -> Iterator[tuple[Target, bool]]:
        """The side's target for one slot, and whether it was started for it."""
        if self.mode == "both-up":
            fresh = side.target is None
            yield self.keep_up(side), fresh
            return
        with ExitStack() as stack:
            yield self.start(side, stack), True
            side.target = side.requests = None

    def close(self) -> None:
        self.stack.close()


def tree_rss_bytes(pid: int | None) -> int:
    """Resident memory of a server's process tree (0 for a target without its own process)."""
    if not pid:
        return 0
    try:
        root = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
    except psutil.Error:
        return 0


def choose_mode(requested: str, one_server_rss: int) -> tuple[ServerMode, str]:
    """both-up unless asked otherwise or a second server would not fit in available memory."""
    if requested == "restart":
        return "restart", "asked for (--servers restart)"
    available = psutil.virtual_memory().available
    needed = one_server_rss + MEMORY_MARGIN_BYTES
    if requested == "auto" and available < needed:
        return "restart", (
            f"a second server needs about {needed / 2**20:,.0f} MiB and {available / 2**20:,.0f} MiB "
            "is available: one server at a time, restarted for each slot"
        )
    gib = available / 2**30
    return "both-up", f"both servers fit ({gib:.1f} GiB available); only one is loaded at a time"


def run_blocks(
    pool: ServerPool,
    first: ServedSide,
    second: ServedSide,
    pairs: int,
    timing: SlotTiming,
    progress: Progress,
    *,
    label: str = "",
    first_block: int = 0,
) -> list[Slot]:
    """`pairs` blocks in ABBA order, `first` as A (base) and `second` as B (head, or base's twin);
    numbered from `first_block`, whose place in the ABBA sequence sets the order of the first."""
    sides = {"base": first, "head": second}
    slots: list[Slot] = []
    began = time.monotonic()
    for block, order in _numbered_orders(first_block, pairs):
        for position, which in enumerate(order):
            side = sides[which]
            text = f"{label}block {block + 1 - first_block}/{pairs}: {which} ({side.prepared.name})"
            with progress.stage(text):
                slot = measure_slot(pool, side, block, position, timing, began)
            slots.append(Slot(**{**slot.__dict__, "side": which}))
    return slots


def interleave_refusal(pool: ServerPool, first: ServedSide, second: ServedSide) -> str | None:
    """Why the two sides cannot be loaded in turn by one Locust process, or None when they can."""
    if pool.mode != "both-up":
        return "one server at a time"
    started = [side.target for side in (first, second) if side.target is not None]
    if not started or any(target.endpoint is None for target in started):
        return "a target without an HTTP endpoint is loaded from the harness's threads"
    load_a, load_b = first.scenario.load, second.scenario.load
    if load_a.workers or load_a.remote_workers:
        return "Locust workers are set (load.workers / remote_workers)"
    if (
        plan_points(load_a)[-1] != plan_points(load_b)[-1]
        or load_a.request_batch_size != load_b.request_batch_size
    ):
        return "the sides' gated load points differ"
    return None


def run_interleaved(
    pool: ServerPool,
    first: ServedSide,
    second: ServedSide,
    pairs: int,
    timing: SlotTiming,
    slice_s: float,
    progress: Progress,
    *,
    label: str = "",
    first_block: int = 0,
) -> list[Slot]:
    """`pairs` blocks measured in one Locust run that loads both servers in turn, `slice_s` at a
    time (harness.load.interleave): each block is `slot_s` of each side in alternating slices,
    the block's first side (ABBA order) first. Both servers must be up (both-up mode)."""
    sides = {"base": first, "head": second}
    targets = [pool.keep_up(first), pool.keep_up(second)]
    layout = BlockSlices.plan(timing.slot_s, timing.first_warmup_s, slice_s)
    orders = [order for _, order in _numbered_orders(first_block, pairs)]
    firsts = [0 if order[0] == "base" else 1 for order in orders]
    interleave = Interleave(
        tuple(
            InterleavedTarget(target.endpoint, side.requests)  # type: ignore[arg-type]
            for target, side in zip(targets, (first, second), strict=True)
        ),
        layout.slice_s,
        layout.pattern(firsts),
    )
    scenario = first.scenario
    load = scenario.load.model_copy(
        update={"measure_s": pairs * layout.block_s, "warmup_s": layout.warmup_s, "window_s": None}
    )
    point = plan_points(scenario.load)[-1]
    kind = label.strip().replace("/", "").lower() or "ab"
    later = f"-from-block{first_block + 1:02d}" if first_block else ""  # a later round's own folder
    out = first.out_dir / "slots" / f"{kind}-interleaved{later}"
    text = f"{label}{pairs} blocks, both sides in turn every {layout.slice_s:g}s ({first.prepared.name})"
    with progress.stage(text):
        result = http_driver(load).run(
            targets[0].endpoint,  # type: ignore[arg-type]
            load,
            first.requests,  # type: ignore[arg-type]
            out,
            point=point,
            seed=first.data.seed,
            cpus=scenario_placement(scenario).load,
            interleave=interleave,
        )
        for target in targets:
            died = target.died()
            if died is not None:
                raise died
    first.slots_run += pairs
    second.slots_run += pairs
    slots = split_slots(result.samples, layout, orders, sides)
    return [replace(slot, block=slot.block + first_block) for slot in slots]


def _numbered_orders(first_block: int, pairs: int) -> list[tuple[int, tuple[str, str]]]:
    orders = block_order(first_block + pairs)[first_block:]
    return [(first_block + i, order) for i, order in enumerate(orders)]


def split_slots(
    samples: list[Sample], layout: BlockSlices, orders: list[tuple[str, str]], sides: dict[str, ServedSide]
) -> list[Slot]:
    """One Slot per block and side from an interleaved run's samples (`target` 0 is base's side)."""
    names = list(sides)
    grouped: dict[tuple[int, int], list[Sample]] = {}
    for sample in samples:
        block = layout.block_of(sample.start_s)
        if block is not None and block < len(orders):
            grouped.setdefault((block, sample.target), []).append(sample)
    side_s = layout.per_side * layout.slice_s
    slots = []
    for block, order in enumerate(orders):
        for position, which in enumerate(order):
            mine = grouped.get((block, names.index(which)), [])
            ok = [s.latency_ms for s in mine if s.outcome == OK]
            metrics = latency_summary(ok)
            metrics["throughput_rps"] = len(ok) / side_s
            metrics["error_rate"] = (len(mine) - len(ok)) / len(mine) if mine else 0.0
            side: SideName = "base" if which == "base" else "head"
            slots.append(Slot(
                block=block, side=side, position=position, metrics=metrics, requests=len(mine),
                failures=len(mine) - len(ok), started_s=round(layout.warmup_s + block * layout.block_s, 3),
            ))  # fmt: skip
    return slots


def measure_slot(
    pool: ServerPool, side: ServedSide, block: int, position: int, timing: SlotTiming, began: float
) -> Slot:
    """One fixed-length load measurement of `side`'s gated load point."""
    scenario = side.scenario
    with pool.serving(side) as (target, fresh):
        warmup = timing.first_warmup_s if fresh else timing.warmup_s
        load = scenario.load.model_copy(
            update={"measure_s": timing.slot_s, "warmup_s": warmup, "window_s": None}
        )
        point = plan_points(scenario.load)[-1]  # the gated point of a sweep
        started = time.monotonic() - began
        side.slots_run += 1
        out = side.out_dir / "slots" / f"{side.slots_run:03d}-block{block + 1:02d}"
        slot_scenario = scenario.model_copy(update={"load": load})
        result = drive_load(target, slot_scenario, side.data, point, out, None, None, side.requests)
        died = target.died()
        if died is not None:
            raise died
    metrics = latency_summary(result.latencies_ms)
    metrics["throughput_rps"] = result.throughput_rps
    metrics["error_rate"] = result.error_rate
    return Slot(
        block=block,
        side=side.name,
        position=position,
        metrics=metrics,
        requests=result.request_count,
        failures=result.failure_count,
        started_s=round(started, 3),
        restarted=fresh and pool.mode == "restart",
    )
