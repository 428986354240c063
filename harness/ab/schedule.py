"""The order of `harness ab`'s measurements: ABBA blocks, and what a number of blocks can prove.

Blocks alternate AB, BA, BA, AB, AB, BA, ...: over any four blocks each side is measured first
as often as second, so a linear drift of the machine (warming, a neighbour starting) falls
equally on both sides instead of on whichever always runs second.

The blocks are split over rounds, and both servers are started afresh for each round. A server
instance has its own speed: in 30 A/A comparisons of one TorchServe pair each, the mean p95
log-ratio of a pair spread with SD 0.054 however many blocks it ran, which no block count of one
pair can average away; two pairs per comparison halve its variance (README, "A/B gate validity").
The ABBA order runs on across rounds, so every round sees both sides first about equally.
"""

from __future__ import annotations

import math

from harness.errors import UserError

MIN_PAIRS = 5
MAX_PAIRS = 200
DEFAULT_ROUNDS = 2
MAX_ROUNDS = 20
MIN_PAIRS_PER_ROUND = 2  # one AB and one BA block
# `harness ab` defaults, here so that the CLI's --help reads them without importing the runner
DEFAULT_MIN_EFFECT = 0.05
DEFAULT_SLOT_S = 5.0
DEFAULT_WARMUP_S = 1.0
DEFAULT_SLICE_S = 0.5  # both servers up: the sides take turns this often within one Locust run


def block_order(pairs: int) -> list[tuple[str, str]]:
    """The two sides of each block, in measuring order: ("base", "head") or ("head", "base")."""
    return [("base", "head") if i % 4 in (0, 3) else ("head", "base") for i in range(pairs)]


def order_text(pairs: int, rounds: int = 1) -> str:
    """e.g. "AB BA BA AB AB" (A = base, B = head); rounds apart by " | "."""
    letters = {"base": "A", "head": "B"}
    blocks = [letters[a] + letters[b] for a, b in block_order(pairs)]
    parts, start = [], 0
    for size in round_sizes(pairs, rounds):
        parts.append(" ".join(blocks[start : start + size]))
        start += size
    return " | ".join(parts)


def round_sizes(pairs: int, rounds: int) -> list[int]:
    """How many of `pairs` blocks each round measures: as even as possible, the larger first."""
    return [pairs // rounds + (1 if i < pairs % rounds else 0) for i in range(rounds)]


def best_reachable_alpha(pairs: int) -> float:
    """The smallest two-sided p-value `pairs` paired blocks can give: every block changed the same
    way (exact sign-flip test). A smaller alpha can never be reached, whatever the data."""
    return 2.0 * 0.5**pairs


def pairs_needed(alpha: float) -> int:
    """The fewest blocks (at least MIN_PAIRS) whose best p-value reaches `alpha`."""
    return max(MIN_PAIRS, math.ceil(1 - math.log2(alpha) - 1e-12))


def default_pairs(alpha: float, rounds: int = 1) -> int:
    """Blocks when --pairs is not given: per round, the fewest that could reach `alpha` on their own,
    so that at 0.01 a comparison is not decided only when every block agrees (README)."""
    return rounds * pairs_needed(alpha)


def check_rounds(rounds: int) -> int:
    if not 1 <= rounds <= MAX_ROUNDS:
        raise UserError(f"--rounds: expected 1 to {MAX_ROUNDS} fresh starts of both servers, got {rounds}")
    return rounds


def check_pairs(pairs: int | None, alpha: float, rounds: int = 1) -> int:
    """`pairs`, or `default_pairs`; a count that cannot reach alpha, or fill the rounds, is refused."""
    if pairs is None:
        return default_pairs(alpha, rounds)
    if pairs < MIN_PAIRS or pairs > MAX_PAIRS:
        raise UserError(f"--pairs: expected {MIN_PAIRS} to {MAX_PAIRS} blocks, got {pairs}")
    if pairs < MIN_PAIRS_PER_ROUND * rounds:
        raise UserError(
            f"--pairs {pairs} cannot fill --rounds {rounds}: each round needs at least "
            f"{MIN_PAIRS_PER_ROUND} blocks; use --pairs {MIN_PAIRS_PER_ROUND * rounds} or more, or fewer "
            "rounds"
        )
    best = best_reachable_alpha(pairs)
    if best > alpha:
        raise UserError(
            f"--pairs {pairs} cannot reach alpha {alpha:g}: with {pairs} blocks the smallest possible "
            f"p-value is {best:.3g}; use --pairs {pairs_needed(alpha)} or more, or --alpha {best:.3g} "
            "or larger"
        )
    return pairs
