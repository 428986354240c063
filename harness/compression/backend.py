"""The work that needs the framework: obtain the base model, copy it, export, measure, serve in-process.

The pipeline (`harness.compression.pipeline`) and the in-process target are framework-neutral;
each framework supplies one `FrameworkBackend`, named by its descriptor in `harness.frameworks`
(`framework(name).backend()`) and imported on first use, so preparing a torch scenario never
imports TensorFlow and the other way round.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from harness.artifacts import ServedArtifact
from harness.models.digits import DigitsSplit

if TYPE_CHECKING:
    # cycle: harness.scenario's __init__ -> loader -> checks -> frameworks -> this module
    from harness.scenario.schema import ModelSpec


@dataclass
class BaseModel:
    """The uncompressed model of a scenario, built or loaded once per process."""

    model: Any
    info: dict[str, Any]  # how it was obtained: built-in name + training facts, or the user's file
    path: Path | None = None  # the user's file or SavedModel folder; None for built-ins
    format: str | None = None  # the user's format, e.g. "torchscript", "savedmodel", "keras"


class FrameworkBackend(ABC):
    """What the pipeline needs from one framework. Implementations import their framework lazily."""

    framework: ClassVar[str]

    @abstractmethod
    def load_base(self, model: ModelSpec, scenario_dir: Path, data: DigitsSplit) -> BaseModel:
        """Build the built-in model (cached on disk) or load the user's file; UserError if unusable."""

    @abstractmethod
    def fresh(self, base: BaseModel) -> Any:
        """A copy of the base model that recipes may modify without touching later variants."""

    @abstractmethod
    def export(self, model: Any, out_dir: Path, data: DigitsSplit) -> ServedArtifact:
        """Write `model` (whatever the last step produced) to `out_dir` in the format it is served in."""

    @abstractmethod
    def copy_user_artifact(self, base: BaseModel, out_dir: Path, data: DigitsSplit) -> ServedArtifact:
        """Serve the user's uncompressed file exactly as given, copied into `out_dir`."""

    @abstractmethod
    def measure_artifact(
        self, artifact: ServedArtifact, data: DigitsSplit
    ) -> tuple[dict[str, float], dict[str, Any]]:
        """Metrics of the exported file loaded back from disk: accuracy_inprocess, model_size_bytes,
        model_size_gzip_bytes, sparsity, param_count; plus details for the report."""

    @abstractmethod
    def in_memory_accuracy(self, model: Any, data: DigitsSplit) -> float:
        """Test accuracy of the in-memory model, to catch an export that changed what it computes."""

    def set_intra_op_threads(self, threads: int) -> int | None:
        """Set the process-wide intra-op thread count for serving in this process; the previous
        count (to restore through this method), or None if the framework has no such setting."""
        return None

    def runtime_info(self, artifact: ServedArtifact) -> dict[str, Any]:
        """Facts about the runtime that serves `artifact` in this process, for the report."""
        return {}
