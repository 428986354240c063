"""Real torch compression: pruning and int8 (torchao quantize_ and PT2E) on the digits MLP and on
user models the harness never built (a CNN, a two-input text model, a regressor) given as python:
factories or torch.export programs; exports that load back and predict like the compressed model."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from harness.compression.backend import BaseModel
from harness.compression.base import RecipeContext
from harness.compression.pipeline import prepare_variant
from harness.compression.torch.backend import TorchBackend
from harness.compression.torch.distill import TorchDistillRecipe
from harness.compression.torch.export import TorchArtifactRunner, export_module
from harness.compression.torch.int8 import TorchInt8Recipe
from harness.compression.torch.program import graph_weights, is_pt2e_quantized
from harness.compression.torch.prune import TorchPruneRecipe
from harness.compression.torch.stats import dense, linear_layers, sparsity_stats
from harness.data.dataset import Dataset
from harness.data.tensors import OutputSpec, Signature
from harness.errors import UserError
from harness.models.digits import load_digits_arrays, load_digits_split
from harness.models.torch_mlp import cache_dir, get_reference_mlp
from harness.scenario.schema import ModelSpec, RecipeStep, VariantSpec
from tests.integration.torch_user_models import MODELS, Saved, save_sources

INT8_MODES = ["weight_only", "dynamic", "static"]
# top-1 agreement of an int8 model with its float original on the float model's own labels
AGREEMENT = 0.95


@pytest.fixture(scope="module")
def digits():
    return load_digits_split(seed=0)


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="module")
def reference(digits, cache_root: Path):
    return get_reference_mlp(digits, seed=0, cache_root=cache_root)


@pytest.fixture
def mlp(reference) -> torch.nn.Module:
    """A private copy of the reference MLP that a test may compress in place."""
    return copy.deepcopy(reference.module)


@pytest.fixture(scope="module")
def mlp_signature(digits) -> Signature:
    return Signature(inputs=digits.inputs, output=OutputSpec("logits", 10), task="classification")


@pytest.fixture
def use_cache(monkeypatch: pytest.MonkeyPatch, cache_root: Path) -> None:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(cache_root))


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Saved]:
    return save_sources(tmp_path_factory.mktemp("scenario"), ("cnn", "text", "regression"))


@pytest.fixture(scope="module")
def backend() -> TorchBackend:
    return TorchBackend()


def base_of(backend: TorchBackend, item: Saved, form: str) -> BaseModel:
    return backend.load_base(item.spec(form), item.folder, item.data)


def context_of(item: Saved, base: BaseModel) -> RecipeContext:
    return RecipeContext(data=item.data, seed=0, signature=base.signature)


def labels_of(module: Any, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return module(torch.tensor(x)).argmax(dim=1).numpy()


def accuracy(labels: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(labels == truth))


def weight_sparsity(module: torch.nn.Module) -> dict[str, float]:
    return {name: float((dense(layer.weight) == 0).float().mean()) for name, layer in linear_layers(module)}


def variant(name: str, *steps: tuple[str, dict[str, Any]]) -> VariantSpec:
    return VariantSpec(name=name, steps=[RecipeStep(recipe=r, params=p) for r, p in steps])


def agreement(item: Saved, outputs: np.ndarray) -> float:
    """Top-1 agreement with the float model (its labels); for regression, 1 - mean error / spread."""
    reference = item.reference()
    if MODELS[item.kind].task == "regression":
        return 1.0 - float(np.abs(outputs - reference).mean() / reference.std())
    return accuracy(outputs.argmax(axis=1), reference.argmax(axis=1))


# --- digits data and the built-in MLP -------------------------------------------------------------


def test_digits_split_is_stratified_scaled_and_reproducible(digits) -> None:
    assert digits.x_train.shape == (1347, 64)
    assert digits.x_test.shape == (450, 64)
    assert digits.x_train.dtype == np.float32
    assert digits.y_test.dtype == np.int64
    assert digits.x_train.min() >= 0.0
    assert digits.x_train.max() == 1.0
    test_share = np.bincount(digits.y_test, minlength=10) / np.bincount(
        np.concatenate([digits.y_train, digits.y_test]), minlength=10
    )
    assert np.all(np.abs(test_share - 0.25) < 0.02)
    assert load_digits_split(0).fingerprint() == digits.fingerprint()
    assert load_digits_split(1).fingerprint() != digits.fingerprint()


def test_digits_are_read_from_the_data_scikit_learn_ships() -> None:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels, labels = load_digits_arrays()
    assert np.array_equal(pixels, bunch.data)
    assert np.array_equal(labels, bunch.target)


def test_reference_mlp_is_accurate_and_second_build_loads_from_cache(
    digits, reference, cache_root: Path
) -> None:
    assert reference.test_accuracy >= 0.95
    assert [tuple(p.shape) for p in reference.module.parameters()] == [
        (128, 64),
        (128,),
        (64, 128),
        (64,),
        (10, 64),
        (10,),
    ]
    mtime = reference.cache_path.stat().st_mtime_ns
    start = time.perf_counter()
    again = get_reference_mlp(digits, seed=0, cache_root=cache_root)
    elapsed = time.perf_counter() - start
    assert again.cache_hit
    assert again.cache_path == reference.cache_path
    assert reference.cache_path.stat().st_mtime_ns == mtime  # not rewritten
    assert elapsed < reference.train_seconds
    for a, b in zip(reference.module.state_dict().values(), again.module.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert again.test_accuracy == reference.test_accuracy


def test_training_is_deterministic_across_fresh_caches(digits, reference, tmp_path: Path) -> None:
    retrained = get_reference_mlp(digits, seed=0, cache_root=tmp_path)
    assert not retrained.cache_hit
    for a, b in zip(
        reference.module.state_dict().values(), retrained.module.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def test_cache_dir_follows_harness_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.delenv("HARNESS_CACHE_DIR")
    assert cache_dir() == Path.home() / ".cache" / "harness"


def test_builtin_mlp_refuses_data_it_cannot_take(backend: TorchBackend, saved: dict[str, Saved]) -> None:
    with pytest.raises(
        UserError,
        match=r"built-in MLP takes one flat float input .* the data has input_ids: "
        r"int64\[12\], features: float32\[4\]",
    ):
        backend.load_base(
            ModelSpec(framework="torch", source="builtin:mlp"), saved["text"].folder, saved["text"].data
        )


# --- pruning --------------------------------------------------------------------------------------


def test_layer_pruning_reaches_requested_sparsity_in_every_layer(mlp) -> None:
    biases = [layer.bias.clone() for _, layer in linear_layers(mlp)]
    mlp, report = TorchPruneRecipe({"amount": 0.5, "scope": "layer"}).apply(mlp)
    for name, reached in weight_sparsity(mlp).items():
        assert reached == pytest.approx(0.5, abs=0.01), name
    assert report.sparsity == pytest.approx(0.5, abs=0.01)
    assert set(report.details["layer_sparsity"]) == {"0.weight", "2.weight", "4.weight"}
    assert report.sparsity_all_params < report.sparsity  # biases are not pruned
    for (_, layer), bias in zip(linear_layers(mlp), biases, strict=True):
        assert torch.equal(layer.bias, bias)
        # plain weights: no mask, no reparametrisation, no hook left behind
        assert not hasattr(layer, "weight_mask")
        assert not hasattr(layer, "weight_orig")
        assert not layer._forward_pre_hooks


def test_global_pruning_reaches_requested_sparsity_overall_but_unevenly_per_layer(mlp) -> None:
    mlp, report = TorchPruneRecipe({"amount": 0.5, "scope": "global"}).apply(mlp)
    stats = sparsity_stats(mlp)
    assert stats["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert report.sparsity == pytest.approx(stats["sparsity"])
    per_layer = list(weight_sparsity(mlp).values())
    assert max(per_layer) - min(per_layer) > 0.05  # one threshold for all layers, not 50% of each


@pytest.mark.parametrize("amount", [0.3, 0.8])
def test_pruning_amount_sets_the_sparsity(mlp, amount: float) -> None:
    _, report = TorchPruneRecipe({"amount": amount, "scope": "global"}).apply(mlp)
    assert report.sparsity == pytest.approx(amount, abs=0.01)


@pytest.mark.parametrize("scope", ["layer", "global"])
@pytest.mark.parametrize(("kind", "form"), [("cnn", "pt2"), ("text", "pt2"), ("cnn", "python+state_dict")])
def test_pruning_acts_on_linear_and_conv_weights_of_programs_and_factories(
    backend: TorchBackend, saved: dict[str, Saved], tmp_path: Path, kind: str, form: str, scope: str
) -> None:
    item = saved[kind]
    base = base_of(backend, item, form)
    model = backend.fresh(base)
    untouched = {
        name: t.detach().clone() for name, t in model.named_parameters() if "bias" in name or "bag" in name
    }
    model, report = TorchPruneRecipe({"amount": 0.6, "scope": scope}).apply(model, context_of(item, base))
    expected_layers = {
        "cnn": {"conv1.weight", "conv2.weight", "head.weight"},
        "text": {"hidden.weight", "out.weight"},
    }
    assert set(report.details["layer_sparsity"]) == expected_layers[kind]
    assert report.sparsity == pytest.approx(0.6, abs=0.01)
    if scope == "layer":
        assert all(v == pytest.approx(0.6, abs=0.02) for v in report.details["layer_sparsity"].values())
    assert f"requested 0.6, reached {report.sparsity:.4f}" in report.notes[0]
    for name, t in model.named_parameters():
        if name in untouched:  # biases and the embedding table are not linear/conv weights
            assert torch.equal(t, untouched[name]), name

    artifact = backend.export(model, tmp_path, base.signature)
    metrics, details = backend.measure_artifact(artifact)
    assert metrics["sparsity"] == pytest.approx(report.sparsity, abs=1e-6)
    assert set(details["layer_sparsity"]) == expected_layers[kind]
    runner = TorchArtifactRunner(artifact)
    np.testing.assert_allclose(
        runner.predict_outputs(item.data.test.inputs),
        backend.in_memory_outputs(model, item.data.test.inputs, base.signature),
        rtol=1e-5,
        atol=1e-5,
    )


def test_pruning_a_program_without_linear_or_conv_weights_is_refused(tmp_path: Path) -> None:
    class Scale(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gain = torch.nn.Parameter(torch.ones(4, 4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.gain.sum()

    program = torch.export.export(Scale(), (torch.zeros(2, 4),), dynamic_shapes=({0: torch.export.Dim("b")},))
    with pytest.raises(
        UserError, match=r"needs linear or conv weights to prune, but the torch\.export program has"
    ):
        TorchPruneRecipe({"amount": 0.5}).apply(program.module())


# --- int8: torchao quantize_ on nn.Linear ---------------------------------------------------------


@pytest.mark.parametrize("mode", ["weight_only", "dynamic"])
def test_int8_stores_int8_weights_and_keeps_accuracy(digits, reference, mlp, mode: str) -> None:
    originals = {name: layer.weight.detach().clone() for name, layer in linear_layers(mlp)}
    mlp, report = TorchInt8Recipe({"mode": mode}).apply(mlp)
    for name, layer in linear_layers(mlp):
        weight = layer.weight
        assert weight.qdata.dtype == torch.int8, name
        assert weight.qdata.shape == originals[name].shape
        # dequantized values sit within half a quantisation step of the float weights
        step = weight.scale.reshape(-1, 1)
        assert torch.all((weight.dequantize() - originals[name]).abs() <= step / 2 + 1e-6), name
    assert set(report.details["quantized_layers"]) == set(originals)
    assert abs(accuracy(labels_of(mlp, digits.x_test), digits.y_test) - reference.test_accuracy) <= 0.02


def test_prune_then_int8_keeps_the_zeros_and_the_accuracy(digits, mlp) -> None:
    mlp, _ = TorchPruneRecipe({"amount": 0.5, "scope": "global"}).apply(mlp)
    pruned_accuracy = accuracy(labels_of(mlp, digits.x_test), digits.y_test)
    mlp, report = TorchInt8Recipe({"mode": "weight_only"}).apply(mlp)
    assert all(layer.weight.qdata.dtype == torch.int8 for _, layer in linear_layers(mlp))
    assert report.sparsity >= 0.5 - 0.01  # zero stays exactly zero under symmetric quantisation
    assert abs(accuracy(labels_of(mlp, digits.x_test), digits.y_test) - pruned_accuracy) <= 0.02


def test_prune_after_int8_and_int8_twice_are_refused(mlp) -> None:
    mlp, _ = TorchInt8Recipe({"mode": "weight_only"}).apply(mlp)
    with pytest.raises(UserError, match=r"before torch\.int8"):
        TorchPruneRecipe({"amount": 0.5}).apply(mlp)
    with pytest.raises(UserError, match="already quantized"):
        TorchInt8Recipe({"mode": "dynamic"}).apply(mlp)


# --- int8: PT2E on torch.export programs ----------------------------------------------------------


@pytest.mark.parametrize("mode", ["static", "dynamic"])
@pytest.mark.parametrize("kind", ["cnn", "text", "regression"])
def test_pt2e_int8_on_a_pt2_program_loads_back_and_agrees_with_float(
    backend: TorchBackend, saved: dict[str, Saved], tmp_path: Path, kind: str, mode: str
) -> None:
    item = saved[kind]
    base = base_of(backend, item, "pt2")
    model, report = TorchInt8Recipe({"mode": mode}).apply(backend.fresh(base), context_of(item, base))
    assert is_pt2e_quantized(model)
    quantized = report.details["quantized_layers"]
    assert (
        set(quantized)
        == {
            "cnn": {"conv1.weight", "conv2.weight", "head.weight"},
            "text": {"hidden.weight", "out.weight"},
            "regression": {"net.0.weight", "net.2.weight"},
        }[kind]
    )
    assert report.details["calibration_examples"] == (len(item.data.train) if mode == "static" else 0)
    assert all(w.quantized for w in graph_weights(model))  # no float copy of a weight is left behind

    artifact = backend.export(model, tmp_path, base.signature)
    assert artifact.extra["quantization"] == "pt2e"
    program = torch.export.load(str(artifact.path))  # loads back (the op library is imported by now)
    assert any("quantized_decomposed" in str(n.target) for n in program.graph.nodes)
    outputs = TorchArtifactRunner(artifact).predict_outputs(item.data.test.inputs)
    assert agreement(item, outputs) >= AGREEMENT
    metrics, _ = backend.measure_artifact(artifact)
    assert metrics["param_count"] == sum(p.numel() for p in item.module.parameters())


def test_pt2e_static_on_a_factory_module_exports_it_first(
    backend: TorchBackend, saved: dict[str, Saved], tmp_path: Path
) -> None:
    item = saved["cnn"]
    base = base_of(backend, item, "python+safetensors")
    model, report = TorchInt8Recipe({"mode": "static", "calibration_samples": 64}).apply(
        backend.fresh(base), context_of(item, base)
    )
    assert report.details["calibration_examples"] == 64
    assert "on the exported module" in report.notes[0]
    artifact = backend.export(model, tmp_path, base.signature)
    assert agreement(item, TorchArtifactRunner(artifact).predict_outputs(item.data.test.inputs)) >= AGREEMENT


def test_prune_then_pt2e_int8_keeps_the_zeros_in_the_int8_file(
    backend: TorchBackend, saved: dict[str, Saved], tmp_path: Path
) -> None:
    item = saved["cnn"]
    base = base_of(backend, item, "pt2")
    context = context_of(item, base)
    model, pruned = TorchPruneRecipe({"amount": 0.5}).apply(backend.fresh(base), context)
    model, quantized = TorchInt8Recipe({"mode": "static"}).apply(model, context)
    assert quantized.sparsity == pytest.approx(pruned.sparsity, abs=0.01)  # symmetric int8 keeps zeros
    metrics, _ = backend.measure_artifact(backend.export(model, tmp_path, base.signature))
    assert metrics["sparsity"] == pytest.approx(pruned.sparsity, abs=0.01)
    with pytest.raises(UserError, match=r"cannot prune an int8 program; put torch\.prune before torch\.int8"):
        TorchPruneRecipe({"amount": 0.5}).apply(model, context)
    with pytest.raises(UserError, match="already quantized"):
        TorchInt8Recipe({"mode": "dynamic"}).apply(model, context)


def test_int8_modes_a_program_or_data_cannot_take_are_refused(
    backend: TorchBackend, saved: dict[str, Saved]
) -> None:
    item = saved["cnn"]
    base = base_of(backend, item, "pt2")
    with pytest.raises(
        UserError, match=r"mode weight_only swaps the weights of nn\.Linear modules.*use mode static"
    ):
        TorchInt8Recipe({"mode": "weight_only"}).apply(backend.fresh(base), context_of(item, base))
    unlabelled = Dataset(
        name="synthetic", inputs=item.data.inputs, task="classification", test=item.data.test, num_classes=4
    )
    with pytest.raises(
        UserError, match=r"mode static calibrates activation scales on data, but the data has no"
    ):
        TorchInt8Recipe({"mode": "static"}).apply(
            backend.fresh(base), RecipeContext(data=unlabelled, signature=base.signature)
        )


# --- export ---------------------------------------------------------------------------------------

COMPRESSIONS = {
    "reference": [],
    "prune": [(TorchPruneRecipe, {"amount": 0.5, "scope": "global"})],
    "int8_weight_only": [(TorchInt8Recipe, {"mode": "weight_only"})],
    "int8_dynamic": [(TorchInt8Recipe, {"mode": "dynamic"})],
    "prune_int8": [(TorchPruneRecipe, {"amount": 0.5, "scope": "global"}), (TorchInt8Recipe, {})],
    "int8_static": [(TorchInt8Recipe, {"mode": "static"})],
}


@pytest.mark.parametrize("name", list(COMPRESSIONS))
def test_exported_pt2_predicts_exactly_like_the_in_memory_model(
    backend: TorchBackend, digits, mlp, mlp_signature: Signature, tmp_path: Path, name: str
) -> None:
    context = RecipeContext(data=digits, signature=mlp_signature)
    for recipe_cls, params in COMPRESSIONS[name]:
        mlp, _ = recipe_cls(params).apply(mlp, context)
    expected = labels_of(mlp, digits.x_test)
    artifact, seconds = export_module(mlp, tmp_path, mlp_signature)
    assert artifact.path == tmp_path / "model.pt2"
    assert artifact.format == "torch.export"
    assert artifact.signature == mlp_signature
    assert seconds > 0
    runner = TorchArtifactRunner(artifact)
    assert np.array_equal(runner.predict_labels(digits.test.inputs), expected)
    # the batch dimension is dynamic: one example and a large batch both run
    assert runner.predict_labels(digits.x_test[:1]).shape == (1,)
    assert runner.predict_labels(np.tile(digits.x_test, (12, 1))).shape == (5400,)
    # the file's figures count every Linear weight, whichever way it was quantized
    metrics, details = backend.measure_artifact(artifact)
    assert metrics["param_count"] == 64 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10
    assert metrics["sparsity"] == pytest.approx(0.5 if "prune" in name else 0.0, abs=0.01)
    assert len(details["layer_sparsity"]) == 3


def test_quantized_pt2_loads_in_a_fresh_process_and_predicts_the_same(
    digits, mlp, mlp_signature: Signature, tmp_path: Path
) -> None:
    modes = INT8_MODES
    expected, imports = {}, {}
    context = RecipeContext(data=digits, signature=mlp_signature)
    for mode in modes:
        quantized, _ = TorchInt8Recipe({"mode": mode}).apply(copy.deepcopy(mlp), context)
        artifact, _ = export_module(quantized, tmp_path / mode, mlp_signature)
        expected[mode] = TorchArtifactRunner(artifact).predict_labels(digits.x_test)
        imports[mode] = artifact.extra.get("imports", [])
    np.save(tmp_path / "x.npy", digits.x_test)
    (tmp_path / "imports.json").write_text(json.dumps(imports))
    # what a TorchServe worker has: torch and numpy, the modules the artifact lists, nothing from
    # the harness; torchao tensors are imported by torch.export.load itself
    script = textwrap.dedent(
        """
        import importlib, json, sys
        import numpy as np
        import torch

        folder = sys.argv[1]
        x = torch.tensor(np.load(f"{folder}/x.npy"))
        for mode, imports in json.load(open(f"{folder}/imports.json")).items():
            for name in imports:
                if name != "torchao":
                    importlib.import_module(name)
            module = torch.export.load(f"{folder}/{mode}/model.pt2").module()
            with torch.inference_mode():
                np.save(f"{folder}/{mode}.npy", module(x).argmax(dim=1).numpy())
        print("harness" in sys.modules)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        check=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
        capture_output=True,
        text=True,
    )
    assert done.stdout.strip() == "False"
    for mode in modes:
        assert np.array_equal(np.load(tmp_path / f"{mode}.npy"), expected[mode]), mode


