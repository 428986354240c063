"""How TensorFlow models are fed and read: named input specs, batches cast to them, outputs as rows.

Every in-memory TF variant (tf_keras model, user SavedModel, TFLite bytes) and every served file
takes a batch (input name -> array) and returns one float32 (n, width) array; the helpers here
make that true whatever the model records: a one-input model takes a one-input batch under any
name, arrays are cast to the model's dtypes, a regression model's (n,) output becomes (n, 1).
Calibration and representative data are drawn from the data's calibration split here too, so
tf.ptq and tf.qat sample the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from harness.compression.tensorflow.tf_import import import_tf
from harness.data.dataset import Dataset, Split
from harness.data.tensors import DTYPES, Batch, TensorSpec, batch_len, check_batch
from harness.errors import UserError


def spec_from_shape(name: str, shape: Sequence[int | None], dtype: str, where: str) -> TensorSpec:
    """A TensorSpec from a batched shape ([None, 8, 8, 1]) and a dtype name; -1 for unknown dims.
    UserError for a dtype requests cannot carry (string, complex) or a scalar input."""
    if dtype not in DTYPES:
        raise UserError(f"{where}: input {name!r} is {dtype}; the harness feeds only {', '.join(DTYPES)}")
    if len(shape) < 1:
        raise UserError(f"{where}: input {name!r} is a scalar; expected a batch dimension first")
    return TensorSpec(name, tuple(-1 if d is None else int(d) for d in shape[1:]), dtype)


def keras_input_specs(model: Any) -> tuple[TensorSpec, ...] | None:
    """The inputs a tf_keras model records (names, dtypes, shapes), in call order; None when it
    records none (a subclassed model that was never built on an Input)."""
    inputs = getattr(model, "inputs", None)
    if not inputs:
        return None
    names = keras_input_names(model)
    where = f"the tf_keras model {getattr(model, 'name', '')!r}"
    return tuple(
        spec_from_shape(name, tensor.shape.as_list(), tensor.dtype.name, where)
        for name, tensor in zip(names, inputs, strict=True)
    )


def keras_input_names(model: Any) -> list[str]:
    """Input layer names in call order: what a functional model's dict inputs and the SavedModel
    tf_keras writes are keyed by (`model.inputs[i].name` can carry a ':0' suffix, these do not)."""
    names = getattr(model, "input_names", None)
    if names:
        return [str(n) for n in names]
    return [str(t.name).split(":")[0] for t in model.inputs]


def feed(batch: Batch | np.ndarray, inputs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
    """`batch` keyed by the model's input names and cast to their dtypes; ValueError naming what the
    model expects otherwise. A one-input model takes a one-entry batch whatever its key (the data
    may call the input something else) or a bare array; a single example gets a batch dimension."""
    if not isinstance(batch, Mapping):
        batch = {inputs[0].name: batch} if len(inputs) == 1 else batch
    if not isinstance(batch, Mapping):
        raise ValueError(f"expected named inputs {_describe(inputs)}, got one array")
    if len(inputs) == 1 and len(batch) == 1 and inputs[0].name not in batch:
        batch = {inputs[0].name: next(iter(batch.values()))}
    out: dict[str, np.ndarray] = {}
    for spec in inputs:
        if spec.name not in batch:
            raise ValueError(f"missing input {spec.name!r}; the model expects {_describe(inputs)}")
        array = np.asarray(batch[spec.name])
        if array.ndim == len(spec.shape) and _fits(array.shape, spec.shape):
            array = array[np.newaxis]
        out[spec.name] = np.ascontiguousarray(array, dtype=np.dtype(spec.dtype))
    # a recorded -1 (dynamic) dimension takes whatever size the batch has
    concrete = [TensorSpec(s.name, _concrete(s.shape, out[s.name].shape[1:]), s.dtype) for s in inputs]
    check_batch(out, concrete)
    return out


def rows(outputs: Any) -> np.ndarray:
    """A model's output as float32 (n, width): a regression model's (n,) becomes (n, 1)."""
    array = np.asarray(outputs, dtype=np.float32)
    if array.ndim == 1:
        array = array[:, np.newaxis]
    if array.ndim != 2:
        raise ValueError(f"the model returns shape {list(array.shape)}; expected one row per example")
    return array


def keras_outputs(model: Any, batch: Batch | np.ndarray, inputs: Sequence[TensorSpec]) -> np.ndarray:
    """Outputs of a tf_keras model by a direct call (model.predict costs ~50 ms per call)."""
    fed = feed(batch, inputs)
    return rows(model(keras_args(model, fed), training=False))


def keras_args(model: Any, fed: Mapping[str, np.ndarray]) -> Any:
    """What a tf_keras model is called with: the array of a one-input model, else the arrays in the
    model's input order (a subclassed model without recorded inputs gets the dict)."""
    if len(fed) == 1:
        return next(iter(fed.values()))
    if getattr(model, "inputs", None):
        return [fed[name] for name in keras_input_names(model)]
    return dict(fed)


