"""Write TensorFlow models in the formats servers load: a SavedModel folder or a `.tflite` file.

Every SavedModel the harness writes has one `serving_default` signature taking a float32
[None, 64] tensor named `inputs` and returning a float32 [None, 10] tensor named `scores`
(logits for the built-in models), so TF Serving requests and the in-process runner look the same for every
variant. It is saved from a small tf.Module that tracks only the model's variables and that
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
from harness.compression.tensorflow.runner import SavedModelSignature
from harness.compression.tensorflow.tf_import import import_tf
from harness.compression.tensorflow.tflite_model import TFLiteModel
from harness.errors import RunError

SERVING_SIGNATURE = "serving_default"
INPUT_NAME = "inputs"
OUTPUT_NAME = "scores"
SAVEDMODEL_DIR = "savedmodel"
TFLITE_FILE = "model.tflite"


def serving_module(model: Any, input_dim: int = 64) -> Any:
    """A tf.Module with the model's variables and a `serve` tf.function (inputs -> {"scores"}).

    Also what the TFLite converter converts, so TFLite files carry the same signature names.
    """
    tf, _ = import_tf()

    @tf.function(input_signature=[tf.TensorSpec([None, input_dim], tf.float32, name=INPUT_NAME)])
    def serve(inputs: Any) -> dict[str, Any]:
        return {OUTPUT_NAME: tf.cast(model(inputs, training=False), tf.float32)}

    module = tf.Module(name="digits_serving")
    module.model_variables = list(model.variables)  # tracked, so the checkpoint holds them
    module.serve = serve
    return module


def export_savedmodel(
    model: Any,
    out_dir: Path,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    extra: dict[str, Any] | None = None,
) -> ServedArtifact:
    """Save a tf_keras model as `<out_dir>/savedmodel/` with the serving_default signature above."""
    tf, keras = import_tf()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / SAVEDMODEL_DIR
    module = serving_module(model, input_dim=int(input_shape[0]))
    # written next to the target and renamed in, so a failed save never leaves half a folder
    staging = Path(tempfile.mkdtemp(prefix=".savedmodel-", dir=out_dir))
    try:
        concrete = module.serve.get_concrete_function()
        tf.saved_model.save(module, str(staging), signatures={SERVING_SIGNATURE: concrete})
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except Exception as exc:
        shutil.rmtree(staging, ignore_errors=True)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunError(f"saving the TensorFlow model as a SavedModel failed: {first}") from exc
    info = {
        "tf_version": tf.__version__,
        "tf_keras_version": keras.__version__,
        "signature": SERVING_SIGNATURE,
        "signatures": [SERVING_SIGNATURE],
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "input_dtype": "float32",
        "output_dtype": "float32",
        "quantization": "none",
        **(extra or {}),
    }
    return ServedArtifact(
        path=target,
        framework="tensorflow",
        format="savedmodel",
        input_shape=tuple(input_shape),
        num_classes=num_classes,
        extra=info,
    )


def export_tflite(
    tflite: TFLiteModel, out_dir: Path, *, input_shape: tuple[int, ...], num_classes: int
) -> ServedArtifact:
    """Write the TFLite bytes to `<out_dir>/model.tflite`."""
    tf, _ = import_tf()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = atomic_write_bytes(out_dir / TFLITE_FILE, tflite.content)
    signatures = tflite_signatures(tflite.content)
    names = signatures.get(SERVING_SIGNATURE, {"inputs": [None], "outputs": [None]})
    extra = {
        "tf_version": tf.__version__,
        "signature": SERVING_SIGNATURE if SERVING_SIGNATURE in signatures else None,
        "signatures": sorted(signatures),
        "input_name": names["inputs"][0] if names["inputs"] else None,
        "output_name": names["outputs"][0] if names["outputs"] else None,
        "input_dtype": tflite.input_dtype,
        "output_dtype": tflite.output_dtype,
        "quantization": tflite.quantization,
    }
    return ServedArtifact(
        path=path,
        framework="tensorflow",
        format="tflite",
        input_shape=tuple(input_shape),
        num_classes=num_classes,
        extra=extra,
    )


def copy_user_savedmodel(
    source: Path, out_dir: Path, *, input_shape: tuple[int, ...], num_classes: int, keras: bool
) -> ServedArtifact:
    """Serve a user's SavedModel folder exactly as given (copied to `<out_dir>/savedmodel/`)."""
    tf, _ = import_tf()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / SAVEDMODEL_DIR
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    signature = SavedModelSignature.load(target)
    extra = {
        "tf_version": tf.__version__,
        "source": str(source),
        "keras_savedmodel": keras,
        "signature": signature.key,
        "signatures": signature.all_keys,
        "input_name": signature.input_name,
        "output_name": signature.output_name,
        "input_dtype": signature.input_dtype,
        "output_dtype": signature.output_dtype,
        "quantization": "none",
    }
    return ServedArtifact(
        path=target,
        framework="tensorflow",
        format="savedmodel",
        input_shape=tuple(input_shape),
        num_classes=num_classes,
        extra=extra,
    )


def tflite_signatures(content: bytes) -> dict[str, dict[str, list[str]]]:
    """signature key -> {"inputs": [...], "outputs": [...]} of a TFLite flatbuffer."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        signatures = Interpreter(model_content=content).get_signature_list()
    except ValueError as exc:
        raise RunError(f"the TFLite model cannot be loaded: {exc}") from exc
    return {
        key: {"inputs": list(v["inputs"]), "outputs": list(v["outputs"])} for key, v in signatures.items()
    }
