"""The serving target interface every backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

import numpy as np

from harness.artifacts import ServedArtifact
from harness.errors import RunError
from harness.scenario.schema import ServingSpec


@dataclass(frozen=True)
class HttpEndpoint:
    """Where load is sent. Requests are JSON `{"instances": [[...], ...]}`; responses carry
    `{"predictions": [...]}` with one entry per instance (a label or a row of scores)."""

    base_url: str  # e.g. "http://127.0.0.1:38123"
    path: str  # e.g. "/predictions/model"
    headers: dict[str, str] | None = None


class Target(ABC):
    """A running model server (or an in-process stand-in for one) for one artifact.

    Used as a context manager so that teardown always runs, even when the run fails.
    """

    name: ClassVar[str]

    def __init__(self, spec: ServingSpec, run_dir: Path) -> None:
        self.spec = spec
        self.run_dir = Path(run_dir)

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
    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Predicted labels for `batch`, obtained through the serving path (the server, if any)."""

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
