"""tf.ptq: TFLite converter post-training quantization of a tf_keras model or a plain SavedModel.

- `dynamic`: weights of the large ops stored as int8, activations stay float (the converter leaves
  tensors under 1024 elements, e.g. small conv filters, in float32).
- `float16`: weights stored as float16, dequantized to float32 when the model loads.
- `int8`: full integer: weights and activations int8, activation ranges calibrated on
  `calibration_samples` examples of the data's calibration split (else its train split), fed in
  the model's own input names and dtypes, never random noise; `io` chooses float32, int8 or uint8
  tensors for the float inputs and the output (uint8: the raw-pixel image API; the scale and zero
  point clients convert with are in the report and the artifact). Integer inputs (token ids, uint8
  pixels) stay as they are.

A user's SavedModel without Keras metadata is converted from its folder and serving signature
(`TFLiteConverter.from_saved_model`), so the TFLite file keeps its input and output names. The
report lists the tensor types found in the converted flatbuffer, so "int8" is checked, not assumed.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from harness.compression.base import Recipe, RecipeContext, StepReport
from harness.compression.params import TfPtqParams
from harness.compression.tensorflow.export import serving_module
from harness.compression.tensorflow.model_io import (
    calibration_sample,
    first_line,
    model_inputs,
    representative_dataset,
)
from harness.compression.tensorflow.runner import GenericSavedModel, TfliteRunner
from harness.compression.tensorflow.stats import require_keras_model, tflite_stats
from harness.compression.tensorflow.tf_import import import_tf
from harness.compression.tensorflow.tflite_model import TFLiteModel
from harness.data.dataset import Dataset
from harness.data.tensors import Signature, TensorSpec
from harness.errors import RunError
from harness.serving.quantized_io import WireQuantization


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
        converter, inputs = tflite_converter(model, self.name, context.data, context.signature)
        rows, split = 0, ""
        converter.optimizations = [tf.lite.Optimize.DEFAULT]  # every mode quantizes something
        if mode == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if mode == "int8":
            sample, split = calibration_sample(
                context.data, self.params.calibration_samples, context.seed, self.name
            )
            rows = len(sample)
            converter.representative_dataset = representative_dataset(sample, inputs)
            # only int8 builtin kernels: conversion fails rather than silently keeping a float op
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if io != "float":  # int8 / uint8: the float inputs and the scores cross the wire quantized
                converter.inference_input_type = converter.inference_output_type = tf.as_dtype(io)
        try:
            with calibrator_warnings():
                content = bytes(converter.convert())
        except Exception as exc:
            raise RunError(f"{self.name}: TFLite conversion ({mode}) failed: {first_line(exc)}") from exc
        seconds = time.perf_counter() - start

        stats, contents = tflite_stats(content)
        converted = TfliteRunner(content)  # the file's own input/output types, not what was asked for
        io_dtype = converted.input_dtype
        details: dict[str, Any] = {
            "input_dtypes": converted.input_dtypes,
            "output_dtype": converted.output_dtype,
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
            details.update(calibration_examples=rows, calibration_rows=rows, calibration_split=split)
        tflite = TFLiteModel(
            content=content,
            quantization=mode,
            input_dtype=io_dtype,
            output_dtype=converted.output_dtype,
            details=details,
        )
        kernels = ", ".join(f"{k}: {v}" for k, v in sorted(_counts(contents.kernel_dtypes()).items()))
        io_text = ", ".join(f"{n} {d}" for n, d in converted.input_dtypes.items())
        notes = [
            f"TFLite {mode} quantization, inputs {io_text}, output {converted.output_dtype}; "
            f"kernels {kernels or 'none found'}"
        ]
        if mode == "int8":
            notes.append(
                f"activation ranges calibrated on a representative dataset of {rows} real examples of "
                f"the {split} split"
            )
        quantized_io = converted.quantization
        if quantized_io:
            details.update(quantized_io.as_extra())
            notes.append(f"clients quantize and dequantize with {_describe_io(quantized_io)}")
        return tflite, StepReport(
            recipe=self.name,
            params=self.params.model_dump(),
            seconds=seconds,
            sparsity=stats["sparsity"],
            sparsity_all_params=stats["sparsity_all_params"],
            notes=notes,
            details=details,
        )


def tflite_converter(
    model: Any, recipe: str, data: Dataset, signature: Signature | None = None
) -> tuple[Any, tuple[TensorSpec, ...]]:
    """A TFLiteConverter and the inputs its representative data must carry: for a plain SavedModel
    its folder and serving signature as given; for a Keras model the harness's serving function
    (one concrete function converts to one signature, serving_default: named inputs -> scores)."""
    tf, _ = import_tf()
    if isinstance(model, GenericSavedModel):
        converter = tf.lite.TFLiteConverter.from_saved_model(
            str(model.path), signature_keys=[model.signature.key]
        )
        return converter, model.signature.inputs
    keras_model = require_keras_model(model, recipe)
    inputs = model_inputs(keras_model, data, signature.inputs if signature is not None else None)
    module, concrete = serving_module(keras_model, inputs)
    return tf.lite.TFLiteConverter.from_concrete_functions([concrete], module), inputs


@contextmanager
def calibrator_warnings() -> Iterator[None]:
    """Silence the deprecation warning TF's own calibrator triggers: full-integer conversion runs
    the representative data through tf.lite.Interpreter inside the converter, which the harness
    cannot choose (it runs models with ai_edge_litert everywhere else)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated", category=UserWarning
        )
        yield


def _describe_io(quantized: WireQuantization) -> str:
    """'input images uint8 (scale 0.0039, zero point 0), output scores uint8 (...)'."""
    parts = [
        f"{kind} {name} {q.dtype} (scale {q.scale:.4g}, zero point {q.zero_point})"
        for kind, tensors in (("input", quantized.inputs), ("output", quantized.outputs))
        for name, q in sorted(tensors.items())
    ]
    return ", ".join(parts)


def _counts(kernel_dtypes: dict[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for dtype in kernel_dtypes.values():
        out[dtype] = out.get(dtype, 0) + 1
    return out
