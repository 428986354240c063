"""The TensorFlow side of preparing a variant: built-in models, users' files and python: factories,
SavedModel/TFLite export, and measurements on the exported file.

In memory a variant is a tf_keras model (what the tfmot recipes wrap), a TFLiteModel (after
tf.qat / tf.ptq) or a GenericSavedModel (a user SavedModel not written by tf_keras: served and
PTQ-converted as given). On disk it is a SavedModel folder or a `.tflite` file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from harness.artifacts import ServedArtifact
from harness.compression.backend import BaseModel, FrameworkBackend
from harness.compression.tensorflow.export import copy_user_savedmodel, export_savedmodel, export_tflite
from harness.compression.tensorflow.model_io import keras_input_specs
from harness.compression.tensorflow.runner import GenericSavedModel, TfArtifactRunner, run_model
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
from harness.compression.tensorflow.user_models import (
    LoadedTfModel,
    load_factory_model,
    load_user_file,
    saved_keras_version,
    settle_signature,
)
from harness.data.dataset import Dataset
from harness.data.tensors import Batch, Signature
from harness.errors import UserError
from harness.frameworks import TENSORFLOW
from harness.models.tf_mobilenet import get_tf_mobilenet
from harness.models.tf_models import BUILTIN_TF_MODELS, get_reference_tf_model
from harness.scenario.schema import BUILTIN_MOBILENET, ModelSpec, resolve_source

# saved_keras_version lived here before user models got their own module; callers still import it
__all__ = ["TensorFlowBackend", "saved_keras_version"]


class TensorFlowBackend(FrameworkBackend):
    """tf_keras / TFLiteModel / GenericSavedModel in memory; SavedModel or `model.tflite` on disk."""

    framework: ClassVar[str] = TENSORFLOW.name

    def load_base(self, model: ModelSpec, scenario_dir: Path, data: Dataset) -> BaseModel:
        if model.is_builtin:
            return _load_builtin(model, data)
        path: Path | None = None
        if model.is_python:
            loaded = load_factory_model(model, scenario_dir, data)
            where = f"model.source {model.source}"
        else:
            path = resolve_source(model.source, scenario_dir)
            loaded = load_user_file(path)
            where = f"model.source: {path}"
        signature = settle_signature(
            where, model, data, loaded.recorded, lambda batch, inputs: run_model(loaded.model, batch, inputs)
        )
        info = {"source": str(path) if path else model.source, "format": loaded.format, "keras": loaded.keras}
        if model.weights is not None:
            info["weights"] = str(resolve_source(model.weights, scenario_dir))
        return BaseModel(model=loaded.model, info=info, signature=signature, path=path, format=loaded.format)

    def fresh(self, base: BaseModel) -> Any:
        if not is_keras_model(base.model):
            return base.model  # a GenericSavedModel: nothing can modify it
        _, keras = import_tf()
        try:
            clone = keras.models.clone_model(base.model)
        except Exception:
            # A subclassed model has no config to clone from: read the user's file again, or share
            # the base model, which is safe because no TF recipe modifies the model it is given
            # (tfmot recipes wrap a private clone, tf.ptq traces, tf.distill only calls it).
            return load_user_file(base.path).model if base.path is not None else base.model
        clone.set_weights(base.model.get_weights())
        return clone

    def export(self, model: Any, out_dir: Path, signature: Signature) -> ServedArtifact:
        if isinstance(model, TFLiteModel):
            return export_tflite(model, out_dir, signature)
        if isinstance(model, GenericSavedModel):
            return copy_user_savedmodel(model.path, out_dir, signature, keras=False)
        require_keras_model(model, "export")
        return export_savedmodel(model, out_dir, signature)

    def copy_user_artifact(self, base: BaseModel, out_dir: Path) -> ServedArtifact:
        if base.format == "savedmodel":
            assert base.path is not None
            return copy_user_savedmodel(
                base.path, out_dir, base.signature, keras=bool(base.info.get("keras"))
            )
        # servers (TF Serving, the runner) load SavedModels, not .keras/.h5 or a factory: export it
        what = f"the user's .{base.format} file" if base.path is not None else "the factory's model"
        extra = {
            "source": str(base.path) if base.path is not None else base.info.get("source"),
            "converted_from": base.format,
            "note": f"{what} is served as a SavedModel exported from it",
        }
        return export_savedmodel(base.model, out_dir, base.signature, extra=extra)

    def measure_artifact(self, artifact: ServedArtifact) -> tuple[dict[str, float], dict[str, Any]]:
        runner = TfArtifactRunner(artifact)  # loaded back from disk, as a server would
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

    def in_memory_outputs(self, model: Any, batch: Batch, signature: Signature) -> np.ndarray:
        return run_model(model, batch, signature.inputs)

    def runtime_info(self, artifact: ServedArtifact) -> dict[str, Any]:
        # SavedModel: serving_default concrete function; TFLite: one ai_edge_litert interpreter per
        # calling thread. No intra-op thread setting: the default set_intra_op_threads leaves TF alone.
        return {
            "tf_version": artifact.extra.get("tf_version"),
            "quantization": artifact.extra.get("quantization"),
        }


def _load_builtin(model: ModelSpec, data: Dataset) -> BaseModel:
    """A built-in reference model trained on `data`: `builtin:mlp`/`builtin:cnn` on one float vector
    input, `builtin:mobilenet_v2` on one float image input [size, size, channels]; classification."""
    kind = BUILTIN_TF_MODELS.get(model.source)
    if kind is None and model.source != BUILTIN_MOBILENET:
        known = ", ".join(sorted([*BUILTIN_TF_MODELS, BUILTIN_MOBILENET]))
        raise UserError(f"model.source: unknown built-in TensorFlow model {model.source!r}; expected {known}")
    single = data.inputs[0] if len(data.inputs) == 1 else None
    rank, what = (1, "one float vector input") if kind is not None else (3, "one float image input [h, w, c]")
    if single is None or len(single.shape) != rank or not single.dtype.startswith("float"):
        raise UserError(
            f"model.source: {model.source} trains on {what}; the data has "
            f"{', '.join(s.describe() for s in data.inputs)} (use a python: factory or a model file)"
        )
    if data.task != "classification" or data.num_classes is None or data.train is None:
        raise UserError(f"model.source: {model.source} is a classifier trained on labelled train data")
    if kind is not None:
        trained = get_reference_tf_model(kind, data, seed=model.seed)
    else:
        options = model.builtin_options
        if single.shape != (options.image_size, options.image_size, single.shape[2]):
            raise UserError(
                f"model.builtin.image_size: {options.image_size} but the data's images are "
                f"{single.describe()}"
            )
        trained = get_tf_mobilenet(data, seed=model.seed, options=options)
    loaded = LoadedTfModel(trained.model, "builtin", True, keras_input_specs(trained.model))
    signature = settle_signature(
        f"model.source {model.source}",
        model,
        data,
        loaded.recorded,
        lambda batch, inputs: run_model(loaded.model, batch, inputs),
    )
    return BaseModel(model=trained.model, info=trained.info(), signature=signature)
