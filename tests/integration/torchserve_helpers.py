"""What the TorchServe integration tests share: the skip when Java is missing, a torch.export with
a dynamic batch, and a TorchServeTarget started for the length of a `with` block."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from harness.artifacts import ServedArtifact
from harness.data.tensors import Signature
from harness.errors import RunError
from harness.scenario.schema import ServingSpec
from harness.serving.torchserve import TorchServeTarget, find_java


def _java_problem() -> str | None:
    try:
        find_java()
    except RunError as exc:
        return str(exc)
    return None


JAVA_PROBLEM = _java_problem()
# a test module's `pytestmark`: marked torchserve, skipped with the reason when no Java 17 is found
TORCHSERVE_MARKS = [
    pytest.mark.torchserve,
    pytest.mark.skipif(JAVA_PROBLEM is not None, reason=str(JAVA_PROBLEM)),
]


def export_batched(module: torch.nn.Module, signature: Signature, path: Path) -> ServedArtifact:
    """torch.export `module` with a dynamic batch dimension (from 1) on every input; saved to `path`."""
    examples = tuple(torch.zeros((2, *s.shape), dtype=getattr(torch, s.dtype)) for s in signature.inputs)
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(module, examples, dynamic_shapes=tuple({0: batch} for _ in examples))
    torch.export.save(program, path)
    return ServedArtifact(path=path, framework="torch", format="torch.export", signature=signature)


@contextlib.contextmanager
def torchserve_serving(
    artifact: ServedArtifact, run_dir: Path, *, scenario_dir: Path | None = None, **spec: Any
) -> Iterator[TorchServeTarget]:
    """A TorchServeTarget serving `artifact`, stopped when the block ends (even if start fails).

    `spec` holds ServingSpec fields beyond the target; the startup timeout is 120 s unless given.
    """
    serving = ServingSpec(**{"target": "torchserve", "startup_timeout_s": 120, **spec})
    with TorchServeTarget(serving, run_dir, scenario_dir=scenario_dir) as target:
        target.start(artifact)
        yield target
