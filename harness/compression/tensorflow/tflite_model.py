"""A TFLite flatbuffer in memory: what tf.qat and tf.ptq hand to the exporter."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TFLiteModel:
    """Converted TFLite bytes plus how they were made (for the report and the artifact's extra)."""

    content: bytes
    quantization: str  # "qat-int8" | "dynamic" | "float16" | "int8"
    input_dtype: str  # the file's dtype of its first input: "float32", "int8"/"uint8" (quantized), "int64"
    output_dtype: str  # "float32" | "int8" | "uint8"; every input's dtype is in details["input_dtypes"]
    details: dict[str, Any] = field(default_factory=dict)
