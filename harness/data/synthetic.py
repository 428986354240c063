"""The synthetic kind: seeded random inputs without labels, for latency and fidelity only.

Values are uniform in [low, high): floats default to [0, 1), integers to low..low+9, bools are fair
coins. The test examples and the calibration examples come from separate streams of the seed, so
asking for calibration data does not change the test data.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from harness.data.parts import DataProblem, Part
from harness.scenario.data_spec import SyntheticInput, SyntheticSpec
from harness.scenario.schema import ModelSpec

MAX_SYNTHETIC_BYTES = 2 * 1024**3  # generated arrays held in memory by every variant of a run
DEFAULT_INT_SPAN = 10


def synthetic_inputs(spec: SyntheticSpec, model: ModelSpec) -> list[SyntheticInput]:
    """The inputs to generate: the block's own, else model.inputs with default ranges."""
    if spec.inputs:
        return list(spec.inputs)
    if model.inputs:
        return [SyntheticInput(name=d.name, shape=d.shape, dtype=d.dtype) for d in model.inputs]
    raise DataProblem(
        "data.inputs", "the inputs to generate (name, shape, dtype), as model.inputs declares none"
    )


def check_synthetic(spec: SyntheticSpec, model: ModelSpec) -> None:
    """DataProblem when the inputs are unknown, a range does not fit its dtype, or the data is too big."""
    decls = synthetic_inputs(spec, model)
    for i, decl in enumerate(decls):
        _int_range(decl, f"data.inputs[{i}]")
    row_bytes = sum(math.prod(d.shape) * np.dtype(d.dtype).itemsize for d in decls)
    rows = spec.examples + (spec.calibration or 0)
    total = rows * row_bytes
    if total > MAX_SYNTHETIC_BYTES:
        raise DataProblem(
            "data.examples",
            f"at most {MAX_SYNTHETIC_BYTES:,} bytes of generated data; {rows} examples of "
            f"{row_bytes:,} bytes take {total:,}",
        )


def synthetic_parts(spec: SyntheticSpec, model: ModelSpec) -> dict[str, Part]:
    check_synthetic(spec, model)
    decls = synthetic_inputs(spec, model)
    record: dict[str, Any] = {"generated": [_describe(d) for d in decls]}
    counts = {"test": spec.examples, "calibration": spec.calibration}
    parts = {}
    for stream, (name, count) in enumerate(counts.items()):
        if count:
            rng = np.random.default_rng([spec.seed, stream])
            arrays = {d.name: _generate(d, count, rng) for d in decls}
            parts[name] = Part.from_arrays(
                arrays,
                None,
                record=record,
                label_key="data.kind",
                input_key=lambda _: "data.inputs",
                where="synthetic",
            )
    return parts


def _generate(decl: SyntheticInput, count: int, rng: np.random.Generator) -> np.ndarray:
    shape = (count, *decl.shape)
    dtype = np.dtype(decl.dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(bool)
    if dtype.kind == "f":
        high = decl.low + 1.0 if decl.high is None else decl.high
        return rng.uniform(decl.low, high, size=shape).astype(dtype)
    low, high = _int_range(decl, "data.inputs")
    return rng.integers(low, high, size=shape, dtype=np.int64).astype(dtype)


def _int_range(decl: SyntheticInput, key: str) -> tuple[int, int]:
    """[low, high) in whole numbers within the dtype's range; DataProblem otherwise."""
    dtype = np.dtype(decl.dtype)
    if dtype.kind not in "iu":
        return 0, 0
    low = math.ceil(decl.low)
    high = low + DEFAULT_INT_SPAN if decl.high is None else math.ceil(decl.high)
    info = np.iinfo(dtype)
    if high <= low:
        raise DataProblem(
            f"{key}.high", f"a range holding a whole number for {decl.dtype}; [{decl.low:g}, {decl.high:g})"
        )
    if low < info.min or high - 1 > info.max:
        raise DataProblem(
            f"{key}.low", f"values within {decl.dtype}'s {info.min}..{info.max}; [{low}, {high})"
        )
    return low, high


def _describe(decl: SyntheticInput) -> dict[str, Any]:
    dtype = np.dtype(decl.dtype)
    if dtype.kind == "b":
        return {"name": decl.name, "values": "true/false"}
    if dtype.kind == "f":
        return {
            "name": decl.name,
            "low": decl.low,
            "high": decl.low + 1.0 if decl.high is None else decl.high,
        }
    low, high = _int_range(decl, "data.inputs")
    return {"name": decl.name, "low": low, "high": high}
