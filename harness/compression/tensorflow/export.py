"""Write TensorFlow models in the formats servers load: a SavedModel folder or a `.tflite` file.

Every SavedModel the harness writes has one `serving_default` signature taking one tensor per
model input, named as in the model's signature (e.g. `pixels` uint8 [None, 8, 8, 1], or
`input_ids` int64 and `features` float32), and returning one float32 tensor named `scores`. The
output name is fixed rather than taken from the model: after tf.distill or a conversion the
output is no longer the user's layer, and one name for every harness export keeps requests and
replies alike across variants; a user's SavedModel served as given keeps its own names. Both
are recorded in the artifact's `extra` (`input_names`, `output_name`), which servers and clients read,
and for a TFLite file with integer I/O, each integer tensor's scale and zero point
(`input_quantization`, `output_quantization`), with which clients convert their float data.

The SavedModel is saved from a small tf.Module that tracks only the model's variables and that
function: tf.saved_model.save on the Keras model itself would also trace every layer's call for
Keras metadata, which takes longer and which nothing serving the file needs.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from harness.artifacts import ServedArtifact
from harness.atomic import atomic_write_bytes
from harness.compression.tensorflow.model_io import first_line, keras_input_names, tf_input_signature
from harness.compression.tensorflow.runner import SERVING_SIGNATURE, SavedModelSignature, TfliteRunner
from harness.compression.tensorflow.tf_import import import_tf
from harness.compression.tensorflow.tflite_model import TFLiteModel
from harness.data.tensors import Signature, TensorSpec
from harness.errors import RunError

OUTPUT_NAME = "scores"
SAVEDMODEL_DIR = "savedmodel"
TFLITE_FILE = "model.tflite"


def serving_module(model: Any, inputs: tuple[TensorSpec, ...]) -> tuple[Any, Any]:
    """(module, concrete function): a tf.Module with the model's variables and a `serve`
    tf.function taking one keyword argument per input (the signature's input names) and returning
    {"scores": float32 rows}, traced for `inputs`.

    Also what the TFLite converter converts, so TFLite files carry the same signature names.
    """
    tf, _ = import_tf()
    names = [spec.name for spec in inputs]
    # the model's own input order; a subclassed model without recorded inputs takes the signature's
    order = keras_input_names(model) if getattr(model, "inputs", None) else names
    if sorted(order) != sorted(names):
        order = names  # one input under another name: passed positionally either way

    def serve(**features: Any) -> dict[str, Any]:
        args = features[names[0]] if len(names) == 1 else [features[name] for name in order]
        return {OUTPUT_NAME: tf.cast(model(args, training=False), tf.float32)}

    module = tf.Module(name="harness_serving")
    module.model_variables = list(model.variables)  # tracked, so the checkpoint holds them
    module.serve = tf.function(serve)
    return module, module.serve.get_concrete_function(**tf_input_signature(inputs))


def export_savedmodel(
    model: Any, out_dir: Path, signature: Signature, *, extra: dict[str, Any] | None = None
) -> ServedArtifact:
    """Save a tf_keras model as `<out_dir>/savedmodel/` with the serving_default signature above."""
    tf, keras = import_tf()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / SAVEDMODEL_DIR
    # written next to the target and renamed in, so a failed save never leaves half a folder
    staging = Path(tempfile.mkdtemp(prefix=".savedmodel-", dir=out_dir))
    try:
        module, concrete = serving_module(model, signature.inputs)
        tf.saved_model.save(module, str(staging), signatures={SERVING_SIGNATURE: concrete})
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except Exception as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise RunError(f"saving the TensorFlow model as a SavedModel failed: {first_line(exc)}") from exc
    info = {
        "tf_version": tf.__version__,
        "tf_keras_version": keras.__version__,
        **names_extra(
            SERVING_SIGNATURE,
            [SERVING_SIGNATURE],
            {spec.name: spec.dtype for spec in signature.inputs},
            OUTPUT_NAME,
            "float32",
        ),
        "quantization": "none",
        **(extra or {}),
    }
    return ServedArtifact(
        path=target, framework="tensorflow", format="savedmodel", signature=signature, extra=info
    )


def export_tflite(tflite: TFLiteModel, out_dir: Path, signature: Signature) -> ServedArtifact:
    """Write the TFLite bytes to `<out_dir>/model.tflite`; names and file dtypes read from the file."""
    tf, _ = import_tf()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = atomic_write_bytes(out_dir / TFLITE_FILE, tflite.content)
    runner = TfliteRunner(tflite.content)
    extra = {
        "tf_version": tf.__version__,
        **names_extra(
            runner.signature_key,
            tflite_signature_keys(tflite.content),
            runner.input_dtypes,
            runner.output_name,
            runner.output_dtype,
        ),
        "quantization": tflite.quantization,
        # scale and zero point of each integer input/output: how clients quantize their float data
        # to the file's wire dtype and read its integer scores (harness.serving.quantized_io)
        **runner.quantization.as_extra(),
    }
    return ServedArtifact(
        path=path, framework="tensorflow", format="tflite", signature=signature, extra=extra
    )


def copy_user_savedmodel(source: Path, out_dir: Path, signature: Signature, *, keras: bool) -> ServedArtifact:
    """Serve a user's SavedModel folder exactly as given (copied to `<out_dir>/savedmodel/`)."""
    tf, _ = import_tf()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / SAVEDMODEL_DIR
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    loaded = SavedModelSignature.load(target)
    extra = {
        "tf_version": tf.__version__,
        "source": str(source),
        "keras_savedmodel": keras,
        **names_extra(
            loaded.key,
            loaded.all_keys,
            {spec.name: spec.dtype for spec in loaded.inputs},
            loaded.output_name,
            loaded.output_dtype,
        ),
        "output_names": loaded.output_names,
        "quantization": "none",
    }
    return ServedArtifact(
        path=target, framework="tensorflow", format="savedmodel", signature=signature, extra=extra
    )


def names_extra(
    key: str | None, keys: list[str], input_dtypes: dict[str, str], output_name: str, output_dtype: str
) -> dict[str, Any]:
    """What a server or client needs to address the file: the signature key, its input names with
    the dtypes stored in the file (int8 for a quantized float input), the output to read. A
    one-input file also gets `input_name`/`input_dtype`, the keys single-tensor clients read."""
    names = sorted(input_dtypes)
    extra: dict[str, Any] = {
        "signature": key,
        "signatures": keys,
        "input_names": names,
        "input_dtypes": dict(sorted(input_dtypes.items())),
        "output_name": output_name,
        "output_dtype": output_dtype,
    }
    if len(names) == 1:
        extra.update(input_name=names[0], input_dtype=input_dtypes[names[0]])
    return extra


def tflite_signature_keys(content: bytes) -> list[str]:
    """The signature keys of a TFLite flatbuffer."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        return sorted(Interpreter(model_content=content).get_signature_list())
    except ValueError as exc:
        raise RunError(f"the TFLite model cannot be loaded: {exc}") from exc
