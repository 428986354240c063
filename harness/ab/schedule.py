"""The order of `harness ab`'s measurements: ABBA blocks, and what a number of blocks can prove.

Blocks alternate AB, BA, BA, AB, AB, BA, ...: over any four blocks each side is measured first
as often as second, so a linear drift of the machine (warming, a neighbour starting) falls
equally on both sides instead of on whichever always runs second.
"""

from __future__ import annotations

import math

from harness.errors import UserError

MIN_PAIRS = 5
MAX_PAIRS = 200
# `harness ab` defaults, here so that the CLI's --help reads them without importing the runner
DEFAULT_MIN_EFFECT = 0.05
DEFAULT_SLOT_S = 5.0
DEFAULT_WARMUP_S = 1.0
DEFAULT_SLICE_S = 0.5  # both servers up: the sides take turns this often within one Locust run


def block_order(pairs: int) -> list[tuple[str, str]]:
    """The two sides of each block, in measuring order: ("base", "head") or ("head", "base")."""
    return [("base", "head") if i % 4 in (0, 3) else ("head", "base") for i in range(pairs)]


def order_text(pairs: int) -> str:
    """e.g. "AB BA BA AB AB" (A = base, B = head)."""
    letters = {"base": "A", "head": "B"}
    return " ".join(letters[a] + letters[b] for a, b in block_order(pairs))


def best_reachable_alpha(pairs: int) -> float:
    """The smallest two-sided p-value `pairs` paired blocks can give: every block changed the same
    way (exact sign-flip test). A smaller alpha can never be reached, whatever the data."""
    return 2.0 * 0.5**pairs


def pairs_needed(alpha: float) -> int:
    """The fewest blocks (at least MIN_PAIRS) whose best p-value reaches `alpha`."""
    return max(MIN_PAIRS, math.ceil(1 - math.log2(alpha) - 1e-12))


def check_pairs(pairs: int | None, alpha: float) -> int:
    """`pairs`, or the fewest that can reach `alpha`; a count that cannot reach it is refused."""
    if pairs is None:
        return pairs_needed(alpha)
    if pairs < MIN_PAIRS or pairs > MAX_PAIRS:
        raise UserError(f"--pairs: expected {MIN_PAIRS} to {MAX_PAIRS} blocks, got {pairs}")
    best = best_reachable_alpha(pairs)
    if best > alpha:
        raise UserError(
            f"--pairs {pairs} cannot reach alpha {alpha:g}: with {pairs} blocks the smallest possible "
            f"p-value is {best:.3g}; use --pairs {pairs_needed(alpha)} or more, or --alpha {best:.3g} "
            "or larger"
        )
    return pairs