# --- distillation of user models ------------------------------------------------------------------


def test_distill_takes_a_float_image_teacher_and_serves_a_student_with_the_same_input(
    backend: TorchBackend, saved: dict[str, Saved], tmp_path: Path
) -> None:
    item = saved["cnn"]
    base = base_of(backend, item, "pt2")
    student, report = TorchDistillRecipe({"epochs": 3, "student_hidden": [16]}).apply(
        backend.fresh(base), context_of(item, base)
    )
    assert report.details["student_layers"] == [3 * 16 * 16, 16, 4]
    assert isinstance(student[0], torch.nn.Flatten)
    artifact = backend.export(student, tmp_path, base.signature)
    assert TorchArtifactRunner(artifact).predict_outputs(item.data.test.inputs).shape == (
        len(item.data.test),
        4,
    )


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        (
            "text",
            r"trains an MLP student on one float input; the model takes 2 \(input_ids: int64\[12\], features",
        ),
        ("regression", r"distils class scores; it needs a classification model"),
    ],
)
def test_distill_refuses_models_an_mlp_student_cannot_replace(
    backend: TorchBackend, saved: dict[str, Saved], kind: str, message: str
) -> None:
    item = saved[kind]
    base = base_of(backend, item, "pt2")
    with pytest.raises(UserError, match=message):
        TorchDistillRecipe({"epochs": 1}).apply(backend.fresh(base), context_of(item, base))


