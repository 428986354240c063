"""Built-in TensorFlow models, SavedModel export, the TF artifact runner, and users' own TF files."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.compression.backend import BaseModel
from harness.compression.tensorflow.export import export_savedmodel
from harness.compression.tensorflow.runner import GenericSavedModel, TfArtifactRunner
from harness.compression.tensorflow.stats import require_keras_model
from harness.compression.tensorflow.tf_import import import_tf
from harness.data.tensors import OutputSpec, Signature, TensorSpec
from harness.errors import UserError
from harness.frameworks import TENSORFLOW
from harness.metrics.accuracy import accuracy
from harness.models.digits import load_digits_split
from harness.models.tf_models import (
    TfModelConfig,
    build_mlp,
    get_reference_tf_model,
    logits_accuracy,
    train_tf_model,
)
from harness.scenario.schema import ModelSpec, ServingSpec
from harness.serving.inprocess import InProcessTarget

tf, keras = import_tf()
KINDS = ["mlp", "cnn"]
# what load_base settles for a built-in on digits: flat float rows in, ten logits out
DIGITS = Signature(
    inputs=(TensorSpec("inputs", (64,), "float32"),), output=OutputSpec("logits", 10), task="classification"
)


@pytest.fixture(scope="module")
def data():
    return load_digits_split(seed=0)


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tf-model-cache")


@pytest.fixture(scope="module")
def trained(data, cache_root: Path) -> dict[str, Any]:
    """Both built-ins trained once into an empty cache (so the first call is a real training)."""
    return {kind: get_reference_tf_model(kind, data, seed=0, cache_root=cache_root) for kind in KINDS}


@pytest.fixture(scope="module")
def backend():
    return TENSORFLOW.backend()


@pytest.fixture(scope="module")
def exported(trained, data, backend, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("tf-export")
    return {kind: backend.export(trained[kind].model, root / kind, DIGITS) for kind in KINDS}


def user_spec(path: Path) -> ModelSpec:
    return ModelSpec(framework="tensorflow", source=str(path))


def labels_of(outputs: np.ndarray) -> np.ndarray:
    return np.asarray(outputs).argmax(axis=1)


def file_accuracy(artifact: Any, data: Any) -> float:
    """Accuracy of the served file itself, loaded back from disk."""
    return accuracy(labels_of(TfArtifactRunner(artifact).predict_outputs(data.test.inputs)), data.y_test)


def memory_accuracy(backend: Any, model: Any, data: Any) -> float:
    return accuracy(labels_of(backend.in_memory_outputs(model, data.test.inputs, DIGITS)), data.y_test)


# --- built-in models ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_builtin_model_trains_above_95_percent_and_second_call_is_a_cache_hit(
    trained, data, cache_root: Path, kind: str
) -> None:
    first = trained[kind]
    assert not first.cache_hit
    assert first.test_accuracy >= 0.95
    assert first.cache_path.is_file()
    second = get_reference_tf_model(kind, data, seed=0, cache_root=cache_root)
    assert second.cache_hit
    assert second.key == first.key
    assert second.test_accuracy == first.test_accuracy
    x = data.x_test
    assert np.array_equal(second.model(x, training=False).numpy(), first.model(x, training=False).numpy())
    assert first.info()["source"] == f"builtin:{kind}"


@pytest.mark.parametrize("kind", KINDS)
def test_builtin_model_maps_flat_rows_to_ten_logits(trained, kind: str) -> None:
    model = trained[kind].model
    assert isinstance(model, keras.Model)
    assert tuple(model.inputs[0].shape) == (None, 64)
    assert tuple(model.outputs[0].shape) == (None, 10)
    if kind == "cnn":
        assert isinstance(model.layers[0], keras.layers.Reshape)
        assert any(isinstance(layer, keras.layers.Conv2D) for layer in model.layers)
    assert model.layers[-1].get_config()["activation"] == "linear"  # logits, not softmax


def test_a_different_seed_gets_its_own_cache_entry(data, cache_root: Path, trained) -> None:
    other = TfModelConfig(kind="mlp", hidden=(8,), epochs=1)
    result = get_reference_tf_model("mlp", data, seed=1, config=other, cache_root=cache_root)
    assert not result.cache_hit
    assert result.key != trained["mlp"].key


def test_training_is_bit_for_bit_reproducible(data) -> None:
    config = TfModelConfig(kind="cnn", hidden=(4, 8), epochs=1)
    first = train_tf_model(config, data, seed=3).get_weights()
    second = train_tf_model(config, data, seed=3).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_build_mlp_has_the_requested_hidden_widths() -> None:
    model = build_mlp([32, 16])
    kernels = [w.shape.as_list() for w in model.weights if len(w.shape) == 2]
    assert kernels == [[64, 32], [32, 16], [16, 10]]


def test_unknown_builtin_is_a_user_error(backend, data) -> None:
    with pytest.raises(UserError, match=r"builtin:resnet.*builtin:cnn"):
        backend.load_base(ModelSpec(framework="tensorflow", source="builtin:resnet"), Path("."), data)


@pytest.mark.parametrize("kind", KINDS)
def test_builtin_base_model_has_the_digits_signature(backend, data, kind: str) -> None:
    base = backend.load_base(ModelSpec(framework="tensorflow", source=f"builtin:{kind}"), Path("."), data)
    assert base.signature == DIGITS
    assert base.path is None


def test_fresh_copy_does_not_share_weights_with_the_base(backend, trained) -> None:
    base = BaseModel(model=trained["mlp"].model, info={}, signature=DIGITS)
    copy = backend.fresh(base)
    copy.layers[0].kernel.assign(tf.zeros_like(copy.layers[0].kernel))
    assert np.count_nonzero(base.model.layers[0].kernel.numpy()) > 0


# --- SavedModel export and the runner -------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_savedmodel_outputs_equal_the_in_memory_outputs(exported, trained, data, backend, kind: str) -> None:
    artifact = exported[kind]
    in_memory = backend.in_memory_outputs(trained[kind].model, data.test.inputs, DIGITS)
    assert accuracy(labels_of(in_memory), data.y_test) == trained[kind].test_accuracy
    served = TfArtifactRunner(artifact).predict_outputs(data.test.inputs)
    np.testing.assert_allclose(served, in_memory, rtol=1e-4, atol=1e-4)
    assert artifact.signature == DIGITS


@pytest.mark.parametrize("kind", KINDS)
def test_savedmodel_has_a_serving_default_signature_inputs_to_scores(exported, kind: str) -> None:
    artifact = exported[kind]
    assert artifact.format == "savedmodel"
    assert artifact.framework == "tensorflow"
    assert Path(artifact.path).name == "savedmodel"
    loaded = tf.saved_model.load(str(artifact.path))
    assert list(loaded.signatures.keys()) == ["serving_default"]
    fn = loaded.signatures["serving_default"]
    ((name, spec),) = fn.structured_input_signature[1].items()
    assert (name, spec.dtype, spec.shape.as_list()) == ("inputs", tf.float32, [None, 64])
    assert list(fn.structured_outputs) == ["scores"]
    assert fn.structured_outputs["scores"].shape.as_list() == [None, 10]
    assert artifact.extra["input_name"] == "inputs"
    assert artifact.extra["input_names"] == ["inputs"]
    assert artifact.extra["input_dtypes"] == {"inputs": "float32"}
    assert artifact.extra["output_name"] == "scores"
    assert artifact.extra["signature"] == "serving_default"


@pytest.mark.parametrize("kind", KINDS)
def test_measured_savedmodel_reports_its_files_and_parameters(
    exported, trained, data, backend, kind: str
) -> None:
    metrics, details = backend.measure_artifact(exported[kind])
    assert "accuracy_inprocess" not in metrics  # quality is computed by the pipeline from outputs
    files = [p for p in Path(exported[kind].path).rglob("*") if p.is_file()]
    assert metrics["model_size_bytes"] == sum(p.stat().st_size for p in files)
    assert 0 < metrics["model_size_gzip_bytes"] < metrics["model_size_bytes"]
    assert metrics["param_count"] == trained[kind].model.count_params()
    assert metrics["sparsity"] < 0.01
    kernels = details["unique_weights_per_kernel"]
    assert "logits/kernel" in kernels
    assert kernels["logits/kernel"] > 100  # trained float weights are (almost) all distinct


def test_runner_predicts_the_same_outputs_from_many_threads(exported, data) -> None:
    runner = TfArtifactRunner(exported["cnn"])
    expected = runner.predict_outputs(data.test.inputs)
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(
            pool.map(
                lambda i: runner.predict_outputs({"inputs": data.x_test[i : i + 1]})[0],
                range(len(data.x_test)),
            )
        )
    np.testing.assert_allclose(np.array(got), expected, rtol=1e-5, atol=1e-5)


def test_runner_accepts_a_single_example_and_rejects_a_wrong_width(exported, data) -> None:
    runner = TfArtifactRunner(exported["mlp"])
    assert runner.predict_outputs(data.x_test[0]).shape == (1, 10)
    with pytest.raises(ValueError, match=r"example shape \[63\]; the model expects inputs: float32\[64\]"):
        runner.predict_outputs({"inputs": np.zeros((2, 63), dtype=np.float32)})


@pytest.mark.parametrize("kind", KINDS)
def test_inprocess_target_serves_the_savedmodel(exported, data, tmp_path: Path, kind: str) -> None:
    expected = TfArtifactRunner(exported[kind]).predict_outputs(data.test.inputs)
    with InProcessTarget(ServingSpec(target="inprocess", workers=2), tmp_path) as target:
        target.start(exported[kind])
        got = target.predict(data.test.inputs)
        assert target.describe()["tf_version"] == tf.__version__
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


# --- users' own files ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def user_files(trained, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("user-models")
    model = trained["mlp"].model
    files = {"keras": root / "model.keras", "h5": root / "model.h5", "keras_savedmodel": root / "keras_sm"}
    model.save(files["keras"])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "You are saving your model as an HDF5 file", UserWarning)
        model.save(files["h5"])
    model.save(files["keras_savedmodel"], save_format="tf")  # tf_keras SavedModel: keras_metadata.pb
    files["generic_savedmodel"] = Path(export_savedmodel(model, root / "generic", DIGITS).path)
    return files


@pytest.mark.parametrize(
    ("name", "fmt", "is_keras"),
    [
        ("keras", "keras", True),
        ("h5", "h5", True),
        ("keras_savedmodel", "savedmodel", True),
        ("generic_savedmodel", "savedmodel", False),
    ],
)
def test_user_file_loads_and_its_reference_serves_with_the_same_accuracy(
    user_files, trained, data, backend, tmp_path: Path, name: str, fmt: str, is_keras: bool
) -> None:
    base = backend.load_base(user_spec(user_files[name]), Path("."), data)
    assert base.format == fmt
    assert base.info["keras"] is is_keras
    assert isinstance(base.model, keras.Model) is is_keras
    assert base.signature == DIGITS
    model = backend.fresh(base)
    assert memory_accuracy(backend, model, data) == trained["mlp"].test_accuracy
    artifact = backend.copy_user_artifact(base, tmp_path)
    assert artifact.format == "savedmodel"
    assert abs(file_accuracy(artifact, data) - trained["mlp"].test_accuracy) <= 0.005
    if fmt != "savedmodel":
        assert artifact.extra["converted_from"] == fmt  # .keras/.h5 are served as an exported SavedModel
    else:
        assert artifact.extra["source"] == str(user_files[name])


def test_generic_savedmodel_is_refused_by_keras_recipes(user_files, data, backend) -> None:
    base = backend.load_base(user_spec(user_files["generic_savedmodel"]), Path("."), data)
    assert isinstance(base.model, GenericSavedModel)
    with pytest.raises(UserError, match=r"tf\.prune needs a tf_keras model.*without Keras metadata.*python:"):
        require_keras_model(base.model, "tf.prune")


def test_keras3_file_is_a_user_error_naming_tf_keras(data, backend, tmp_path: Path) -> None:
    path = tmp_path / "keras3.keras"
    script = textwrap.dedent(
        f"""
        import keras
        model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)])
        model.save({str(path)!r})
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True, timeout=120)
    with pytest.raises(UserError, match=r"saved by Keras 3\..*tf_keras \(Keras 2\)"):
        backend.load_base(user_spec(path), Path("."), data)


