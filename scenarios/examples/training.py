"""Reproducible training for the example models: seeded minibatch Adam on one thread.

Example user code. Every example model trains the same way: seed the initial weights, then Adam
over a seeded shuffle of the training rows each epoch, on one CPU thread with deterministic
algorithms, so that the weights come out bit-for-bit the same on every call (for one torch build)
and a cache keyed by the settings and the data can hold them (see `weights_cache`).
"""

# user code that trains torch models: torch is imported at module level on purpose
# ruff: noqa: TID253

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

import torch
from torch import nn


class TrainSettings(Protocol):
    """What these helpers read from an example's TrainConfig, a frozen dataclass."""

    __dataclass_fields__: ClassVar[dict[str, Any]]  # a dataclass: its fields go into the cache key

    @property
    def seed(self) -> int: ...
    @property
    def epochs(self) -> int: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def learning_rate(self) -> float: ...


M = TypeVar("M", bound=nn.Module)
C = TypeVar("C", bound=TrainSettings)


def deterministic_training(seed: int, train: Callable[[], None]) -> None:
    """Run `train` seeded, on one thread, with deterministic algorithms; global settings restored.

    Reductions split across threads may sum in another order from run to run; one thread makes
    the weights bit-for-bit reproducible (the same on every call for one torch build).
    """
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(seed)
        train()
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def fit_minibatches(
    model: nn.Module,
    batch_loss: Callable[[torch.Tensor], torch.Tensor],
    examples: int,
    config: TrainSettings,
    *,
    weight_decay: float = 0.0,
) -> None:
    """Minimise `batch_loss(rows)` with Adam over all of `model`'s parameters, reproducibly.

    Each of `config.epochs` epochs visits the `examples` training rows once, in a fresh shuffle
    drawn from `config.seed`, in batches of `config.batch_size` row indices; `batch_loss` picks
    those rows from its own tensors. Runs under `deterministic_training`; leaves eval mode on.
    """

    def run() -> None:
        optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=weight_decay)
        order = torch.Generator().manual_seed(config.seed)
        model.train()
        for _ in range(config.epochs):
            permutation = torch.randperm(examples, generator=order)
            for start in range(0, examples, config.batch_size):
                rows = permutation[start : start + config.batch_size]
                optimizer.zero_grad()
                batch_loss(rows).backward()
                optimizer.step()

    deterministic_training(config.seed, run)
    model.eval()


def seeded_model(build: Callable[[C], M], config: C) -> M:
    """`build(config)` with torch seeded from `config.seed` first: the initial weights follow from it."""
    torch.manual_seed(config.seed)
    return build(config)


def save_trained(path: str | Path, build: Callable[[C], M], train: Callable[[M, C], None], config: C) -> Path:
    """Build a fresh model, `train` it and torch.save its state_dict to `path` (for a `weights:` file)."""
    model = seeded_model(build, config)
    train(model, config)
    path = Path(path)
    torch.save(model.state_dict(), path)
    return path
