"""What flows between stages: the exported file that is evaluated and served."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.data.tensors import Signature


@dataclass(frozen=True)
class ServedArtifact:
    """An exported model file exactly as the serving target will load it.

    Accuracy is always measured on this file, never on the in-memory model it came from: an
    export can silently lose accuracy (torchao + TorchScript dropped digits from 97.8% to 9.8%).
    """

    path: Path
    framework: str  # "torch" | "tensorflow"
    format: str  # "torch.export" (.pt2) | "torchscript" (.pt) | "savedmodel" | "tflite"
    signature: Signature  # named inputs, the output and the task: what servers and clients send
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one example of a one-input model (ValueError for several inputs)."""
        single = self.signature.single
        if single is None:
            raise ValueError(f"{self.path} takes several inputs: {self.signature.describe_inputs()}")
        return single.shape

    @property
    def num_classes(self) -> int:
        """Width of the output row: classes for classification, values for regression."""
        return self.signature.output.width
