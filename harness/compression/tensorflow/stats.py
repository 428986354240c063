"""Facts about a TensorFlow model and its exported file: kernels, sparsity, unique weights, sizes,
and the tensor types inside a TFLite flatbuffer.

"Kernels" are the weight tensors of rank >= 2 (Dense and Conv kernels): what pruning zeroes and
clustering shares. The same numbers come from a Keras model in memory, from a SavedModel loaded
back (the variables its serving signature captures, so optimizer slots never count) and from a
TFLite file (the constant weight and bias inputs of its weight-bearing ops), so a recipe's report
and the served file can be compared.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.compression.tensorflow.tf_import import import_tf
from harness.compression.tensorflow.tflite_model import TFLiteModel
from harness.errors import UserError

# TFLite builtin ops whose input 1 is a weight tensor and input 2 (if any) a bias
_WEIGHT_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_3D", "BATCH_MATMUL")
_TFLITE_NUMPY = {
    "FLOAT32": np.float32,
    "FLOAT16": np.float16,
    "FLOAT64": np.float64,
    "INT8": np.int8,
    "UINT8": np.uint8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
}


@dataclass(frozen=True)
class NamedTensor:
    """One parameter tensor's values (float32, int8, float16, ...) under a readable name."""

    name: str
    values: np.ndarray

    @property
    def is_kernel(self) -> bool:
        return self.values.ndim >= 2


def is_keras_model(model: Any) -> bool:
    """True for a tf_keras model (what the tfmot recipes can wrap)."""
    _, keras = import_tf()
    return isinstance(model, keras.Model)


def require_keras_model(model: Any, recipe: str) -> Any:
    """`model` if it is a tf_keras model; UserError saying why it cannot be compressed by `recipe`."""
    if is_keras_model(model):
        return model

    if isinstance(model, TFLiteModel):
        why = "it is already a TFLite model (tf.qat / tf.ptq must be the last step)"
    elif type(model).__name__ == "GenericSavedModel":
        why = f"{model.path} is a SavedModel without Keras metadata (not saved by tf_keras): no layers"
    else:
        why = f"it is a {type(model).__name__}"
    raise UserError(
        f"{recipe} needs a tf_keras model to compress, but {why}; supply the model as a tf_keras .keras/.h5 "
        "file or a python: factory (model.source: python:pkg.module:function), use tf.ptq or tf.distill, "
        "or serve this model uncompressed (a variant without steps)"
    )


def keras_tensors(model: Any) -> list[NamedTensor]:
    """The weights of a Keras model, in layer order, named like `hidden_1/kernel`."""
    return [NamedTensor(_clean_name(w.name), np.asarray(w.numpy())) for w in model.weights]


def savedmodel_tensors(signature_fn: Any) -> list[NamedTensor]:
    """The variables a loaded SavedModel signature computes with (deduplicated, in capture order)."""
    seen: set[int] = set()
    out = []
    for var in signature_fn.variables:
        if id(var) in seen:
            continue
        seen.add(id(var))
        out.append(NamedTensor(_clean_name(var.name), np.asarray(var.numpy())))
    return out


def tensor_stats(tensors: list[NamedTensor]) -> dict[str, Any]:
    """param_count, sparsity over kernels and over everything, and unique values per kernel."""
    kernels = [t for t in tensors if t.is_kernel]
    kernel_total = sum(t.values.size for t in kernels)
    kernel_zeros = sum(int(np.count_nonzero(t.values == 0)) for t in kernels)
    all_total = sum(t.values.size for t in tensors)
    all_zeros = sum(int(np.count_nonzero(t.values == 0)) for t in tensors)
    return {
        "param_count": int(all_total),
        "sparsity": kernel_zeros / kernel_total if kernel_total else 0.0,
        "sparsity_all_params": all_zeros / all_total if all_total else 0.0,
        "per_kernel_sparsity": {
            t.name: round(float(np.mean(t.values == 0)), 6) for t in kernels if t.values.size
        },
        "unique_weights_per_kernel": {t.name: int(np.unique(t.values).size) for t in kernels},
    }


def keras_stats(model: Any) -> dict[str, Any]:
    """tensor_stats of a Keras model in memory."""
    return tensor_stats(keras_tensors(model))


