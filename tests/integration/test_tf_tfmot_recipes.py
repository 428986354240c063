"""Real tfmot recipes on the built-in digits models: tf.prune, tf.cluster and tf.qat.

Each test checks what the recipe promises (sparsity reached, shared weight values, int8 tensors)
on the model it returns, measured here independently of the recipe's own report, and that test
accuracy stays within ACCURACY_TOLERANCE of the reference model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from harness.compression.base import RecipeContext
from harness.compression.tensorflow.cluster import TfClusterRecipe
from harness.compression.tensorflow.prune import TfPruneRecipe
from harness.compression.tensorflow.qat import TfQatRecipe
from harness.compression.tensorflow.tf_import import import_tf, import_tfmot
from harness.compression.tensorflow.tflite_model import TFLiteModel
from harness.errors import RunError, UserError
from harness.models.digits import load_digits_split
from harness.models.tf_models import get_reference_tf_model

tf, keras = import_tf()
KINDS = ["mlp", "cnn"]
ACCURACY_TOLERANCE = 0.03


@pytest.fixture(scope="module")
def data():
    return load_digits_split(seed=0)


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    cache_root = tmp_path_factory.mktemp("tf-model-cache")
    return {kind: get_reference_tf_model(kind, data, seed=0, cache_root=cache_root) for kind in KINDS}


@pytest.fixture(scope="module")
def context(data) -> RecipeContext:
    return RecipeContext(data=data, seed=0)


def keras_accuracy(model: Any, data) -> float:
    scores = np.asarray(model(data.x_test, training=False))
    return float(np.mean(scores.argmax(axis=1) == data.y_test))


def kernels(model: Any) -> dict[str, np.ndarray]:
    """Dense/Conv kernels by layer name, read from the layers themselves."""
    return {
        layer.name: layer.kernel.numpy()
        for layer in model.layers
        if isinstance(layer, keras.layers.Dense | keras.layers.Conv2D)
    }


def snapshot(model: Any) -> tuple[list[str], list[np.ndarray]]:
    return [type(layer).__name__ for layer in model.layers], [w.copy() for w in model.get_weights()]


def assert_unchanged(model: Any, before: tuple[list[str], list[np.ndarray]]) -> None:
    types, weights = snapshot(model)
    assert types == before[0]
    assert len(weights) == len(before[1])
    assert all(np.array_equal(a, b) for a, b in zip(weights, before[1], strict=True))


def tflite_run(content: bytes, x: np.ndarray) -> tuple[np.ndarray, dict[str, Any], dict[str, Any]]:
    """Scores of a TFLite model on `x` through ai_edge_litert, plus its input/output details."""
    interpreter = Interpreter(model_content=content)
    inp = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(inp["index"], [len(x), x.shape[1]])
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    feed = x.astype(np.float32)
    if inp["dtype"] in (np.int8, np.uint8):
        scale, zero = inp["quantization"]
        info = np.iinfo(inp["dtype"])
        feed = np.clip(np.round(feed / scale + zero), info.min, info.max).astype(inp["dtype"])
    interpreter.set_tensor(inp["index"], feed)
    interpreter.invoke()
    scores = interpreter.get_tensor(out["index"]).astype(np.float32)
    if out["dtype"] in (np.int8, np.uint8):
        scale, zero = out["quantization"]
        scores = (scores - zero) * scale
    return scores, inp, out


# --- tf.prune -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "target"), [("mlp", 0.8), ("cnn", 0.5)])
def test_prune_reaches_target_sparsity_on_every_kernel_and_keeps_accuracy(
    reference, data, context, kind: str, target: float
) -> None:
    ref = reference[kind].model
    before = snapshot(ref)
    pruned, report = TfPruneRecipe({"target_sparsity": target}).apply(ref, context)

    found = kernels(pruned)
    zeros = sum(int(np.count_nonzero(k == 0)) for k in found.values())
    reached = zeros / sum(k.size for k in found.values())
    assert reached == pytest.approx(target, abs=0.01)
    assert report.sparsity == pytest.approx(reached, abs=1e-9)
    for name, kernel in found.items():
        assert float(np.mean(kernel == 0)) == pytest.approx(target, abs=0.01), name
        assert report.details["layer_sparsity"][name] == pytest.approx(float(np.mean(kernel == 0)), abs=1e-6)
    # wrappers stripped; weightless layers (Reshape, pooling, Flatten) kept as they were
    assert [type(layer).__name__ for layer in pruned.layers] == before[0]
    assert not report.details["schedule"]["stopped_short"]
    assert "short" not in report.notes[0]
    assert keras_accuracy(pruned, data) >= reference[kind].test_accuracy - ACCURACY_TOLERANCE
    assert report.details["accuracy_after"] == pytest.approx(keras_accuracy(pruned, data))
    assert_unchanged(ref, before)


def test_prune_stops_short_of_target_when_end_step_lies_beyond_fine_tuning(reference, context) -> None:
    target, epochs = 0.8, 1
    steps = int(np.ceil(len(context.data.x_train) / 32)) * epochs
    recipe = TfPruneRecipe(
        {"target_sparsity": target, "end_step": 10 * steps, "fine_tune_epochs": epochs, "batch_size": 32}
    )
    pruned, report = recipe.apply(reference["mlp"].model, context)

    found = kernels(pruned)
    reached = sum(int(np.count_nonzero(k == 0)) for k in found.values()) / sum(k.size for k in found.values())
    assert 0.0 < reached < target - 0.3
    assert report.sparsity == pytest.approx(reached, abs=1e-9)
    schedule = report.details["schedule"]
    assert schedule["stopped_short"]
    assert schedule["fine_tune_steps"] == steps
    assert schedule["scheduled_sparsity_at_last_update"] == pytest.approx(reached, abs=0.01)
    assert "short of the target" in report.notes[0]


def test_prune_result_depends_only_on_seed(reference, data) -> None:
    params = {"target_sparsity": 0.5, "fine_tune_epochs": 1}
    first, _ = TfPruneRecipe(params).apply(reference["mlp"].model, RecipeContext(data=data, seed=3))
    again, _ = TfPruneRecipe(params).apply(reference["mlp"].model, RecipeContext(data=data, seed=3))
    other, _ = TfPruneRecipe(params).apply(reference["mlp"].model, RecipeContext(data=data, seed=4))
    assert all(np.array_equal(a, b) for a, b in zip(first.get_weights(), again.get_weights(), strict=True))
    assert not all(
        np.array_equal(a, b) for a, b in zip(first.get_weights(), other.get_weights(), strict=True)
    )


def test_prune_refuses_schedule_that_never_updates_masks_during_fine_tuning(reference, context) -> None:
    with pytest.raises(UserError, match="begin_step 10000"):
        TfPruneRecipe({"target_sparsity": 0.5, "begin_step": 10_000}).apply(reference["mlp"].model, context)


def test_2_4_pruning_holds_in_conv2d_and_dense_kernels_and_leaves_depthwise_dense(context) -> None:
    import_tfmot()  # imported the harness way first: tfmot warns on a bare first import
    from tensorflow_model_optimization.python.core.sparsity.keras.pruning_utils import is_pruned_m_by_n

    L = keras.layers
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((64,)),
            L.Reshape((8, 8, 1)),
            L.Conv2D(8, 3, activation="relu", name="conv"),
            L.DepthwiseConv2D(3, activation="relu", name="depthwise"),
            L.Conv2D(12, 1, name="pointwise"),
            L.Flatten(),
            L.Dense(10, name="logits"),
        ]
    )
    params = {"sparsity_m_by_n": [2, 4], "fine_tune_epochs": 1, "frequency": 5}
    pruned, report = TfPruneRecipe(params).apply(model, context)

    structured = report.details["structured"]
    assert structured["pattern"] == "2:4"
    assert structured["pattern_holds"] is True
    assert structured["pruned_layers"] == ["conv", "logits", "pointwise"]
    assert list(structured["not_pruned"]) == ["depthwise"]
    assert "DepthwiseConv2D" in structured["not_pruned"]["depthwise"]
    for name in ("pointwise", "logits"):  # tfmot's own check, in TFLite's layout
        kernel = pruned.get_layer(name).kernel
        assert is_pruned_m_by_n(kernel, m_by_n=(2, 4), last_channel="C_OUT"), name
        assert float(np.mean(kernel.numpy() == 0)) == pytest.approx(0.5, abs=0.01), name
    assert np.count_nonzero(pruned.get_layer("depthwise").depthwise_kernel.numpy() == 0) == 0
    assert "the 2:4 pattern holds in the stripped kernels" in report.notes[0]
    assert "1 DepthwiseConv2D" in report.notes[0]


# --- tf.cluster -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_cluster_leaves_exactly_cluster_count_values_per_kernel_without_touching_input(
    reference, data, context, kind: str
) -> None:
    ref = reference[kind].model
    before = snapshot(ref)
    clusters = 8
    clustered, report = TfClusterRecipe({"clusters": clusters}).apply(ref, context)

    found = kernels(clustered)
    assert set(found) == set(kernels(ref))
    for name, kernel in found.items():
        unique = np.unique(kernel).size
        assert unique <= clusters, name
        if isinstance(clustered.get_layer(name), keras.layers.Dense) and kernel.size > clusters:
            assert unique == clusters, name
        assert report.details["unique_values"][name] == unique
    assert [type(layer).__name__ for layer in clustered.layers] == before[0]
    assert keras_accuracy(clustered, data) >= reference[kind].test_accuracy - ACCURACY_TOLERANCE
    assert_unchanged(ref, before)


# --- tf.qat ---------------------------------------------------------------------------------------


# int8 and uint8 I/O differ only in the converter's I/O type: each kind covers one of them
@pytest.mark.parametrize(
    ("kind", "io"), [("mlp", "float"), ("mlp", "int8"), ("cnn", "float"), ("cnn", "uint8")]
)
def test_qat_converts_to_int8_tflite_with_requested_io_and_keeps_accuracy(
    reference, data, context, kind: str, io: str
) -> None:
    ref = reference[kind].model
    before = snapshot(ref)
    result, report = TfQatRecipe({"io": io, "fine_tune_epochs": 1}).apply(ref, context)

    assert isinstance(result, TFLiteModel)
    assert result.quantization == "qat-int8"
    interpreter = Interpreter(model_content=result.content)
    interpreter.allocate_tensors()
    int8 = [t for t in interpreter.get_tensor_details() if t["dtype"] == np.int8]
    # at least every Dense/Conv kernel is stored as int8
    assert len(int8) >= len(kernels(ref))
    assert report.details["int8_tensors"] == len(int8)
    assert list(interpreter.get_signature_list()) == ["serving_default"]

    scores, inp, out = tflite_run(result.content, data.x_test)
    expected = {"int8": np.int8, "uint8": np.uint8, "float": np.float32}[io]
    assert inp["dtype"] == expected
    assert out["dtype"] == expected
    assert result.input_dtype == result.output_dtype == np.dtype(expected).name
    accuracy = float(np.mean(scores.argmax(axis=1) == data.y_test))
    assert accuracy >= reference[kind].test_accuracy - ACCURACY_TOLERANCE
    assert report.details["accuracy_tflite"] == pytest.approx(accuracy, abs=0.005)
    assert_unchanged(ref, before)


def test_qat_names_the_unsupported_layer(context) -> None:
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(16),
            keras.layers.LayerNormalization(name="norm"),
            keras.layers.Dense(10),
        ]
    )
    with pytest.raises(UserError, match=r"tf\.qat cannot quantize this model: Layer norm"):
        TfQatRecipe({}).apply(model, context)


# --- refusals shared by all three -----------------------------------------------------------------

RECIPES = [
    TfPruneRecipe({"target_sparsity": 0.5}),
    TfClusterRecipe({}),
    TfQatRecipe({}),
]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: r.name)
def test_recipe_needs_context_for_fine_tuning(reference, recipe) -> None:
    with pytest.raises(RunError, match="RecipeContext"):
        recipe.apply(reference["mlp"].model, None)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: r.name)
def test_recipe_refuses_tflite_and_subclassed_models(context, recipe) -> None:
    with pytest.raises(UserError, match="already a TFLite model"):
        recipe.apply(TFLiteModel(b"", "int8", "float32", "float32"), context)

    class Subclassed(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.dense = keras.layers.Dense(10)

        def call(self, x: Any) -> Any:
            return self.dense(x)

    model = Subclassed()
    model(np.zeros((1, 64), np.float32))
    with pytest.raises(UserError, match="subclassed"):
        recipe.apply(model, context)


def test_cluster_refuses_model_whose_kernels_are_smaller_than_cluster_count(context) -> None:
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(2), keras.layers.Dense(10)])
    with pytest.raises(UserError, match="at least clusters=256"):
        TfClusterRecipe({"clusters": 256, "fine_tune_epochs": 1}).apply(model, context)


# --- composing with tf.prune ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def pruned_mlp(reference, context) -> Any:
    pruned, _ = TfPruneRecipe({"target_sparsity": 0.6, "fine_tune_epochs": 2}).apply(
        reference["mlp"].model, context
    )
    return pruned


def test_cluster_after_prune_keeps_the_zeros(pruned_mlp, data, context) -> None:
    clustered, report = TfClusterRecipe({"clusters": 8, "fine_tune_epochs": 1}).apply(pruned_mlp, context)

    assert report.details["preserve_sparsity"]
    for name, kernel in kernels(clustered).items():
        before = kernels(pruned_mlp)[name]
        assert np.all(kernel[before == 0] == 0), name
        assert np.unique(kernel).size <= 8, name
    assert keras_accuracy(clustered, data) >= keras_accuracy(pruned_mlp, data) - ACCURACY_TOLERANCE


def test_qat_after_prune_keeps_the_zeros_in_the_int8_kernels(pruned_mlp, context) -> None:
    from harness.compression.tensorflow.stats import read_tflite

    result, report = TfQatRecipe({"fine_tune_epochs": 1}).apply(pruned_mlp, context)

    assert report.details["preserve_sparsity"]
    weights = [t.values for t in read_tflite(result.content).parameters if t.values.ndim == 2]
    assert len(weights) == len(kernels(pruned_mlp))
    assert all(w.dtype == np.int8 for w in weights)
    zeros = sum(int(np.count_nonzero(w == 0)) for w in weights) / sum(w.size for w in weights)
    assert zeros == pytest.approx(0.6, abs=0.01)
