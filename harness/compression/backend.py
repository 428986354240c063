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
from harness.data.dataset import Dataset
from harness.data.tensors import Batch, Signature

if TYPE_CHECKING:
    import numpy as np

    # cycle: harness.scenario's __init__ -> loader -> checks -> frameworks -> this module
    from harness.scenario.schema import ModelSpec


@dataclass
class BaseModel:
    """The uncompressed model of a scenario, built or loaded once per process."""

    model: Any
    info: dict[str, Any]  # how it was obtained: built-in name + training facts, or the user's file
    signature: Signature  # its inputs (read from the model or declared), output kind and width, task
    path: Path | None = None  # the user's file or SavedModel folder; None for built-ins and factories
    format: str | None = None  # the user's format, e.g. "torchscript", "savedmodel", "keras", "python"


class FrameworkBackend(ABC):
    """What the pipeline needs from one framework. Implementations import their framework lazily.

    Outputs are always one float32 array (n, signature.output.width), whatever the model returns;
    inputs are batches (name -> array) in the signature's dtypes.
    """

    framework: ClassVar[str]

    @abstractmethod
    def load_base(self, model: ModelSpec, scenario_dir: Path, data: Dataset) -> BaseModel:
        """Build the built-in model (cached on disk), call the user's factory or load the user's
        file, and settle its signature (model facts, `model.inputs`, the data); UserError naming
        what the model expects when it does not fit the data."""

    @abstractmethod
    def fresh(self, base: BaseModel) -> Any:
        """A copy of the base model that recipes may modify without touching later variants."""

    @abstractmethod
    def export(self, model: Any, out_dir: Path, signature: Signature) -> ServedArtifact:
        """Write `model` (whatever the last step produced) to `out_dir` in the format it is served in."""

    @abstractmethod
    def copy_user_artifact(self, base: BaseModel, out_dir: Path) -> ServedArtifact:
        """Serve the user's uncompressed model as given (copied into `out_dir`, or exported from a
        format servers cannot load, such as .keras or a python: factory)."""

    @abstractmethod
    def measure_artifact(self, artifact: ServedArtifact) -> tuple[dict[str, float], dict[str, Any]]:
        """Figures of the exported file loaded back from disk: model_size_bytes,
        model_size_gzip_bytes, sparsity, param_count; plus details for the report."""

    @abstractmethod
    def in_memory_outputs(self, model: Any, batch: Batch, signature: Signature) -> np.ndarray:
        """Outputs of the in-memory model, to catch an export that changed what it computes."""

    def set_intra_op_threads(self, threads: int) -> int | None:
        """Set the process-wide intra-op thread count for serving in this process; the previous
        count (to restore through this method), or None if the framework has no such setting."""
        return None

    def runtime_info(self, artifact: ServedArtifact) -> dict[str, Any]:
        """Facts about the runtime that serves `artifact` in this process, for the report."""
        return {}
