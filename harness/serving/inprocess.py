"""The in-process target: the artifact runs inside the harness, no server, no HTTP.

It measures the model and runtime alone (the floor any server adds to). `serving.workers` caps how
many predictions run at once, like a server's model workers: load threads beyond that wait
their turn. torch's intra-op threads default to 1 (option `intra_op_threads`): on this 2-core
class of machine concurrency comes from the calling threads (torch releases the GIL inside ops),
and a digits-sized matmul is too small for splitting it across threads to pay for the fork/join,
so more intra-op threads only oversubscribe the cores. The setting is process-wide; it is restored
on stop().
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from harness.artifacts import ServedArtifact
from harness.compression.backend import FrameworkBackend
from harness.data.tensors import Batch, as_batch
from harness.errors import RunError, UserError
from harness.frameworks import ArtifactRunner, framework
from harness.scenario.schema import ServingSpec
from harness.serving.base import Target


class InProcessOptions(BaseModel):
    """Keys accepted in `serving.options` for the inprocess target."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    intra_op_threads: StrictInt = Field(
        default=1, ge=1, description="torch intra-op threads for the whole process while serving."
    )
    inject_delay_ms: float = Field(
        default=0.0,
        ge=0,
        le=10_000,
        description="Test aid: each predict call spins this long, a known regression for checking "
        "that gates detect one (benchmarks/gate_validity.py). Leave at 0 in real scenarios.",
    )


class InProcessTarget(Target):
    """Runs the exported artifact in this process; `predict` is safe to call from many threads."""

    name: ClassVar[str] = "inprocess"

    def __init__(
        self,
        spec: ServingSpec,
        run_dir: Path,
        *,
        scenario_dir: Path | None = None,
        cpus: Sequence[int] | None = None,
    ) -> None:
        super().__init__(spec, run_dir, scenario_dir=scenario_dir, cpus=cpus)
        try:
            options = InProcessOptions.model_validate(dict(spec.options))
        except ValidationError as exc:
            error = exc.errors()[0]
            key = ".".join(str(part) for part in error["loc"])
            raise UserError(f"serving.options.{key}: {error['msg']}") from None
        self.intra_op_threads: int = options.intra_op_threads
        self.inject_delay_s = options.inject_delay_ms / 1000.0
        self._runner: ArtifactRunner | None = None
        self._artifact: ServedArtifact | None = None
        self._slots = threading.BoundedSemaphore(spec.workers)
        self._lock = threading.Lock()
        # the backend that changed the process-wide intra-op threads, and the count to restore
        self._saved_threads: tuple[FrameworkBackend, int] | None = None

    @classmethod
    def server_location(cls, spec: ServingSpec) -> str:
        return "in-process"

    def start(self, artifact: ServedArtifact) -> None:
        spec = framework(artifact.framework)
        backend = spec.backend()
        with self._lock:
            if self._runner is not None:
                raise RunError("inprocess target already started; stop() it first")
            previous = backend.set_intra_op_threads(self.intra_op_threads)
            if previous is not None:
                self._saved_threads = (backend, previous)
            signature = artifact.signature
            zeros = {i.name: np.zeros((1, *i.shape), dtype=i.dtype) for i in signature.inputs}
            try:
                runner = spec.runner(artifact)
                outputs = np.asarray(runner.predict_outputs(zeros))
            except Exception:
                self._restore_threads()
                raise
            width = signature.output.width
            if outputs.shape != (1, width) or not np.all(np.isfinite(outputs)):
                self._restore_threads()
                raise RunError(
                    f"inprocess: {artifact.path} answered {outputs.tolist()!s:.120} for one example of "
                    f"zeros ({signature.describe_inputs()}); expected one row of {width} finite values"
                )
            self._runner, self._artifact = runner, artifact

    def stop(self) -> None:
        with self._lock:
            self._runner = None  # the artifact stays: describe() runs after teardown
            self._restore_threads()

    def predict(self, batch: Batch) -> np.ndarray:
        """The runner's outputs for `batch`: float32 (n, signature.output.width). A bare array is
        taken as the batch of a one-input model."""
        runner, artifact = self._runner, self._artifact
        if runner is None or artifact is None:
            raise RunError("inprocess target is not started")
        if not isinstance(batch, Mapping):
            batch = as_batch(batch, artifact.signature.inputs)
        with self._slots:
            if self.inject_delay_s:
                # a known, deliberate regression (gate-validity runs), spent on the CPU like a heavier
                # model: a sleep this short costs the VM's ~1 ms wake-up latency on top
                until = time.perf_counter() + self.inject_delay_s
                while time.perf_counter() < until:
                    pass
            return np.asarray(runner.predict_outputs(batch), dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "target": self.name,
            "mode": "in-process, no server",
            "workers": self.spec.workers,
            "intra_op_threads": self.intra_op_threads,
            "batching": "none: each predict call runs the batch it is given",
        }
        if self._artifact is not None:
            info.update(framework=self._artifact.framework, artifact_format=self._artifact.format)
            info.update(framework(self._artifact.framework).backend().runtime_info(self._artifact))
        return info

    def _restore_threads(self) -> None:
        if self._saved_threads is not None:
            backend, threads = self._saved_threads
            backend.set_intra_op_threads(threads)
            self._saved_threads = None
