"""The slice layout of an interleaved A/B run and how its samples become one slot per block and side."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from harness.ab.blocks import ServerPool, interleave_refusal, split_slots
from harness.ab.schedule import block_order
from harness.load.interleave import BlockSlices
from harness.load.samples import Sample
from harness.progress import SilentProgress
from harness.scenario.load_spec import LoadSpec


def test_slices_add_up_to_the_slot_exactly_and_never_exceed_the_asked_length() -> None:
    even = BlockSlices.plan(slot_s=2.5, warmup_s=10.0, slice_s=0.5)
    assert (even.per_side, even.slice_s, even.warmup_slices) == (5, 0.5, 20)
    assert even.block_s == pytest.approx(5.0)

    uneven = BlockSlices.plan(slot_s=2.5, warmup_s=1.0, slice_s=0.4)
    assert uneven.per_side == 7
    assert uneven.slice_s == pytest.approx(2.5 / 7)
    assert uneven.per_side * uneven.slice_s == pytest.approx(2.5)
    assert uneven.warmup_s >= 1.0
    assert uneven.warmup_s - uneven.slice_s < 1.0

    assert BlockSlices.plan(slot_s=1.0, warmup_s=0.0, slice_s=5.0).per_side == 1


def test_the_pattern_alternates_in_warm_up_then_starts_each_block_with_its_first_side() -> None:
    layout = BlockSlices(slice_s=1.0, warmup_slices=3, per_side=2)
    firsts = [0 if a == "base" else 1 for a, _ in block_order(4)]  # AB BA BA AB
    assert layout.pattern(firsts) == (0, 1, 0) + (0, 1, 0, 1) + (1, 0, 1, 0) * 2 + (0, 1, 0, 1)


def test_requests_belong_to_the_block_they_were_due_in() -> None:
    layout = BlockSlices(slice_s=0.5, warmup_slices=4, per_side=2)  # 2 s warm-up, 2 s blocks
    assert layout.block_of(1.99) is None
    assert layout.block_of(2.0) == 0
    assert layout.block_of(3.99) == 0
    assert layout.block_of(4.0) == 1


def _samples(block: int, target: int, latencies: list[float], failures: int = 0) -> list[Sample]:
    start = 2.0 + block * 2.0
    ok = [Sample(start + 0.01 * i, ms, "ok", target=target) for i, ms in enumerate(latencies)]
    bad = [Sample(start + 0.5, 1.0, "http_status", "HTTP 500", target=target) for _ in range(failures)]
    return ok + bad


def test_each_block_gives_one_slot_per_side_from_its_own_requests() -> None:
    layout = BlockSlices(slice_s=0.5, warmup_slices=4, per_side=2)  # each side 1 s per block
    orders = block_order(2)
    samples = [
        Sample(0.5, 999.0, "ok", target=1),  # warm-up: not counted
        *_samples(0, 0, [1.0] * 10),
        *_samples(0, 1, [2.0] * 8, failures=2),
        *_samples(1, 0, [1.0] * 10),
        *_samples(1, 1, [4.0] * 10),
        Sample(6.5, 999.0, "ok", target=0),  # after the last block: not counted
    ]
    sides = {"base": object(), "head": object()}
    slots = split_slots(samples, layout, orders, sides)  # type: ignore[arg-type]

    assert [(s.block, s.side, s.position) for s in slots] == [
        (0, "base", 0), (0, "head", 1), (1, "head", 0), (1, "base", 1),
    ]  # fmt: skip
    by = {(s.block, s.side): s for s in slots}
    assert by[(0, "base")].metrics["latency_p95_ms"] == pytest.approx(1.0)
    assert by[(1, "head")].metrics["latency_p95_ms"] == pytest.approx(4.0)
    assert by[(0, "head")].requests == 10
    assert by[(0, "head")].failures == 2
    assert by[(0, "head")].metrics["error_rate"] == pytest.approx(0.2)
    assert by[(0, "head")].metrics["throughput_rps"] == pytest.approx(8 / 1.0)
    assert by[(1, "base")].started_s == pytest.approx(4.0)


def _side(users: int = 1, workers: int = 0, endpoint: object = "http://x", started: bool = True) -> object:
    load = LoadSpec(users=users, workers=workers, force_workers=True)
    target = SimpleNamespace(endpoint=endpoint) if started else None
    return SimpleNamespace(scenario=SimpleNamespace(load=load), target=target)


def test_sides_are_interleaved_only_when_one_locust_process_can_load_both_alike() -> None:
    both_up, restart = ServerPool("both-up", SilentProgress()), ServerPool("restart", SilentProgress())
    assert interleave_refusal(both_up, _side(), _side(started=False)) is None  # a twin not started yet
    assert interleave_refusal(restart, _side(), _side()) == "one server at a time"
    assert "HTTP endpoint" in str(interleave_refusal(both_up, _side(), _side(endpoint=None)))
    assert "workers" in str(interleave_refusal(both_up, _side(workers=2), _side(workers=2)))
    assert "load points differ" in str(interleave_refusal(both_up, _side(users=1), _side(users=4)))
