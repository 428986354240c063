"""TensorFlow models the harness never built: uint8 images, token ids next to features, regression;
each as .keras, .h5, a tf_keras SavedModel, a generic SavedModel (a tf.Module with an explicit
signature) and a python: factory. Their signatures are read, exports answer like the models,
tf.ptq and tf.distill take a generic SavedModel, and the tfmot recipes refuse it."""

from __future__ import annotations

import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.compression.base import RecipeContext
from harness.compression.tensorflow.cluster import TfClusterRecipe
from harness.compression.tensorflow.distill import TfDistillRecipe
from harness.compression.tensorflow.prune import TfPruneRecipe
from harness.compression.tensorflow.ptq import TfPtqRecipe
from harness.compression.tensorflow.qat import TfQatRecipe
from harness.compression.tensorflow.runner import GenericSavedModel, TfArtifactRunner
from harness.compression.tensorflow.tf_import import import_tf
from harness.compression.tensorflow.tflite_model import TFLiteModel
from harness.data.dataset import Dataset, Split
from harness.data.tensors import TensorSpec
from harness.errors import UserError
from harness.frameworks import TENSORFLOW
from harness.models.digits import load_digits_split
from harness.scenario.schema import ModelSpec

tf, keras = import_tf()
FORMATS = ["keras", "h5", "keras_savedmodel", "generic_savedmodel"]
CALIBRATION_EXAMPLES = 48  # fewer than tf.ptq's default calibration_samples: all of them are used


# --- the data -------------------------------------------------------------------------------------


def pixels_data() -> Dataset:
    """digits as uint8 8x8x1 images named `pixels` (0..255), with a small calibration split."""
    digits = load_digits_split(seed=0)

    def images(x: np.ndarray) -> np.ndarray:
        return np.round(np.asarray(x) * 255).astype(np.uint8).reshape(-1, 8, 8, 1)

    train = Split({"pixels": images(digits.x_train)}, digits.y_train)
    return Dataset(
        name="images",
        inputs=(TensorSpec("pixels", (8, 8, 1), "uint8"),),
        task="classification",
        test=Split({"pixels": images(digits.x_test)}, digits.y_test),
        train=train,
        calibration=train.head(CALIBRATION_EXAMPLES),
        num_classes=10,
    )


def tokens_data() -> Dataset:
    """int64 token ids next to float features; the class depends on both."""
    rng = np.random.default_rng(0)

    def split(n: int) -> Split:
        ids = rng.integers(0, 40, (n, 6)).astype(np.int64)
        features = rng.normal(size=(n, 3)).astype(np.float32)
        labels = ((ids < 20).sum(axis=1) + (features[:, 0] > 0) * 3) % 3
        return Split({"input_ids": ids, "features": features}, labels.astype(np.int64))

    return Dataset(
        name="npz",
        inputs=(TensorSpec("input_ids", (6,), "int64"), TensorSpec("features", (3,), "float32")),
        task="classification",
        test=split(200),
        train=split(600),
        num_classes=3,
    )


def regression_data() -> Dataset:
    rng = np.random.default_rng(1)
    weights = rng.normal(size=5).astype(np.float32)

    def split(n: int) -> Split:
        x = rng.normal(size=(n, 5)).astype(np.float32)
        return Split({"x": x}, (x @ weights).astype(np.float32))

    return Dataset(
        name="table",
        inputs=(TensorSpec("x", (5,), "float32"),),
        task="regression",
        test=split(100),
        train=split(400),
    )


# --- the models -----------------------------------------------------------------------------------

PIXELS_FACTORY = textwrap.dedent(
    """
    import tf_keras as keras


    def make_model():
        layers = keras.layers
        inputs = keras.Input((8, 8, 1), dtype="uint8", name="pixels")
        x = layers.Rescaling(1 / 255, name="rescale")(inputs)
        x = layers.Conv2D(8, 3, activation="relu", name="conv")(x)
        x = layers.Flatten(name="flatten")(x)
        outputs = layers.Dense(10, activation="softmax", name="probs")(x)
        return keras.Model(inputs, outputs, name="pixels_cnn")
    """
)