def model_inputs(
    model: Any, data: Dataset, settled: Sequence[TensorSpec] | None = None
) -> tuple[TensorSpec, ...]:
    """The inputs of a tf_keras model as it records them (dynamic sizes from the data), else the
    base model's settled signature inputs when known, else those of the data."""
    recorded = keras_input_specs(model)
    if recorded is None:
        return tuple(settled or data.inputs)
    return fill_dynamic(recorded, data)


def fill_dynamic(inputs: Sequence[TensorSpec], data: Dataset) -> tuple[TensorSpec, ...]:
    """`inputs` with each -1 (dynamic) dimension replaced by the data's size for that input."""
    return tuple(_fill(spec, data) for spec in inputs)


def tf_input_signature(inputs: Sequence[TensorSpec]) -> dict[str, Any]:
    """tf.TensorSpec per input name, batch dimension and dynamic dimensions as None."""
    tf, _ = import_tf()
    return {
        spec.name: tf.TensorSpec(
            [None, *(None if d < 0 else d for d in spec.shape)], tf.as_dtype(spec.dtype), name=spec.name
        )
        for spec in inputs
    }


def calibration_sample(data: Dataset, count: int, seed: int, recipe: str) -> tuple[Split, str]:
    """Up to `count` examples of the calibration split (else the training split), drawn without
    replacement with `seed` and kept in data order, and which split they came from. UserError
    when the data has neither: calibrating on random noise would report a meaningless model."""
    split = data.calibration_split()
    if split is None:
        raise UserError(
            f"{recipe} calibrates on example inputs, but the data has no calibration or train split; "
            "add one to the data: block"
        )
    which = "calibration" if data.calibration is not None else "train"
    order = np.random.default_rng(seed).permutation(len(split))[: min(count, len(split))]
    return split.take(np.sort(order)), which


def representative_dataset(
    split: Split, inputs: Sequence[TensorSpec]
) -> Callable[[], Iterator[dict[str, np.ndarray]]]:
    """The TFLite converter's representative dataset: one example per yield, keyed by the model's
    signature input names in its dtypes (the converter maps dict samples to signature inputs)."""
    fed = feed(split.inputs, inputs)
    n = batch_len(fed)

    def examples() -> Iterator[dict[str, np.ndarray]]:
        for i in range(n):
            yield {name: array[i : i + 1] for name, array in fed.items()}

    return examples


def first_line(err: BaseException) -> str:
    """The first line of an exception message (TensorFlow, tfmot and the converter write paragraphs)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _describe(inputs: Sequence[TensorSpec]) -> str:
    return ", ".join(spec.describe() for spec in inputs)


def _fits(shape: tuple[int, ...], wanted: tuple[int, ...]) -> bool:
    return all(w < 0 or w == s for w, s in zip(wanted, shape, strict=True))


def _concrete(wanted: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(wanted) != len(shape):
        return wanted
    return tuple(s if w < 0 else w for w, s in zip(wanted, shape, strict=True))


def _fill(spec: TensorSpec, data: Dataset) -> TensorSpec:
    if all(d >= 0 for d in spec.shape):
        return spec
    for other in data.inputs:
        if other.name == spec.name or len(data.inputs) == 1:
            return TensorSpec(spec.name, other.shape, spec.dtype)
    return spec
