"""The serving target interface every backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

import numpy as np

from harness.artifacts import ServedArtifact
from harness.data.tensors import Batch
from harness.errors import RunError
from harness.scenario.schema import ServingSpec


@dataclass(frozen=True)
class HttpEndpoint:
    """Where load is sent: the path and headers of the target's predict request. The bodies
    themselves are encoded once, before load starts, by `Target.encode_requests`."""

    base_url: str  # e.g. "http://127.0.0.1:38123"
    path: str  # e.g. "/predictions/model"
    headers: dict[str, str] | None = None


@dataclass(frozen=True)
class EncodedRequests:
    """Request bodies encoded once, before load starts: the load generator only sends bytes,
    cycling through `bodies` in order, so its per-request cost does not depend on the tensor size."""

    content_type: str  # e.g. "application/json", "application/x-npy"
    bodies: tuple[bytes, ...]  # one per request, each holding `rows_per_body` examples
    rows_per_body: int
    encoding: str  # what the report calls it: "json-instances", "json-columnar", "npy", "npz", "template"
    # where a response holds one entry per example (dotted: "predictions", "outputs.0.probs"): the
    # load generator counts them to tell a good answer from a bad payload; None: any 2xx is good
    output_path: str | None = "predictions"
    output_width: int | None = None  # values per example; tells one flat row from a column of rows

    def describe(self) -> dict[str, Any]:
        sizes = [len(body) for body in self.bodies]
        return {
            "encoding": self.encoding,
            "content_type": self.content_type,
            "rows_per_request": self.rows_per_body,
            "distinct_bodies": len(self.bodies),
            "body_bytes_mean": sum(sizes) / len(sizes) if sizes else 0,
            "output_path": self.output_path,
        }


class Target(ABC):
    """A running model server (or an in-process stand-in for one) for one artifact.

    Used as a context manager so that teardown always runs, even when the run fails.
    """

    name: ClassVar[str]

    def __init__(
        self,
        spec: ServingSpec,
        run_dir: Path,
        *,
        scenario_dir: Path | None = None,
        cpus: Sequence[int] | None = None,
    ) -> None:
        self.spec = spec
        self.run_dir = Path(run_dir)
        # user files named in serving.options (a handler, an archive) are relative to the scenario
        # file's folder; None (a target built outside a scenario): relative to the working directory
        self.scenario_dir = Path(scenario_dir) if scenario_dir is not None else None
        # the CPUs the server's whole process tree may use (harness.placement); None: not placed
        self.cpus = tuple(cpus) if cpus is not None else None

    @classmethod
    def server_location(cls, spec: ServingSpec) -> str:
        """Where the server runs: "local" (a process tree the harness starts and may place on
        CPUs), "remote" (not on this machine) or "in-process" (the harness's own threads)."""
        return "local"

    @classmethod
    def unavailable_reason(cls, spec: ServingSpec) -> str | None:
        """None when this target can run here with `spec`, else one line saying what is missing."""
        return None

    @abstractmethod
    def start(self, artifact: ServedArtifact) -> None:
        """Load `artifact` and block until it answers a known-good prediction."""

    @abstractmethod
    def stop(self) -> None:
        """Release everything start() acquired; safe to call twice or after a failed start."""

    @abstractmethod
    def predict(self, batch: Batch) -> np.ndarray:
        """The model's outputs for `batch` (input name -> array, rows first), obtained through the
        serving path (the server, if any): float32 (n, signature.output.width)."""

    def encode_requests(self, batch: Batch, rows_per_request: int) -> EncodedRequests:
        """The load's request bodies for the examples of `batch`, in this target's wire format.
        Only targets with an `endpoint` encode requests."""
        raise NotImplementedError(f"{self.name} has no HTTP endpoint to encode requests for")

    @property
    def endpoint(self) -> HttpEndpoint | None:
        """The HTTP endpoint load is driven at; None for targets without a server."""
        return None

    @property
    def server_metrics_url(self) -> str | None:
        """Where the server publishes Prometheus-format metrics; None when it publishes none."""
        return None

    @property
    def server_metrics_format(self) -> str | None:
        """Which metric names that endpoint uses ("torchserve" | "tfserving"); None without one."""
        return None

    @property
    def server_pid(self) -> int | None:
        """Root of the server's process tree, for CPU/memory sampling; None without a process."""
        return None

    def died(self) -> RunError | None:
        """A RunError naming the server log if the server process has exited since start(), else None.

        Checked after every load point: requests failing because the server is gone are a broken
        run (exit 2), not a regression of the model."""
        return None

    def describe(self) -> dict[str, Any]:
        """Facts for the report: versions, ports, auth mode, batching settings."""
        return {"target": self.name}

    def __enter__(self) -> Target:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