def pixels_model() -> Any:
    namespace: dict[str, Any] = {}
    exec(PIXELS_FACTORY, namespace)  # the same architecture the python: factory module builds
    return namespace["make_model"]()


def tokens_model() -> Any:
    layers = keras.layers
    ids = keras.Input((6,), dtype="int64", name="input_ids")
    features = keras.Input((3,), name="features")
    x = layers.GlobalAveragePooling1D()(layers.Embedding(40, 8)(ids))
    x = layers.Dense(16, activation="relu")(layers.Concatenate()([x, features]))
    return keras.Model([ids, features], layers.Dense(3, name="logits")(x), name="tokens")


def regression_model() -> Any:
    return keras.Sequential([keras.Input((5,), name="x"), keras.layers.Dense(8), keras.layers.Dense(1)])


@dataclass
class Case:
    """One test model: trained tf_keras model, its data, and its files in every format."""

    model: Any
    data: Dataset
    files: dict[str, Path]
    output_name: str  # what the generic SavedModel calls its output


def trained(model: Any, data: Dataset, epochs: int) -> Any:
    keras.utils.set_random_seed(0)
    loss = (
        "mse"
        if data.task == "regression"
        else keras.losses.SparseCategoricalCrossentropy(
            from_logits=model.layers[-1].get_config().get("activation") != "softmax"
        )
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss)
    assert data.train is not None
    x = [data.train.inputs[name] for name in model.input_names]
    model.fit(x if len(x) > 1 else x[0], data.train.labels, epochs=epochs, batch_size=64, verbose=0)
    return model


def save_generic(model: Any, folder: Path, output_name: str, squeeze: bool = False) -> Path:
    """tf.saved_model.save of a tf.Module with an explicit serving signature: no Keras metadata."""
    specs = {
        name: tf.TensorSpec([None, *t.shape[1:]], t.dtype, name=name)
        for name, t in zip(model.input_names, model.inputs, strict=True)
    }
    names = list(model.input_names)
    module = tf.Module()
    module.weights = list(model.variables)

    def serve(**inputs: Any) -> dict[str, Any]:
        args = [inputs[n] for n in names]
        out = model(args if len(args) > 1 else args[0], training=False)
        return {output_name: tf.squeeze(out, axis=1) if squeeze else out}

    module.serve = tf.function(serve)
    concrete = module.serve.get_concrete_function(**specs)
    tf.saved_model.save(module, str(folder), signatures={"serving_default": concrete})
    return folder


def save_all(model: Any, root: Path, output_name: str, squeeze: bool = False) -> dict[str, Path]:
    root.mkdir(parents=True)
    files = {"keras": root / "model.keras", "h5": root / "model.h5", "keras_savedmodel": root / "keras_sm"}
    model.save(files["keras"])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "You are saving your model as an HDF5 file", UserWarning)
        model.save(files["h5"])
    model.save(files["keras_savedmodel"], save_format="tf")  # tf_keras SavedModel: keras_metadata.pb
    files["generic_savedmodel"] = save_generic(model, root / "generic", output_name, squeeze)
    return files


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    root = tmp_path_factory.mktemp("tf-sources")
    pixels, tokens, regression = pixels_data(), tokens_data(), regression_data()
    out = {
        "pixels": Case(trained(pixels_model(), pixels, 3), pixels, {}, "probs"),
        "tokens": Case(trained(tokens_model(), tokens, 2), tokens, {}, "logits"),
        "regression": Case(trained(regression_model(), regression, 2), regression, {}, "value"),
    }
    for name, case in out.items():
        case.files = save_all(case.model, root / name, case.output_name, squeeze=name == "regression")
    return out


@pytest.fixture(scope="module")
def backend():
    return TENSORFLOW.backend()


