"""Several endpoints loaded in turn by one Locust process, in short time slices.

`harness ab` compares two servers on one machine whose speed wanders: a TorchServe warms up for
tens of seconds, and on a shared VM bursts of interference last a few seconds. Measured one
after the other in slots of seconds, each burst lands on one side only; that is most of the
noise of a block. Loaded in turn every fraction of a second by the same client, both sides see
the same machine, and only a burst shorter than a slice can still favour one. Each slice has a
single target, so the load point (users, rate) is the one the scenario sets, never split
between the servers; a request belongs to the target it was sent to (the samples' `target`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from harness.serving.base import EncodedRequests, HttpEndpoint


@dataclass(frozen=True)
class InterleavedTarget:
    """One endpoint of an interleaved run and the bodies sent to it."""

    endpoint: HttpEndpoint
    requests: EncodedRequests


@dataclass(frozen=True)
class Interleave:
    """The targets, the slice length, and which target owns each slice from the test start (the
    targets in turn once the pattern is used up)."""

    targets: tuple[InterleavedTarget, ...]
    slice_s: float
    pattern: tuple[int, ...]

    def target_of_slice(self, k: int) -> int:
        return self.pattern[k] if k < len(self.pattern) else k % len(self.targets)


@dataclass(frozen=True)
class BlockSlices:
    """The slice layout of ABBA blocks: warm-up slices, then per block `per_side` slices of each
    side, alternating, the block's first side first."""

    slice_s: float
    warmup_slices: int
    per_side: int

    @classmethod
    def plan(cls, slot_s: float, warmup_s: float, slice_s: float) -> BlockSlices:
        """Slices of at most `slice_s` that add up to `slot_s` per side and block exactly."""
        per_side = max(1, math.ceil(slot_s / slice_s - 1e-9))
        length = slot_s / per_side
        return cls(length, math.ceil(warmup_s / length - 1e-9), per_side)

    @property
    def warmup_s(self) -> float:
        return self.warmup_slices * self.slice_s

    @property
    def block_s(self) -> float:
        return 2 * self.per_side * self.slice_s

    def pattern(self, firsts: Sequence[int]) -> tuple[int, ...]:
        """Target per slice: warm-up alternating from 0, then each block from its first target."""
        slices = [k % 2 for k in range(self.warmup_slices)]
        for first in firsts:
            slices += [first, 1 - first] * self.per_side
        return tuple(slices)

    def block_of(self, start_s: float) -> int | None:
        """The block a request due at `start_s` (s since the test start) belongs to; None in warm-up."""
        offset = start_s - self.warmup_s
        return None if offset < 0 else int(offset // self.block_s)