@dataclass(frozen=True)
class TfliteContents:
    """What a TFLite flatbuffer holds: tensor type counts and its constant weights and biases."""

    tensor_dtypes: dict[str, int]  # every tensor of every subgraph, by type name ("INT8": 13, ...)
    constant_dtypes: dict[str, int]  # tensors backed by a constant buffer
    parameters: list[NamedTensor]  # weights (rank >= 2) and biases of the weight-bearing ops
    operators: dict[str, int]  # builtin op name -> count

    def kernel_dtypes(self) -> dict[str, str]:
        return {t.name: str(t.values.dtype) for t in self.parameters if t.is_kernel}


def read_tflite(content: bytes) -> TfliteContents:
    """Parse a TFLite flatbuffer with the schema ai_edge_litert ships (no interpreter needed)."""
    from ai_edge_litert import schema_py_generated as schema

    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.Model.GetRootAs(content, 0)
    codes = [_op_code(model.OperatorCodes(i)) for i in range(model.OperatorCodesLength())]
    dtypes: Counter[str] = Counter()
    constants: Counter[str] = Counter()
    operators: Counter[str] = Counter()
    parameters: list[NamedTensor] = []
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        const: dict[int, np.ndarray] = {}
        for t in range(graph.TensorsLength()):
            tensor = graph.Tensors(t)
            kind = type_names.get(tensor.Type(), str(tensor.Type()))
            dtypes[kind] += 1
            values = _buffer_values(content, model, tensor, kind)
            if values is not None:
                constants[kind] += 1
                const[t] = values
        producers: dict[int, tuple[str, list[int]]] = {}
        ops = []
        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            name = op_names.get(codes[op.OpcodeIndex()], "CUSTOM")
            inputs = [int(i) for i in op.InputsAsNumpy()] if op.InputsLength() else []
            operators[name] += 1
            ops.append((name, inputs))
            for out in op.OutputsAsNumpy() if op.OutputsLength() else []:
                producers[int(out)] = (name, inputs)
        taken: set[int] = set()
        for name, inputs in ops:
            if name not in _WEIGHT_OPS:
                continue
            for index in inputs[1:3]:
                # float16 models keep the weight as a float16 constant behind a DEQUANTIZE op
                source = index
                if source not in const and producers.get(source, ("", []))[0] == "DEQUANTIZE":
                    source = producers[source][1][0]
                if source < 0 or source not in const or source in taken:
                    continue
                taken.add(source)
                tensor_name = graph.Tensors(source).Name()
                label = tensor_name.decode() if isinstance(tensor_name, bytes) else str(tensor_name)
                parameters.append(NamedTensor(label, const[source]))
    return TfliteContents(dict(dtypes), dict(constants), parameters, dict(operators))


def tflite_stats(content: bytes) -> tuple[dict[str, Any], TfliteContents]:
    """tensor_stats over a TFLite file's weights and biases, plus the parsed contents."""
    contents = read_tflite(content)
    return tensor_stats(contents.parameters), contents


def path_sizes(path: Path) -> tuple[int, int]:
    """(raw bytes, gzip -9 bytes) of a file, or of a folder as the sum of its files and the gzip of
    a deterministic tar (sorted names, zeroed times and owners), so equal folders compare equal."""
    path = Path(path)
    if path.is_file():
        data = path.read_bytes()
        return len(data), len(gzip.compress(data, compresslevel=9, mtime=0))
    files = sorted(p for p in path.rglob("*") if p.is_file())
    raw = sum(p.stat().st_size for p in files)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for file in files:
            data = file.read_bytes()
            info = tarfile.TarInfo(file.relative_to(path).as_posix())
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            archive.addfile(info, io.BytesIO(data))
    return raw, len(gzip.compress(buffer.getvalue(), compresslevel=9, mtime=0))


def _clean_name(name: str) -> str:
    return name[:-2] if name.endswith(":0") else name


def _op_code(code: Any) -> int:
    # builtin codes above 127 live in BuiltinCode; DeprecatedBuiltinCode holds the small ones
    return int(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()))


def _buffer_values(content: bytes, model: Any, tensor: Any, kind: str) -> np.ndarray | None:
    buffer = model.Buffers(tensor.Buffer())
    if buffer is None or kind not in _TFLITE_NUMPY:
        return None
    if buffer.DataLength():
        raw = buffer.DataAsNumpy().tobytes()
    elif buffer.Offset() > 1:  # large models keep buffers after the flatbuffer, addressed by offset
        raw = content[buffer.Offset() : buffer.Offset() + buffer.Size()]
    else:
        return None
    values = np.frombuffer(raw, dtype=_TFLITE_NUMPY[kind])
    shape = tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
    return values.reshape(shape) if int(np.prod(shape)) == values.size else values