@pytest.fixture(scope="module")
def bases(cases, backend) -> dict[tuple[str, str], Any]:
    """Every (model, format) loaded once through the backend."""
    return {
        (name, fmt): backend.load_base(spec(case.files[fmt]), Path("."), case.data)
        for name, case in cases.items()
        for fmt in FORMATS
    }


def spec(source: Path | str, **kwargs: Any) -> ModelSpec:
    return ModelSpec(framework="tensorflow", source=str(source), **kwargs)


EXPECTED_INPUTS = {
    "pixels": (TensorSpec("pixels", (8, 8, 1), "uint8"),),
    "tokens": (TensorSpec("input_ids", (6,), "int64"), TensorSpec("features", (3,), "float32")),
    "regression": (TensorSpec("x", (5,), "float32"),),
}
EXPECTED_OUTPUT = {"pixels": ("probabilities", 10), "tokens": ("logits", 3), "regression": ("values", 1)}
ALL = [pytest.param(name, fmt, id=f"{name}-{fmt}") for name in EXPECTED_INPUTS for fmt in FORMATS]


def keras_outputs(case: Case, split: Split) -> np.ndarray:
    x = [split.inputs[name] for name in case.model.input_names]
    out = np.asarray(case.model(x if len(x) > 1 else x[0], training=False))
    return out.reshape(len(out), -1)


# --- signatures, exports and runners --------------------------------------------------------------


@pytest.mark.parametrize(("name", "fmt"), ALL)
def test_load_base_reads_inputs_and_output_from_the_model(bases, name: str, fmt: str) -> None:
    base = bases[(name, fmt)]
    assert sorted(base.signature.inputs, key=lambda s: s.name) == sorted(
        EXPECTED_INPUTS[name], key=lambda s: s.name
    )
    assert (base.signature.output.kind, base.signature.output.width) == EXPECTED_OUTPUT[name]
    assert base.format == ("savedmodel" if "savedmodel" in fmt else fmt)
    generic = fmt == "generic_savedmodel"
    assert isinstance(base.model, GenericSavedModel) is generic
    assert base.info["keras"] is not generic


@pytest.mark.parametrize(("name", "fmt"), ALL)
def test_served_files_answer_like_the_model(
    cases, bases, backend, tmp_path: Path, name: str, fmt: str
) -> None:
    case, base = cases[name], bases[(name, fmt)]
    expected = keras_outputs(case, case.data.test)
    copied = backend.copy_user_artifact(base, tmp_path / "reference")
    exported = backend.export(backend.fresh(base), tmp_path / "variant", base.signature)
    for artifact in (copied, exported):
        got = TfArtifactRunner(artifact).predict_outputs(case.data.test.inputs)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
        assert artifact.extra["input_names"] == sorted(s.name for s in EXPECTED_INPUTS[name])
        assert artifact.signature == base.signature
    # the harness's own export: named inputs -> `scores`; a generic SavedModel (which nothing but
    # tf.ptq/tf.distill can change) is served as given, with its own output name
    generic = fmt == "generic_savedmodel"
    assert exported.extra["output_name"] == (case.output_name if generic else "scores")
    if generic:
        assert copied.extra["output_name"] == case.output_name


def test_runner_takes_single_examples_and_any_name_for_a_one_input_model(
    cases, bases, backend, tmp_path
) -> None:
    case, base = cases["pixels"], bases[("pixels", "generic_savedmodel")]
    runner = TfArtifactRunner(backend.copy_user_artifact(base, tmp_path))
    one = case.data.test.inputs["pixels"][0]
    assert runner.predict_outputs({"image": one}).shape == (1, 10)
    with pytest.raises(ValueError, match=r"pixels: uint8\[8, 8, 1\]"):
        runner.predict_outputs({"a": one, "b": one})


