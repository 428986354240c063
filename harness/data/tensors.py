"""What a model takes and returns, independent of the framework: named input tensors and one output.

A *batch* is a mapping from input name to a numpy array whose first dimension is the batch; a
model with one input still gets a mapping of one entry. Outputs are always one 2-D float array:
a row of class scores (logits or probabilities) per example for classification, a row of values
for regression. numpy only: the scenario checks, the load driver and the report import this.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

Task = Literal["classification", "regression"]
OutputKind = Literal["logits", "probabilities", "values"]
Batch = Mapping[str, np.ndarray]

# dtypes a request may carry; the wire formats and the scenario schema accept exactly these
Dtype = Literal["float32", "float64", "float16", "int64", "int32", "int8", "uint8", "bool"]
DTYPES: tuple[str, ...] = get_args(Dtype)


@dataclass(frozen=True)
class TensorSpec:
    """One named model input: the shape of one example (no batch dimension) and its dtype."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # a numpy dtype name from DTYPES

    def describe(self) -> str:
        """'input_ids: int64[16]' — how messages list what a model expects."""
        return f"{self.name}: {self.dtype}[{', '.join(map(str, self.shape))}]"

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, raw: Mapping[str, object]) -> TensorSpec:
        shape = raw["shape"]
        assert isinstance(shape, Sequence)
        return cls(name=str(raw["name"]), shape=tuple(int(d) for d in shape), dtype=str(raw["dtype"]))


@dataclass(frozen=True)
class OutputSpec:
    """The model's one output: what its values mean and how many there are per example."""

    kind: OutputKind
    width: int  # classes for classification, values per example for regression

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "width": self.width}


@dataclass(frozen=True)
class Signature:
    """Everything a server, a runner or a load generator needs to know about a model's interface."""

    inputs: tuple[TensorSpec, ...]
    output: OutputSpec
    task: Task

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.inputs)

    @property
    def single(self) -> TensorSpec | None:
        """The only input, or None for a model with several."""
        return self.inputs[0] if len(self.inputs) == 1 else None

    def describe_inputs(self) -> str:
        return ", ".join(spec.describe() for spec in self.inputs)

    def as_dict(self) -> dict[str, object]:
        return {
            "inputs": [spec.as_dict() for spec in self.inputs],
            "output": self.output.as_dict(),
            "task": self.task,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, object]) -> Signature:
        inputs = raw["inputs"]
        output = raw["output"]
        assert isinstance(inputs, Sequence)
        assert isinstance(output, Mapping)
        return cls(
            inputs=tuple(TensorSpec.from_dict(i) for i in inputs),
            output=OutputSpec(kind=output["kind"], width=int(output["width"])),
            task=raw["task"],  # type: ignore[arg-type]
        )


def batch_len(batch: Batch) -> int:
    """Rows in `batch` (every input has the same first dimension; checked by `check_batch`)."""
    first = next(iter(batch.values()))
    return int(first.shape[0])


def batch_slice(batch: Batch, start: int, stop: int) -> dict[str, np.ndarray]:
    return {name: array[start:stop] for name, array in batch.items()}


def batch_take(batch: Batch, rows: np.ndarray | Sequence[int]) -> dict[str, np.ndarray]:
    index = np.asarray(rows, dtype=np.int64)
    return {name: array[index] for name, array in batch.items()}


def predict_in_chunks(predict: Callable[[Batch], np.ndarray], batch: Batch, chunk: int = 256) -> np.ndarray:
    """Outputs of `predict` over `batch`, called `chunk` rows at a time (bounded memory for big
    inputs), as one float32 (n, width) array: a 1-D result is one value per example."""
    parts = []
    for start in range(0, batch_len(batch), chunk):
        out = np.asarray(predict(batch_slice(batch, start, start + chunk)), dtype=np.float32)
        parts.append(out.reshape(out.shape[0], -1))
    if not parts:
        raise ValueError("no examples to predict")
    return np.concatenate(parts)


def as_batch(value: Batch | np.ndarray, inputs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
    """A batch from a mapping or, for a one-input model, a bare array; single examples get a batch
    dimension. Arrays are cast to the declared dtype. ValueError names what the model expects."""
    if not isinstance(value, Mapping):
        if len(inputs) != 1:
            raise ValueError(
                f"expected named inputs {', '.join(s.describe() for s in inputs)}, got one array"
            )
        value = {inputs[0].name: value}
    out: dict[str, np.ndarray] = {}
    for spec in inputs:
        if spec.name not in value:
            raise ValueError(
                f"missing input {spec.name!r}; the model expects {', '.join(s.describe() for s in inputs)}"
            )
        array = np.asarray(value[spec.name])
        if array.shape == spec.shape:
            array = array[np.newaxis]
        out[spec.name] = np.ascontiguousarray(array, dtype=np.dtype(spec.dtype))
    check_batch(out, inputs)
    return out


def check_batch(batch: Batch, inputs: Sequence[TensorSpec]) -> None:
    """ValueError unless `batch` holds exactly `inputs`, each (n, *shape), with one n for all."""
    expected = ", ".join(s.describe() for s in inputs)
    names = sorted(batch)
    if names != sorted(s.name for s in inputs):
        raise ValueError(f"inputs {names}; the model expects {expected}")
    rows = {int(np.shape(batch[s.name])[0]) if np.ndim(batch[s.name]) else -1 for s in inputs}
    for spec in inputs:
        shape = tuple(np.shape(batch[spec.name])[1:])
        if shape != spec.shape:
            raise ValueError(
                f"input {spec.name!r} has example shape {list(shape)}; the model expects {expected}"
            )
    if len(rows) != 1:
        raise ValueError(f"inputs have different batch sizes {sorted(rows)}; expected one")


def fingerprint_arrays(digest: object, arrays: Mapping[str, np.ndarray]) -> None:
    """Feed name, dtype, shape and exact bytes of each array (sorted by name) into a hashlib digest."""
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}{array.shape}".encode())  # type: ignore[attr-defined]
        digest.update(array.tobytes())  # type: ignore[attr-defined]
