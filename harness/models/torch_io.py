"""Calling a torch model the harness's way: named numpy inputs in, one float32 (n, width) array out.

A model is called positionally in the signature's input order (`module(*tensors)`), whatever it
is: an nn.Module, a TorchScript module or the GraphModule of a torch.export program. Its output
may be one tensor, or a tuple/list/dict whose first entry is the prediction (the rest, e.g.
attention maps or auxiliary heads, is ignored); it is reshaped to one row per example.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from harness.data.tensors import Batch, TensorSpec, batch_len

# rows per call when a whole split is evaluated: bounds the activations held at once
DEFAULT_CHUNK = 1024
EXAMPLE_BATCH = 2  # a batch of 1 would let torch.export specialise the batch dimension to 1


def numpy_dtype_name(dtype: Any) -> str:
    """'float32' for torch.float32: the numpy name a TensorSpec carries."""
    return str(dtype).removeprefix("torch.")


def torch_dtype(name: str) -> Any:
    import torch

    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"no torch dtype {name!r}")
    return dtype


def ordered_arrays(batch: Batch, inputs: Sequence[TensorSpec]) -> list[np.ndarray]:
    """The batch's arrays in call order, cast to the declared dtypes. A one-input model takes a
    one-entry batch whatever its key (the data's input may carry another name than the model's)."""
    if len(inputs) == 1 and len(batch) == 1:
        arrays = [next(iter(batch.values()))]
    else:
        missing = [spec.name for spec in inputs if spec.name not in batch]
        if missing:
            expected = ", ".join(spec.describe() for spec in inputs)
            raise ValueError(f"missing input {missing[0]!r}; the model expects {expected}")
        arrays = [batch[spec.name] for spec in inputs]
    out = []
    for spec, array in zip(inputs, arrays, strict=True):
        array = np.asarray(array)
        if array.shape == spec.shape:  # a single example
            array = array[np.newaxis]
        out.append(np.ascontiguousarray(array, dtype=np.dtype(spec.dtype)))
    return out


def to_tensors(batch: Batch, inputs: Sequence[TensorSpec]) -> list[Any]:
    import torch

    # torch.tensor copies: the dataset's arrays are read-only and torch.from_numpy warns on those
    return [torch.tensor(array) for array in ordered_arrays(batch, inputs)]


def first_output(out: Any) -> Any:
    """The prediction among what a model returns: the tensor itself or the first of a tuple/dict."""
    while isinstance(out, (tuple, list, dict)):
        if not out:
            raise ValueError(f"the model returned an empty {type(out).__name__}")
        out = next(iter(out.values())) if isinstance(out, dict) else out[0]
    return out


def as_rows(out: Any, rows: int) -> np.ndarray:
    """(rows, width) float32 from the model's output; ValueError if it is not one row per example."""
    import torch

    tensor = first_output(out)
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"the model returned {type(tensor).__name__}, not a tensor")
    if tensor.ndim == 0 or tensor.shape[0] != rows:
        raise ValueError(
            f"the model returned shape {list(tensor.shape)} for a batch of {rows}; "
            "expected one row per example"
        )
    array = tensor.detach()
    if array.dtype != torch.float32:  # float64/float16/bfloat16 scores, integer values
        array = array.float()
    return np.asarray(array.numpy()).reshape(rows, -1)


def call_model(module: Any, batch: Batch, inputs: Sequence[TensorSpec]) -> np.ndarray:
    """One call of `module` on `batch`: float32 (n, width)."""
    import torch

    tensors = to_tensors(batch, inputs)
    rows = int(tensors[0].shape[0])
    with torch.inference_mode():
        out = module(*tensors)
    return as_rows(out, rows)


def model_outputs(
    module: Any, batch: Batch, inputs: Sequence[TensorSpec], chunk: int = DEFAULT_CHUNK
) -> np.ndarray:
    """`call_model` over a batch of any size, `chunk` rows per call."""
    n = batch_len(batch)
    if n <= chunk:
        return call_model(module, batch, inputs)
    parts = [
        call_model(module, {k: v[i : i + chunk] for k, v in batch.items()}, inputs)
        for i in range(0, n, chunk)
    ]
    return np.concatenate(parts)


def example_inputs(inputs: Sequence[TensorSpec], rows: int = EXAMPLE_BATCH) -> tuple[Any, ...]:
    """Zeros of each input's shape and dtype, `rows` examples: what torch.export traces with.
    Zeros are valid for integer inputs too (token id 0, offset 0), unlike random floats cast."""
    import torch

    return tuple(torch.zeros((rows, *spec.shape), dtype=torch_dtype(spec.dtype)) for spec in inputs)
