"""tf.ptq: TFLite converter post-training quantization of a tf_keras model or a plain SavedModel.

- `dynamic`: weights of the large ops stored as int8, activations stay float (the converter leaves
  tensors under 1024 elements, e.g. small conv filters, in float32).
- `float16`: weights stored as float16, dequantized to float32 when the model loads.
- `int8`: full integer: weights and activations int8, activation ranges calibrated on
  `calibration_samples` training rows; `io` chooses float32 or int8 input/output tensors.

The report lists the tensor types found in the converted flatbuffer, so "int8" is checked, not
assumed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from harness.compression.base import Recipe, RecipeContext, StepReport
from harness.compression.params import TfPtqParams
from harness.compression.tensorflow.export import serving_module
from harness.compression.tensorflow.runner import GenericSavedModel
from harness.compression.tensorflow.stats import require_keras_model, tflite_stats
from harness.compression.tensorflow.tf_import import import_tf
from harness.compression.tensorflow.tflite_model import TFLiteModel
from harness.errors import RunError


class TfPtqRecipe(Recipe):
    """Convert to TFLite with post-training quantization (`dynamic`, `float16` or full `int8`)."""

    name: ClassVar[str] = "tf.ptq"
    framework: ClassVar[str] = "tensorflow"
    params_model = TfPtqParams
    params: TfPtqParams

    def apply(self, model: Any, context: RecipeContext | None = None) -> tuple[Any, StepReport]:
        if context is None:
            raise RunError(f"{self.name} needs a RecipeContext (training data for calibration)")
        mode, io = self.params.mode, self.params.io  # io int8 with another mode: refused by TfPtqParams

        tf, _ = import_tf()
        start = time.perf_counter()
        converter = tflite_converter(model, self.name, int(context.data.input_shape[0]))
        rows = 0
        converter.optimizations = [tf.lite.Optimize.DEFAULT]  # every mode quantizes something
        if mode == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if mode == "int8":
            calibration = _calibration_rows(context, self.params.calibration_samples)
            rows = len(calibration)
            converter.representative_dataset = _representative(calibration)
            # only int8 builtin kernels: conversion fails rather than silently keeping a float op
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if io == "int8":
                converter.inference_input_type = tf.int8
                converter.inference_output_type = tf.int8
        try:
            content = bytes(converter.convert())
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RunError(f"{self.name}: TFLite conversion ({mode}) failed: {first}") from exc
        seconds = time.perf_counter() - start

        stats, contents = tflite_stats(content)
        io_dtype = "int8" if mode == "int8" and io == "int8" else "float32"
        details: dict[str, Any] = {
            "tflite_bytes": len(content),
            "tensor_dtypes": contents.tensor_dtypes,
            "constant_dtypes": contents.constant_dtypes,
            "kernel_dtypes": contents.kernel_dtypes(),
            "int8_tensors": contents.tensor_dtypes.get("INT8", 0),
            "float16_tensors": contents.tensor_dtypes.get("FLOAT16", 0),
            "float32_tensors": contents.tensor_dtypes.get("FLOAT32", 0),
            "operators": contents.operators,
            "unique_weights_per_kernel": stats["unique_weights_per_kernel"],
        }
        if mode == "int8":
            details["calibration_rows"] = rows
        tflite = TFLiteModel(
            content=content,
            quantization=mode,
            input_dtype=io_dtype,
            output_dtype=io_dtype,
            details=details,
        )
        kernels = ", ".join(f"{k}: {v}" for k, v in sorted(_counts(contents.kernel_dtypes()).items()))
        notes = [f"TFLite {mode} quantization, {io_dtype} input/output; kernels {kernels or 'none found'}"]
        if mode == "int8":
            notes.append(f"activation ranges calibrated on {rows} training rows")
        return tflite, StepReport(
            recipe=self.name,
            params=self.params.model_dump(),
            seconds=seconds,
            sparsity=stats["sparsity"],
            sparsity_all_params=stats["sparsity_all_params"],
            notes=notes,
            details=details,
        )


def tflite_converter(model: Any, recipe: str, input_dim: int) -> Any:
    """A TFLiteConverter for a Keras model (through the harness's serving function, so the TFLite
    signature is serving_default: inputs -> scores) or for a plain SavedModel as given."""
    tf, _ = import_tf()
    if isinstance(model, GenericSavedModel):
        return tf.lite.TFLiteConverter.from_saved_model(str(model.path), signature_keys=[model.signature.key])
    keras_model = require_keras_model(model, recipe)
    module = serving_module(keras_model, input_dim=input_dim)
    concrete = module.serve.get_concrete_function()
    # one concrete function converts to one signature, named serving_default
    return tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)


def _calibration_rows(context: RecipeContext, samples: int) -> np.ndarray:
    """`samples` training rows drawn without replacement with the scenario's seed (all if fewer)."""
    x = context.data.x_train
    count = min(samples, len(x))
    order = np.random.default_rng(context.seed).permutation(len(x))[:count]
    return np.ascontiguousarray(x[np.sort(order)], dtype=np.float32)


def _representative(rows: np.ndarray) -> Any:
    def dataset() -> Iterator[list[np.ndarray]]:
        for row in rows:
            yield [row[None]]

    return dataset


def _counts(kernel_dtypes: dict[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for dtype in kernel_dtypes.values():
        out[dtype] = out.get(dtype, 0) + 1
    return out