# --- the pipeline ---------------------------------------------------------------------------------


def test_prepare_variant_compresses_a_factory_model_and_measures_the_exported_file(
    saved: dict[str, Saved], tmp_path: Path
) -> None:
    item = saved["cnn"]
    steps = [("torch.prune", {"amount": 0.5, "scope": "global"}), ("torch.int8", {"mode": "static"})]
    prepared = prepare_variant(
        item.spec("python+state_dict"),
        variant("pruned-int8", *steps),
        item.folder,
        tmp_path / "out",
        item.data,
    )
    assert prepared.artifact.path == tmp_path / "out" / "model.pt2"
    assert [r["recipe"] for r in prepared.compression] == [s[0] for s in steps]
    m = prepared.metrics
    assert m["model_size_bytes"] == prepared.artifact.path.stat().st_size
    assert m["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert m["param_count"] == sum(p.numel() for p in item.module.parameters())
    assert m["accuracy_inprocess"] >= 0.85  # agreement with the float model, whose labels these are
    assert not prepared.warnings


def test_prepare_variant_serves_a_user_pt2_as_given(
    digits, mlp, mlp_signature: Signature, tmp_path: Path
) -> None:
    artifact, _ = export_module(mlp, tmp_path / "models", mlp_signature)
    spec = ModelSpec(framework="torch", source="models/model.pt2")
    prepared = prepare_variant(spec, variant("reference"), tmp_path, tmp_path / "out", digits)
    assert prepared.artifact.format == "torch.export"
    assert prepared.artifact.path.read_bytes() == artifact.path.read_bytes()
    assert prepared.metrics["accuracy_inprocess"] == accuracy(labels_of(mlp, digits.x_test), digits.y_test)


def test_missing_or_unreadable_user_model_is_a_user_error_naming_the_path(digits, tmp_path: Path) -> None:
    missing = ModelSpec(framework="torch", source="nowhere/model.pt2")
    with pytest.raises(UserError, match=r"nowhere/model\.pt2 does not exist; expected a TorchScript"):
        prepare_variant(missing, variant("reference"), tmp_path, tmp_path / "out", digits)
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(UserError, match=r"junk\.pt could not be loaded as torchscript"):
        prepare_variant(
            ModelSpec(framework="torch", source="junk.pt"),
            variant("reference"),
            tmp_path,
            tmp_path / "o",
            digits,
        )
