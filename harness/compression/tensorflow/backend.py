"""The TensorFlow side of preparing a variant: built-in models or user files, SavedModel/TFLite
export, and measurements on the exported file.

In memory a variant is a tf_keras model (what the tfmot recipes wrap), a TFLiteModel (after
tf.qat / tf.ptq) or a GenericSavedModel (a user SavedModel not written by tf_keras: served and
PTQ-converted as given). On disk it is a SavedModel folder or a `.tflite` file.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from harness.artifacts import ServedArtifact
from harness.compression.backend import BaseModel, FrameworkBackend
from harness.compression.tensorflow.export import copy_user_savedmodel, export_savedmodel, export_tflite
from harness.compression.tensorflow.runner import (
    GenericSavedModel,
    SavedModelSignature,
    TfArtifactRunner,
    TfliteScorer,
)
from harness.compression.tensorflow.stats import (
    is_keras_model,
    path_sizes,
    require_keras_model,
    savedmodel_tensors,
    tensor_stats,
    tflite_stats,
)
from harness.compression.tensorflow.tf_import import import_tf
from harness.compression.tensorflow.tflite_model import TFLiteModel
from harness.errors import UserError
from harness.frameworks import SAVEDMODEL, TENSORFLOW
from harness.metrics.accuracy import accuracy
from harness.models.digits import DigitsSplit
from harness.models.tf_models import BUILTIN_TF_MODELS, get_reference_tf_model
from harness.scenario.schema import ModelSpec, resolve_source

_EXPECTED = (
    f"a {SAVEDMODEL.label} folder (with {SAVEDMODEL.marker}) or a tf_keras "
    f"{'/'.join(TENSORFLOW.user_suffixes)} file"
)


class TensorFlowBackend(FrameworkBackend):
    """tf_keras / TFLiteModel in memory; SavedModel (`savedmodel/`) or `model.tflite` on disk."""

    framework: ClassVar[str] = TENSORFLOW.name

    def load_base(self, model: ModelSpec, scenario_dir: Path, data: DigitsSplit) -> BaseModel:
        if model.is_builtin:
            kind = BUILTIN_TF_MODELS.get(model.source)
            if kind is None:
                known = ", ".join(sorted(BUILTIN_TF_MODELS))
                raise UserError(
                    f"model.source: unknown built-in TensorFlow model {model.source!r}; expected {known}"
                )
            trained = get_reference_tf_model(kind, data, seed=model.seed)
            return BaseModel(model=trained.model, info=trained.info())

        path = resolve_source(model.source, scenario_dir)
        loaded, fmt, is_keras = load_user_model(path)
        check_classifier(loaded, path, data.x_test, data.num_classes)
        info = {"source": str(path), "format": fmt, "keras": is_keras}
        return BaseModel(model=loaded, info=info, path=path, format=fmt)

    def fresh(self, base: BaseModel) -> Any:
        if not is_keras_model(base.model):
            return base.model  # a GenericSavedModel: nothing can modify it
        _, keras = import_tf()
        try:
            clone = keras.models.clone_model(base.model)
        except Exception:
            if base.path is None:
                raise
            # subclassed models cannot be cloned from their config: read the user's file again
            return load_user_model(base.path)[0]
        clone.set_weights(base.model.get_weights())
        return clone

    def export(self, model: Any, out_dir: Path, data: DigitsSplit) -> ServedArtifact:
        shape, classes = tuple(data.input_shape), data.num_classes
        if isinstance(model, TFLiteModel):
            return export_tflite(model, out_dir, input_shape=shape, num_classes=classes)
        if isinstance(model, GenericSavedModel):
            return copy_user_savedmodel(
                model.path, out_dir, input_shape=shape, num_classes=classes, keras=False
            )

        require_keras_model(model, "export")
        return export_savedmodel(model, out_dir, input_shape=shape, num_classes=classes)

    def copy_user_artifact(self, base: BaseModel, out_dir: Path, data: DigitsSplit) -> ServedArtifact:
        assert base.path is not None
        shape, classes = tuple(data.input_shape), data.num_classes
        if base.format == "savedmodel":
            keras = bool(base.info.get("keras"))
            return copy_user_savedmodel(
                base.path, out_dir, input_shape=shape, num_classes=classes, keras=keras
            )
        # servers (TF Serving, the runner) load SavedModels, not .keras/.h5: export the user's model
        extra = {
            "source": str(base.path),
            "converted_from": base.format,
            "note": f"the user's .{base.format} file is served as a SavedModel exported from it",
        }
        return export_savedmodel(base.model, out_dir, input_shape=shape, num_classes=classes, extra=extra)

    def measure_artifact(
        self, artifact: ServedArtifact, data: DigitsSplit
    ) -> tuple[dict[str, float], dict[str, Any]]:
        runner = TfArtifactRunner(artifact)  # loaded back from disk, as a server would
        labels = runner.predict_labels(data.x_test)
        details: dict[str, Any] = {}
        if runner.signature is not None:
            stats = tensor_stats(savedmodel_tensors(runner.signature.fn))
        else:
            stats, contents = tflite_stats(Path(artifact.path).read_bytes())
            details.update(
                tensor_dtypes=contents.tensor_dtypes,
                constant_dtypes=contents.constant_dtypes,
                kernel_dtypes=contents.kernel_dtypes(),
                operators=contents.operators,
            )
        raw, gz = path_sizes(Path(artifact.path))
        metrics = {
            "accuracy_inprocess": accuracy(labels, data.y_test),
            "model_size_bytes": float(raw),
            "model_size_gzip_bytes": float(gz),
            "sparsity": float(stats["sparsity"]),
            "param_count": float(stats["param_count"]),
        }
        details.update(
            sparsity_all_params=stats["sparsity_all_params"],
            per_kernel_sparsity=stats["per_kernel_sparsity"],
            unique_weights_per_kernel=stats["unique_weights_per_kernel"],
        )
        return metrics, details

    def in_memory_accuracy(self, model: Any, data: DigitsSplit) -> float:
        return accuracy(model_scores(model, data.x_test).argmax(axis=1), data.y_test)

    def runtime_info(self, artifact: ServedArtifact) -> dict[str, Any]:
        # SavedModel: serving_default concrete function; TFLite: one ai_edge_litert interpreter per
        # calling thread. No intra-op thread setting: the default set_intra_op_threads leaves TF alone.
        return {
            "tf_version": artifact.extra.get("tf_version"),
            "quantization": artifact.extra.get("quantization"),
        }


def model_scores(model: Any, x: np.ndarray) -> np.ndarray:
    """[n, classes] scores of any in-memory TensorFlow variant: Keras, TFLiteModel or GenericSavedModel."""
    rows = np.ascontiguousarray(x, dtype=np.float32)
    if isinstance(model, TFLiteModel):
        return TfliteScorer(model.content).scores(rows)
    if isinstance(model, GenericSavedModel):
        return model(rows)
    return np.asarray(model(rows, training=False), dtype=np.float32)


def load_user_model(path: Path) -> tuple[Any, str, bool]:
    """(model, format, is_keras) of a user's SavedModel folder or .keras/.h5 file; UserError if unusable.

    A SavedModel with keras_metadata.pb is loaded with tf_keras so the recipes can compress it;
    any other SavedModel is kept as a GenericSavedModel (tf_keras would "load" it too, but only as
    an opaque object without layers).
    """
    _, keras = import_tf()
    if path.is_dir():
        if not (path / SAVEDMODEL.marker).is_file():
            raise UserError(
                f"model.source: {path} is a folder without {SAVEDMODEL.marker}; expected {_EXPECTED}"
            )
        if (path / "keras_metadata.pb").is_file():
            try:
                return keras.models.load_model(str(path), compile=False), "savedmodel", True
            except Exception:
                pass  # not loadable as Keras after all (e.g. custom layers): serve it as a plain SavedModel

        return GenericSavedModel(path, SavedModelSignature.load(path)), "savedmodel", False

    fmt = TENSORFLOW.user_formats.get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"model.source: {path}: unsupported suffix {path.suffix!r}; expected {_EXPECTED}")
    if not path.is_file():
        raise UserError(f"model.source: {path} does not exist; expected {_EXPECTED}")
    version = saved_keras_version(path)
    if version is not None and not version.startswith("2."):
        raise UserError(
            f"model.source: {path} was saved by Keras {version}, which tf_keras (Keras 2) cannot read; "
            "the TensorFlow recipes (tfmot) need Keras 2: re-save the model with tf_keras "
            "(TF_USE_LEGACY_KERAS=1), or export a SavedModel (model.export(folder)) to serve it as given"
        )
    try:
        loaded = keras.models.load_model(str(path), compile=False)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"model.source: {path} could not be loaded with tf_keras: {first}; expected a model saved by "
            "tf_keras (Keras 2) with built-in layers"
        ) from None
    return loaded, fmt, True


def saved_keras_version(path: Path) -> str | None:
    """The Keras version recorded in a .keras zip or .h5 file, if any."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                meta = json.loads(archive.read("metadata.json"))
            return str(meta.get("keras_version")) if meta.get("keras_version") else None
        import h5py

        with h5py.File(path, "r") as handle:
            version = handle.attrs.get("keras_version")
        if isinstance(version, bytes):
            version = version.decode()
        return str(version) if version else None
    except (OSError, KeyError, ValueError):
        return None  # unreadable here: loading it will produce the real error


def check_classifier(model: Any, path: Path, x_test: np.ndarray, num_classes: int) -> None:
    """UserError unless the model maps a float32 [n, 64] batch to finite [n, num_classes] scores."""
    sample = np.ascontiguousarray(x_test[:8], dtype=np.float32)
    try:
        scores = model_scores(model, sample)
    except UserError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"model.source: {path} does not accept a float32 batch of shape [n, {sample.shape[1]}]: {first}"
        ) from None
    if scores.shape != (len(sample), num_classes):
        raise UserError(
            f"model.source: {path} returns shape {list(scores.shape)} for a batch of {len(sample)}; "
            f"expected [{len(sample)}, {num_classes}] class scores"
        )
    if not np.all(np.isfinite(scores)):
        raise UserError(f"model.source: {path} returns non-finite scores for the digits test set")