def test_a_model_that_does_not_fit_the_data_names_what_it_expects(cases, backend) -> None:
    tokens = cases["tokens"]
    with pytest.raises(
        UserError, match=r"expects inputs .*input_ids: int64\[6\].*the data has x: float32\[5\]"
    ):
        backend.load_base(spec(tokens.files["generic_savedmodel"]), Path("."), cases["regression"].data)
    data = tokens.data
    ten = Dataset("npz", data.inputs, "classification", data.test, data.train, num_classes=10)
    with pytest.raises(UserError, match=r"returns 3 scores per example; the data has 10 classes"):
        backend.load_base(spec(tokens.files["keras"]), Path("."), ten)


# --- recipes on a generic SavedModel --------------------------------------------------------------


@pytest.mark.parametrize("mode", ["dynamic", "int8"])
def test_ptq_converts_a_generic_savedmodel_that_agrees_with_the_float_model(
    cases, bases, backend, tmp_path: Path, mode: str
) -> None:
    case, base = cases["pixels"], bases[("pixels", "generic_savedmodel")]
    tflite, report = TfPtqRecipe({"mode": mode}).apply(backend.fresh(base), RecipeContext(data=case.data))
    assert isinstance(tflite, TFLiteModel)
    artifact = backend.export(tflite, tmp_path, base.signature)
    assert artifact.format == "tflite"
    assert artifact.extra["input_dtypes"] == {"pixels": "uint8"}  # integer pixels stay as they are
    assert artifact.extra["output_name"] == "probs"  # converted from the user's signature as given
    got = TfArtifactRunner(artifact).predict_outputs(case.data.test.inputs)
    agree = np.mean(got.argmax(axis=1) == keras_outputs(case, case.data.test).argmax(axis=1))
    assert agree >= 0.9
    if mode == "int8":
        assert report.details["calibration_examples"] == CALIBRATION_EXAMPLES
        assert report.details["calibration_split"] == "calibration"
        assert report.details["int8_tensors"] > 0
        assert f"dataset of {CALIBRATION_EXAMPLES} real examples of the calibration split" in report.notes[1]


@pytest.mark.parametrize("fmt", ["generic_savedmodel", "keras"])
def test_ptq_int8_maps_two_named_inputs_and_passes_token_ids_through(
    cases, bases, backend, tmp_path: Path, fmt: str
) -> None:
    case, base = cases["tokens"], bases[("tokens", fmt)]
    tflite, report = TfPtqRecipe({"mode": "int8", "io": "int8"}).apply(
        backend.fresh(base), RecipeContext(data=case.data)
    )
    artifact = backend.export(tflite, tmp_path, base.signature)
    assert artifact.extra["input_dtypes"] == {"features": "int8", "input_ids": "int64"}
    assert report.details["calibration_split"] == "train"
    got = TfArtifactRunner(artifact).predict_outputs(case.data.test.inputs)
    agree = np.mean(got.argmax(axis=1) == keras_outputs(case, case.data.test).argmax(axis=1))
    assert agree >= 0.85


def test_ptq_of_a_regression_savedmodel_returns_one_value_per_row(cases, bases, backend, tmp_path) -> None:
    case, base = cases["regression"], bases[("regression", "generic_savedmodel")]
    tflite, _ = TfPtqRecipe({"mode": "float16"}).apply(backend.fresh(base), RecipeContext(data=case.data))
    got = TfArtifactRunner(backend.export(tflite, tmp_path, base.signature)).predict_outputs(
        case.data.test.inputs
    )
    assert got.shape == (len(case.data.test), 1)
    np.testing.assert_allclose(got, keras_outputs(case, case.data.test), atol=0.05)