def test_user_model_with_the_wrong_output_width_is_a_user_error(data, backend, tmp_path: Path) -> None:
    path = tmp_path / "five.keras"
    keras.Sequential([keras.Input((64,)), keras.layers.Dense(5)]).save(path)
    with pytest.raises(UserError, match=r"returns 5 scores per example; the data has 10 classes"):
        backend.load_base(user_spec(path), Path("."), data)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("folder", None, "without saved_model.pb"),
        ("model.onnx", b"x", "unsupported suffix"),
        ("missing.keras", b"", "does not exist"),
        ("broken.keras", b"not a zip", "could not be loaded with tf_keras"),
    ],
)
def test_unusable_user_source_is_a_one_line_user_error(
    data, backend, tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    path = tmp_path / name
    if content is None:
        path.mkdir()
    elif content:
        path.write_bytes(content)
    with pytest.raises(UserError, match=message) as excinfo:
        backend.load_base(user_spec(path), Path("."), data)
    assert "\n" not in str(excinfo.value)


def test_logits_accuracy_matches_the_generic_accuracy(trained, data) -> None:
    model = trained["mlp"].model
    labels = model(data.x_test, training=False).numpy().argmax(axis=1)
    assert logits_accuracy(model, data.x_test, data.y_test) == accuracy(labels, data.y_test)
