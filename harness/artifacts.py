"""What flows between stages: the exported file that is evaluated and served."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ServedArtifact:
    """An exported model file exactly as the serving target will load it.

    Accuracy is always measured on this file, never on the in-memory model it came from: an
    export can silently lose accuracy (torchao + TorchScript dropped digits from 97.8% to 9.8%).
    """

    path: Path
    framework: str  # "torch" | "tensorflow"
    format: str  # "torch.export" (.pt2) | "torchscript" (.pt) | later "savedmodel", "tflite"
    input_shape: tuple[int, ...]  # one example, without the batch dimension, e.g. (64,)
    num_classes: int
    extra: dict[str, Any] = field(default_factory=dict)
