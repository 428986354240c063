"""Integer model I/O on the client side: float data to a quantized model's wire dtype and back.

A full-integer TFLite model (tf.ptq mode int8 with io int8/uint8, tf.qat with integer io) takes
its float inputs as int8/uint8 tensors and returns int8/uint8 scores. The export records each such
tensor's dtype, scale and zero point in the artifact's `extra` (`input_quantization`,
`output_quantization`), and every client path converts with `WireQuantization` built from it: the
in-process runner, TF Serving's REST and gRPC requests, and the Locust bodies encoded for the
load. So a real client sends uint8 pixels (the raw image API this exists for) and reads float
scores, and no target keeps its own copy of the arithmetic.

    q = clip(round(x / scale) + zero_point, dtype range)        x = (q - zero_point) * scale

Inputs without recorded parameters (token ids, pixels that were uint8 in the data) pass through
unchanged. numpy only: the load side and the light modules can import this.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from harness.data.tensors import Batch, TensorSpec

INTEGER_DTYPES = ("int8", "uint8", "int16")  # what TFLite quantizes tensors to


@dataclass(frozen=True)
class TensorQuantization:
    """One integer tensor's affine quantization: float = (q - zero_point) * scale."""

    dtype: str  # "uint8" | "int8" | "int16"
    scale: float
    zero_point: int

    def __post_init__(self) -> None:
        if self.dtype not in INTEGER_DTYPES:
            raise ValueError(f"quantized tensors are {', '.join(INTEGER_DTYPES)}, not {self.dtype}")
        if not self.scale > 0:
            raise ValueError(f"a quantization scale must be positive, got {self.scale}")

    def quantize(self, values: np.ndarray) -> np.ndarray:
        """Float values as this tensor's integers (rounded half to even, clipped to the range)."""
        info = np.iinfo(np.dtype(self.dtype))
        scaled = np.round(np.asarray(values, dtype=np.float32) / np.float32(self.scale)) + self.zero_point
        return np.clip(scaled, info.min, info.max).astype(self.dtype)

    def dequantize(self, values: np.ndarray) -> np.ndarray:
        """This tensor's integers (or those numbers as JSON gave them back) as float32."""
        return (np.asarray(values, dtype=np.float32) - np.float32(self.zero_point)) * np.float32(self.scale)

    def as_dict(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "scale": self.scale, "zero_point": self.zero_point}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TensorQuantization:
        return cls(dtype=str(raw["dtype"]), scale=float(raw["scale"]), zero_point=int(raw["zero_point"]))

    @classmethod
    def from_tflite(cls, detail: Mapping[str, Any]) -> TensorQuantization | None:
        """From an interpreter's tensor detail; None for a float tensor or an integer one that was
        never quantized (scale 0: class ids, token ids)."""
        dtype = np.dtype(detail["dtype"]).name
        scale, zero_point = detail["quantization"]
        if dtype not in INTEGER_DTYPES or not scale:
            return None
        return cls(dtype=dtype, scale=float(scale), zero_point=int(zero_point))


@dataclass(frozen=True)
class WireQuantization:
    """The quantized inputs and outputs of one artifact, by tensor name; empty for a float model."""

    inputs: Mapping[str, TensorQuantization] = field(default_factory=dict)
    outputs: Mapping[str, TensorQuantization] = field(default_factory=dict)

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> WireQuantization:
        """From an artifact's `extra` (the export's `input_quantization` / `output_quantization`)."""

        def read(key: str) -> dict[str, TensorQuantization]:
            raw = extra.get(key) or {}
            return {str(name): TensorQuantization.from_dict(q) for name, q in raw.items()}

        return cls(read("input_quantization"), read("output_quantization"))

    def __bool__(self) -> bool:
        return bool(self.inputs or self.outputs)

    def input_for(self, name: str, position: int, count: int) -> TensorQuantization | None:
        """The quantization of input `name`; a one-input model's under any name (the data's input
        may be named otherwise than the file's, as everywhere else)."""
        if name in self.inputs:
            return self.inputs[name]
        if count == 1 and position == 0 and len(self.inputs) == 1:
            return next(iter(self.inputs.values()))
        return None

    def wire_specs(self, specs: Sequence[TensorSpec]) -> tuple[TensorSpec, ...]:
        """`specs` with each quantized input's dtype replaced by its integer wire dtype."""
        out = []
        for i, spec in enumerate(specs):
            q = self.input_for(spec.name, i, len(specs))
            out.append(replace(spec, dtype=q.dtype) if q is not None else spec)
        return tuple(out)

    def to_wire(self, batch: Batch, specs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
        """The batch (keyed by `specs`' names) with every quantized float input quantized; inputs
        without parameters, or already integer, pass through as they are."""
        out: dict[str, np.ndarray] = {}
        for i, spec in enumerate(specs):
            array = np.asarray(batch[spec.name])
            q = self.input_for(spec.name, i, len(specs))
            out[spec.name] = q.quantize(array) if q is not None and array.dtype.kind == "f" else array
        return out

    def output_for(self, name: str | None) -> TensorQuantization | None:
        """The quantization of output `name`; with no name, of the only quantized output."""
        if name is not None:
            return self.outputs.get(name)
        return next(iter(self.outputs.values())) if len(self.outputs) == 1 else None

    def from_wire(self, values: np.ndarray, output_name: str | None) -> np.ndarray:
        """A reply's output rows as float32: dequantized when that output is quantized."""
        q = self.output_for(output_name)
        return q.dequantize(values) if q is not None else np.asarray(values, dtype=np.float32)

    def as_extra(self) -> dict[str, Any]:
        """The artifact `extra` entries this is read back from (nothing for a float model)."""
        out: dict[str, Any] = {}
        if self.inputs:
            out["input_quantization"] = {n: q.as_dict() for n, q in sorted(self.inputs.items())}
        if self.outputs:
            out["output_quantization"] = {n: q.as_dict() for n, q in sorted(self.outputs.items())}
        return out