def test_distill_trains_a_student_on_uint8_pixels_from_a_generic_savedmodel(
    cases, bases, backend, tmp_path: Path
) -> None:
    case, base = cases["pixels"], bases[("pixels", "generic_savedmodel")]
    student, report = TfDistillRecipe({"epochs": 8, "student_hidden": [32]}).apply(
        backend.fresh(base), RecipeContext(data=case.data)
    )
    assert report.details["teacher_output"] == "probabilities"
    assert report.details["student_input"] == "pixels: uint8[8, 8, 1]"
    assert report.details["input_scale"] == pytest.approx(1 / 255)
    assert report.details["student_accuracy"] >= report.details["teacher_accuracy"] - 0.1
    assert report.details["teacher_param_count"] == case.model.count_params()
    artifact = backend.export(student, tmp_path, base.signature)
    got = TfArtifactRunner(artifact).predict_outputs(case.data.test.inputs)
    assert np.allclose(got.sum(axis=1), 1.0, atol=1e-4)  # the student keeps the teacher's softmax
    assert np.mean(got.argmax(axis=1) == case.data.test.labels) == pytest.approx(
        report.details["student_accuracy"], abs=0.005
    )


def test_distill_refuses_a_two_input_teacher(cases, bases, backend) -> None:
    case = cases["tokens"]
    with pytest.raises(UserError, match=r"one input; this model takes .*input_ids: int64\[6\]"):
        TfDistillRecipe({"epochs": 1}).apply(
            bases[("tokens", "generic_savedmodel")].model, RecipeContext(data=case.data)
        )


@pytest.mark.parametrize(
    "recipe",
    [TfPruneRecipe({"target_sparsity": 0.5}), TfClusterRecipe({}), TfQatRecipe({})],
    ids=lambda r: r.name,
)
def test_tfmot_recipes_refuse_a_generic_savedmodel_naming_what_to_supply(cases, bases, recipe) -> None:
    base = bases[("pixels", "generic_savedmodel")]
    with pytest.raises(UserError, match=r"without Keras metadata.*\.keras/\.h5 file or a python: factory"):
        recipe.apply(base.model, RecipeContext(data=cases["pixels"].data))


def test_prune_fine_tunes_a_two_input_model_and_a_regression_model(cases, bases) -> None:
    for name, metric in (("tokens", "accuracy"), ("regression", "mse")):
        case = cases[name]
        _, report = TfPruneRecipe({"target_sparsity": 0.5, "fine_tune_epochs": 1, "frequency": 2}).apply(
            bases[(name, "keras")].model, RecipeContext(data=case.data)
        )
        assert report.sparsity == pytest.approx(0.5, abs=0.02)
        assert f"{metric}_after" in report.details


# --- python: factories ----------------------------------------------------------------------------


def test_python_factory_with_weights_loads_the_trained_model(cases, backend, tmp_path: Path) -> None:
    case = cases["pixels"]
    (tmp_path / "pixels_factory.py").write_text(PIXELS_FACTORY)
    case.model.save_weights(tmp_path / "pixels.weights.h5")
    source = "python:pixels_factory:make_model"

    base = backend.load_base(spec(source, weights="pixels.weights.h5"), tmp_path, case.data)
    assert base.format == "python"
    assert base.path is None
    assert base.signature.inputs == EXPECTED_INPUTS["pixels"]
    expected = keras_outputs(case, case.data.test)
    np.testing.assert_allclose(
        backend.in_memory_outputs(backend.fresh(base), case.data.test.inputs, base.signature),
        expected,
        atol=1e-5,
    )
    artifact = backend.copy_user_artifact(base, tmp_path / "out")
    assert artifact.extra["converted_from"] == "python"
    np.testing.assert_allclose(
        TfArtifactRunner(artifact).predict_outputs(case.data.test.inputs), expected, atol=1e-5
    )

    untrained = backend.load_base(spec(source), tmp_path, case.data)
    assert not np.allclose(untrained.model(case.data.test.inputs["pixels"][:8]), expected[:8], atol=1e-3)


def test_python_factory_returning_something_else_is_a_user_error(cases, backend, tmp_path: Path) -> None:
    (tmp_path / "bad_factory.py").write_text("def make_model():\n    return 42\n")
    with pytest.raises(UserError, match=r"returned a builtins.int; expected a tf_keras model"):
        backend.load_base(spec("python:bad_factory:make_model"), tmp_path, cases["pixels"].data)
