"""Users' TensorFlow models: SavedModel folders, tf_keras .keras/.h5 files and python: factories,
loaded and checked against the data before any variant is built.

A SavedModel with keras_metadata.pb is loaded with tf_keras so the tfmot recipes can compress it;
any other SavedModel is kept as a GenericSavedModel (tf_keras would "load" it too, but only as an
opaque object without layers), which is served and PTQ-converted as given. What the model
records about its inputs is read here: a SavedModel's serving signature, a Keras model's inputs.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.compression.tensorflow.model_io import feed, first_line, keras_args, keras_input_specs
from harness.compression.tensorflow.runner import GenericSavedModel, SavedModelSignature
from harness.compression.tensorflow.tf_import import import_tf
from harness.data.dataset import Dataset
from harness.data.signature import make_signature, settle_inputs, settle_output
from harness.data.tensors import Signature, TensorSpec
from harness.errors import UserError
from harness.frameworks import SAVEDMODEL, TENSORFLOW
from harness.models.python_source import load_target
from harness.scenario.schema import ModelSpec, resolve_source

_EXPECTED = (
    f"a {SAVEDMODEL.label} folder (with {SAVEDMODEL.marker}), a tf_keras "
    f"{'/'.join(TENSORFLOW.user_suffixes)} file or a python: factory"
)
CHECK_BATCHES = (8, 1)  # a batch and a single example: models that only work for one of them fail early


@dataclass
class LoadedTfModel:
    """A user's model as loaded, and what it records about its inputs (None: nothing)."""

    model: Any  # tf_keras model or GenericSavedModel
    format: str  # "savedmodel" | "keras" | "h5" | "python"
    keras: bool
    recorded: tuple[TensorSpec, ...] | None


def load_user_file(path: Path) -> LoadedTfModel:
    """A user's SavedModel folder or .keras/.h5 file; UserError if unusable."""
    _, keras = import_tf()
    if path.is_dir():
        if not (path / SAVEDMODEL.marker).is_file():
            raise UserError(
                f"model.source: {path} is a folder without {SAVEDMODEL.marker}; expected {_EXPECTED}"
            )
        signature = SavedModelSignature.load(path)
        if (path / "keras_metadata.pb").is_file():
            try:
                model = keras.models.load_model(str(path), compile=False)
            except Exception:
                model = None  # not loadable as Keras after all (e.g. custom layers): serve it as given
            if model is not None and _same_names(keras_input_specs(model), signature.inputs):
                return LoadedTfModel(model, "savedmodel", True, signature.inputs)
        return LoadedTfModel(GenericSavedModel(path, signature), "savedmodel", False, signature.inputs)

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
        raise UserError(
            f"model.source: {path} could not be loaded with tf_keras: {first_line(exc)}; expected a model "
            "saved by tf_keras (Keras 2) with built-in layers"
        ) from None
    return LoadedTfModel(loaded, fmt, True, keras_input_specs(loaded))


def load_factory_model(spec: ModelSpec, scenario_dir: Path, data: Dataset) -> LoadedTfModel:
    """Import and call a python: factory (it must return a tf_keras model) and load `model.weights`
    into what it returns (a tf_keras weights file, read with `load_weights`)."""
    _, keras = import_tf()
    where = "model.source"
    model = load_target(spec.python_target, scenario_dir, where)
    if not isinstance(model, keras.Model):
        kind = f"{type(model).__module__}.{type(model).__name__}"
        hint = " (a Keras 3 model: build it with `import tf_keras as keras`)" if "keras" in kind else ""
        raise UserError(f"{where}: the factory returned a {kind}{hint}; expected a tf_keras model")
    if spec.weights is not None:
        weights = resolve_source(spec.weights, scenario_dir)
        if not weights.is_file():
            raise UserError(f"model.weights: {weights} does not exist")
        if not model.built:  # a subclassed model creates its variables on its first call
            inputs = keras_input_specs(model) or tuple(data.inputs)
            try:
                model(keras_args(model, feed(data.test.head(1).inputs, inputs)))
            except Exception as exc:
                raise UserError(
                    f"{where}: building the model on one test example failed: {first_line(exc)}"
                ) from None
        try:
            model.load_weights(str(weights))
        except Exception as exc:
            raise UserError(
                f"model.weights: {weights} could not be loaded into the factory's model: {first_line(exc)}"
            ) from None
    return LoadedTfModel(model, "python", True, keras_input_specs(model))


def settle_signature(
    where: str,
    spec: ModelSpec,
    data: Dataset,
    recorded: tuple[TensorSpec, ...] | None,
    run: Callable[[dict[str, np.ndarray], tuple[TensorSpec, ...]], np.ndarray],
) -> Signature:
    """The model's signature, checked by running it on a batch of 8 test examples and on one:
    UserError listing what the model expects if it does not run or returns the wrong shape."""
    inputs = settle_inputs(where, recorded, spec, data)
    expected = ", ".join(s.describe() for s in inputs)
    outputs: dict[int, np.ndarray] = {}
    for size in CHECK_BATCHES:
        batch = feed(data.test.head(size).inputs, inputs)
        try:
            outputs[size] = np.asarray(run(batch, inputs))
        except UserError:
            raise
        except Exception as exc:
            raise UserError(
                f"{where}: the model fails on a batch of {size} test example(s): {first_line(exc)}; "
                f"it expects {expected}"
            ) from None
    sample = outputs[CHECK_BATCHES[0]]
    rows = min(CHECK_BATCHES[0], len(data.test))
    output = settle_output(where, data.task, spec.output, sample, data.num_classes)
    for size, got in outputs.items():
        wanted = (min(size, rows), output.width)
        if (got.shape if got.ndim == 2 else (*got.shape, 1)) != wanted:
            raise UserError(
                f"{where}: the model returns shape {list(got.shape)} for a batch of {wanted[0]}; "
                f"expected {list(wanted)} (it takes {expected})"
            )
    return make_signature(inputs, output, data.task)


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


def _same_names(keras_specs: tuple[TensorSpec, ...] | None, signature: tuple[TensorSpec, ...]) -> bool:
    # tf_keras writes its input layer names as the signature's: anything else was edited by hand,
    # and exporting the Keras model would serve other names than the SavedModel does
    if keras_specs is None:
        return False
    if len(keras_specs) == 1 and len(signature) == 1:
        return True
    return sorted(s.name for s in keras_specs) == sorted(s.name for s in signature)
