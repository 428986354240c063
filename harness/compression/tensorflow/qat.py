"""tf.qat: quantization-aware training with tfmot, converted to an int8 TFLite model.

`quantize_model` inserts fake-quantization around the layers of a private clone so fine-tuning
learns weights (and activation ranges) that survive int8 rounding; the TFLite converter then
turns the fake-quantized model into real int8 kernels. The result is a `TFLiteModel` (bytes), so
tf.qat must be the last step of a variant. With io "int8" or "uint8" the model's input and output
tensors are integers as well (clients quantize with the input tensor's scale and zero point, which
the artifact records, and dequantize the scores).

After a tf.prune step (kernels with many exact zeros) the model is quantized with tfmot's
pruning-preserving scheme, so fine-tuning does not regrow the pruned weights.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, ClassVar

from harness.compression.base import Recipe, RecipeContext, StepReport
from harness.compression.params import TfQatParams
from harness.compression.tensorflow.finetune import (
    SPARSE_INPUT,
    clone_with_weights,
    fine_tune,
    kernel_layers,
    kernel_zero_fraction,
    quality_details,
    quality_of,
    quality_on_test,
    require_context,
    seeded,
)
from harness.compression.tensorflow.model_io import (
    calibration_sample,
    feed,
    first_line,
    representative_dataset,
)
from harness.compression.tensorflow.ptq import calibrator_warnings, tflite_converter
from harness.compression.tensorflow.runner import TfliteRunner
from harness.compression.tensorflow.stats import require_keras_model, tflite_stats
from harness.compression.tensorflow.tf_import import import_tf, import_tfmot
from harness.compression.tensorflow.tflite_model import TFLiteModel
from harness.data.tensors import TensorSpec
from harness.errors import RunError, UserError

# Examples the converter sees when it needs activation statistics (int8 I/O), drawn from the
# calibration split. The QAT model already carries learned ranges, so a modest sample is enough.
REPRESENTATIVE_SAMPLES = 200


class TfQatRecipe(Recipe):
    """Fine-tune with fake int8 quantization, then convert to an int8 TFLite flatbuffer."""

    name: ClassVar[str] = "tf.qat"
    framework: ClassVar[str] = "tensorflow"
    params_model = TfQatParams
    params: TfQatParams

    def apply(self, model: Any, context: RecipeContext | None = None) -> tuple[Any, StepReport]:
        context = require_context(context, self.name)
        model = require_keras_model(model, self.name)
        tfmot = import_tfmot()
        start = time.perf_counter()
        data, p = context.data, self.params
        before = quality_on_test(model, data)

        work = clone_with_weights(model, self.name)
        sparsity_before = kernel_zero_fraction(kernel_layers(work))
        preserve = sparsity_before >= SPARSE_INPUT
        try:
            with seeded(context.seed):
                if preserve:  # pruning-preserving QAT: fine-tuning keeps the zeros of a tf.prune step
                    annotated = tfmot.quantization.keras.quantize_annotate_model(work)
                    scheme = tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
                    quantized = tfmot.quantization.keras.quantize_apply(annotated, scheme)
                else:
                    quantized = tfmot.quantization.keras.quantize_model(work)
        except (RuntimeError, ValueError) as err:  # tfmot's words for unsupported layers or models
            raise UserError(
                f"{self.name} cannot quantize this model: {first_line(err)}; tf.qat handles Dense, "
                "convolution (also depthwise), batch norm, ReLU/ReLU6, Add, padding, pooling, Reshape "
                "and Flatten layers (use tf.ptq for other models)"
            ) from None
        wrapper = tfmot.quantization.keras.QuantizeWrapper
        wrapped = [layer.name for layer in quantized.layers if isinstance(layer, wrapper)]
        fit_seconds = fine_tune(quantized, data, p, context.seed)
        after = quality_on_test(quantized, data)

        t0 = time.perf_counter()
        content, inputs = convert_to_tflite(quantized, context, p.io)
        convert_seconds = time.perf_counter() - t0
        stats, contents = tflite_stats(content)
        scorer = TfliteRunner(content)
        tflite_quality = None
        if data.test.labels is not None:
            outputs = scorer.outputs(feed(data.test.inputs, inputs))
            tflite_quality = quality_of(outputs, data.test.labels, data)
        seconds = time.perf_counter() - start

        int8_tensors, tensors = contents.tensor_dtypes.get("INT8", 0), sum(contents.tensor_dtypes.values())
        tflite_details = {
            "tflite_bytes": len(content),
            "tensor_dtypes": contents.tensor_dtypes,
            "kernel_dtypes": contents.kernel_dtypes(),
            "int8_tensors": int8_tensors,
            "input_dtype": scorer.input_dtype,
            "input_dtypes": scorer.input_dtypes,
            "output_dtype": scorer.output_dtype,
            **scorer.quantization.as_extra(),
        }
        result = TFLiteModel(
            content=content,
            quantization="qat-int8",
            input_dtype=scorer.input_dtype,
            output_dtype=scorer.output_dtype,
            details=tflite_details,
        )
        note = (
            f"quantization-aware fine-tuning of {len(wrapped)} layers for {p.fine_tune_epochs} epochs, "
            f"converted to TFLite with {int8_tensors} of {tensors} tensors int8 and "
            f"{scorer.input_dtype}/{scorer.output_dtype} I/O ({len(content)} bytes)"
        )
        if before is not None and after is not None and tflite_quality is not None:
            note += (
                f"; test {before[0]} {before[1]:.4f} -> {after[1]:.4f} (Keras, fake-quant) -> "
                f"{tflite_quality[1]:.4f} (TFLite)"
            )
        if preserve:
            note += f"; pruning-preserving QAT kept the input's zeros ({stats['sparsity']:.4f} of kernels)"
        return result, StepReport(
            recipe=self.name,
            params=p.model_dump(),
            seconds=seconds,
            sparsity=stats["sparsity"],
            sparsity_all_params=stats["sparsity_all_params"],
            notes=[note],
            details={
                **tflite_details,
                "quantized_layers": wrapped,
                "preserve_sparsity": preserve,
                "sparsity_before": sparsity_before,
                **quality_details(before, after),
                **({f"{tflite_quality[0]}_tflite": tflite_quality[1]} if tflite_quality else {}),
                "fine_tune_seconds": round(fit_seconds, 3),
                "convert_seconds": round(convert_seconds, 3),
            },
        )


def convert_to_tflite(
    quantized: Any, context: RecipeContext, io: str
) -> tuple[bytes, tuple[TensorSpec, ...]]:
    """TFLite bytes of a quantize_model'ed Keras model (int8 kernels, float or int8 I/O) and the
    inputs the file takes.

    Converted through the same serving function as tf.ptq and the SavedModel export, so the file's
    signature is serving_default: named inputs -> scores like every other TensorFlow artifact.
    """
    tf, _ = import_tf()
    data = context.data
    converter, inputs = tflite_converter(quantized, "tf.qat", data, context.signature)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if io != "float":  # int8 / uint8 I/O
        sample, _ = calibration_sample(data, REPRESENTATIVE_SAMPLES, context.seed, f"tf.qat with io {io}")
        converter.representative_dataset = representative_dataset(sample, inputs)
        converter.inference_input_type = converter.inference_output_type = tf.as_dtype(io)
    try:
        with calibrator_warnings(), warnings.catch_warnings():
            # Emitted for every QAT conversion: the fake-quant nodes already carry the input
            # ranges that this warning says are missing, so it tells us nothing.
            warnings.filterwarnings(
                "ignore", message="Statistics for quantized inputs were expected", category=UserWarning
            )
            return bytes(converter.convert()), inputs
    except Exception as err:  # the converter raises ConverterError and assorted internals
        raise RunError(f"tf.qat: TFLite conversion failed: {first_line(err)}") from err
