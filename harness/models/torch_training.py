"""Reproducible torch training on CPU: the thread and determinism settings every trainer shares.

The built-in MobileNetV2 and the fine-tuning after channel pruning train on every CPU this process
may use: a convolutional net is ten times too slow on one thread. With deterministic algorithms
and a fixed thread count, CPU kernels split their reductions the same way on every run, so the
weights are reproducible for a given seed, data, torch build and thread count; the thread count
is therefore part of a cached model's key.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


def training_threads() -> int:
    """The CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def deterministic_torch(threads: int) -> Iterator[None]:
    """Train on `threads` intra-op threads with deterministic algorithms; the global settings are
    restored afterwards (the harness runs timed inference in the same process)."""
    import torch

    previous_threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(previous_threads)
        torch.use_deterministic_algorithms(deterministic)
