"""Real compression of the digits MLP: pruning, torchao int8, export to .pt2, accuracy on the file."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from harness.compression.pipeline import prepare_variant
from harness.compression.torch import backend as torch_backend
from harness.compression.torch.export import TorchArtifactRunner, export_module
from harness.compression.torch.int8 import TorchInt8Recipe
from harness.compression.torch.prune import TorchPruneRecipe
from harness.compression.torch.stats import dense, linear_layers, sparsity_stats
from harness.errors import UserError
from harness.metrics.accuracy import accuracy, artifact_accuracy
from harness.models.digits import load_digits_arrays, load_digits_split
from harness.models.torch_mlp import build_mlp, cache_dir, get_reference_mlp
from harness.scenario.schema import ModelSpec, RecipeStep, VariantSpec
from tests.conftest import ROOT

INT8_MODES = ["weight_only", "dynamic"]


@pytest.fixture(scope="module")
def data():
    return load_digits_split(seed=0)


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="module")
def reference(data, cache_root: Path):
    return get_reference_mlp(data, seed=0, cache_root=cache_root)


@pytest.fixture
def model(reference) -> torch.nn.Module:
    """A private copy of the reference MLP that a test may compress in place."""
    return copy.deepcopy(reference.module)


@pytest.fixture
def use_cache(monkeypatch: pytest.MonkeyPatch, cache_root: Path) -> None:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(cache_root))


def labels_of(module: Any, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return module(torch.tensor(x)).argmax(dim=1).numpy()


def weight_sparsity(module: torch.nn.Module) -> dict[str, float]:
    return {name: float((dense(layer.weight) == 0).float().mean()) for name, layer in linear_layers(module)}


def variant(name: str, *steps: tuple[str, dict[str, Any]]) -> VariantSpec:
    return VariantSpec(name=name, steps=[RecipeStep(recipe=r, params=p) for r, p in steps])


# --- data and reference model -------------------------------------------------------------------


def test_digits_split_is_stratified_scaled_and_reproducible(data) -> None:
    assert data.x_train.shape == (1347, 64)
    assert data.x_test.shape == (450, 64)
    assert data.x_train.dtype == np.float32
    assert data.y_test.dtype == np.int64
    assert data.x_train.min() >= 0.0
    assert data.x_train.max() == 1.0
    test_share = np.bincount(data.y_test, minlength=10) / np.bincount(
        np.concatenate([data.y_train, data.y_test]), minlength=10
    )
    assert np.all(np.abs(test_share - 0.25) < 0.02)
    assert load_digits_split(0).fingerprint() == data.fingerprint()
    assert load_digits_split(1).fingerprint() != data.fingerprint()


def test_digits_are_read_from_the_data_scikit_learn_ships(data) -> None:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels, labels = load_digits_arrays()
    assert np.array_equal(pixels, bunch.data)
    assert np.array_equal(labels, bunch.target)


def test_reference_mlp_is_accurate_and_second_build_loads_from_cache(
    data, reference, cache_root: Path
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
    again = get_reference_mlp(data, seed=0, cache_root=cache_root)
    elapsed = time.perf_counter() - start
    assert again.cache_hit
    assert again.cache_path == reference.cache_path
    assert reference.cache_path.stat().st_mtime_ns == mtime  # not rewritten
    assert elapsed < reference.train_seconds
    for a, b in zip(reference.module.state_dict().values(), again.module.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert again.test_accuracy == reference.test_accuracy


def test_training_is_deterministic_across_fresh_caches(data, reference, tmp_path: Path) -> None:
    retrained = get_reference_mlp(data, seed=0, cache_root=tmp_path)
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


# --- pruning --------------------------------------------------------------------------------------


def test_layer_pruning_reaches_requested_sparsity_in_every_layer(model) -> None:
    biases = [layer.bias.clone() for _, layer in linear_layers(model)]
    model, report = TorchPruneRecipe({"amount": 0.5, "scope": "layer"}).apply(model)
    for name, reached in weight_sparsity(model).items():
        assert reached == pytest.approx(0.5, abs=0.01), name
    assert report.sparsity == pytest.approx(0.5, abs=0.01)
    assert report.sparsity_all_params < report.sparsity  # biases are not pruned
    for (_, layer), bias in zip(linear_layers(model), biases, strict=True):
        assert torch.equal(layer.bias, bias)
        # made permanent: no mask, no reparametrisation, no hook left behind
        assert not hasattr(layer, "weight_mask")
        assert not hasattr(layer, "weight_orig")
        assert not layer._forward_pre_hooks


def test_global_pruning_reaches_requested_sparsity_overall_but_unevenly_per_layer(model) -> None:
    model, report = TorchPruneRecipe({"amount": 0.5, "scope": "global"}).apply(model)
    stats = sparsity_stats(model)
    assert stats["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert report.sparsity == pytest.approx(stats["sparsity"])
    per_layer = list(weight_sparsity(model).values())
    assert max(per_layer) - min(per_layer) > 0.05  # one threshold for all layers, not 50% of each


@pytest.mark.parametrize("amount", [0.3, 0.8])
def test_pruning_amount_sets_the_sparsity(model, amount: float) -> None:
    _, report = TorchPruneRecipe({"amount": amount, "scope": "global"}).apply(model)
    assert report.sparsity == pytest.approx(amount, abs=0.01)


# --- int8 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", INT8_MODES)
def test_int8_stores_int8_weights_and_keeps_accuracy(data, reference, model, mode: str) -> None:
    originals = {name: layer.weight.detach().clone() for name, layer in linear_layers(model)}
    model, report = TorchInt8Recipe({"mode": mode}).apply(model)
    for name, layer in linear_layers(model):
        weight = layer.weight
        assert weight.qdata.dtype == torch.int8, name
        assert weight.qdata.shape == originals[name].shape
        # dequantized values sit within half a quantisation step of the float weights
        step = weight.scale.reshape(-1, 1)
        assert torch.all((weight.dequantize() - originals[name]).abs() <= step / 2 + 1e-6), name
    assert set(report.details["quantized_layers"]) == set(originals)
    quantized_accuracy = accuracy(labels_of(model, data.x_test), data.y_test)
    assert abs(quantized_accuracy - reference.test_accuracy) <= 0.02


def test_prune_then_int8_keeps_the_zeros_and_the_accuracy(data, model) -> None:
    model, _ = TorchPruneRecipe({"amount": 0.5, "scope": "global"}).apply(model)
    pruned_accuracy = accuracy(labels_of(model, data.x_test), data.y_test)
    model, report = TorchInt8Recipe({"mode": "weight_only"}).apply(model)
    assert all(layer.weight.qdata.dtype == torch.int8 for _, layer in linear_layers(model))
    assert report.sparsity >= 0.5 - 0.01  # zero stays exactly zero under symmetric quantisation
    assert abs(accuracy(labels_of(model, data.x_test), data.y_test) - pruned_accuracy) <= 0.02


def test_prune_after_int8_is_refused(model) -> None:
    model, _ = TorchInt8Recipe({"mode": "weight_only"}).apply(model)
    with pytest.raises(UserError, match=r"before torch\.int8"):
        TorchPruneRecipe({"amount": 0.5}).apply(model)
    with pytest.raises(UserError, match="already quantized"):
        TorchInt8Recipe({"mode": "dynamic"}).apply(model)


@pytest.mark.parametrize("recipe", [TorchPruneRecipe({"amount": 0.5}), TorchInt8Recipe({})])
def test_recipes_refuse_a_module_loaded_from_pt2(model, tmp_path: Path, recipe) -> None:
    artifact, _ = export_module(model, tmp_path, input_shape=(64,), num_classes=10)
    loaded = TorchArtifactRunner(artifact).module
    with pytest.raises(UserError, match=r"needs nn\.Linear layers.*torch\.export \(\.pt2\)"):
        recipe.apply(loaded)


# --- export ---------------------------------------------------------------------------------------

COMPRESSIONS = {
    "reference": [],
    "prune": [(TorchPruneRecipe, {"amount": 0.5, "scope": "global"})],
    "int8_weight_only": [(TorchInt8Recipe, {"mode": "weight_only"})],
    "int8_dynamic": [(TorchInt8Recipe, {"mode": "dynamic"})],
    "prune_int8": [(TorchPruneRecipe, {"amount": 0.5, "scope": "global"}), (TorchInt8Recipe, {})],
}


@pytest.mark.parametrize("name", list(COMPRESSIONS))
def test_exported_pt2_predicts_exactly_like_the_in_memory_model(
    data, model, tmp_path: Path, name: str
) -> None:
    for recipe_cls, params in COMPRESSIONS[name]:
        model, _ = recipe_cls(params).apply(model)
    expected = labels_of(model, data.x_test)
    artifact, seconds = export_module(model, tmp_path, input_shape=(64,), num_classes=10)
    assert artifact.path == tmp_path / "model.pt2"
    assert artifact.format == "torch.export"
    assert seconds > 0
    runner = TorchArtifactRunner(artifact)
    assert np.array_equal(runner.predict_labels(data.x_test), expected)
    assert artifact_accuracy(artifact, data.x_test, data.y_test) == accuracy(expected, data.y_test)
    # the batch dimension is dynamic: one example and a large batch both run
    assert runner.predict_labels(data.x_test[:1]).shape == (1,)
    assert runner.predict_labels(np.tile(data.x_test, (12, 1))).shape == (5400,)


def test_quantized_pt2_loads_in_a_fresh_process_and_predicts_the_same(data, model, tmp_path: Path) -> None:
    expected = {}
    for mode in INT8_MODES:
        quantized, _ = TorchInt8Recipe({"mode": mode}).apply(copy.deepcopy(model))
        artifact, _ = export_module(quantized, tmp_path / mode, input_shape=(64,), num_classes=10)
        expected[mode] = TorchArtifactRunner(artifact).predict_labels(data.x_test)
    np.save(tmp_path / "x.npy", data.x_test)
    # what a TorchServe worker has: torch and numpy, nothing from the harness, no explicit torchao import
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        import torch

        folder = sys.argv[1]
        x = torch.tensor(np.load(f"{folder}/x.npy"))
        for mode in ("weight_only", "dynamic"):
            module = torch.export.load(f"{folder}/{mode}/model.pt2").module()
            with torch.inference_mode():
                np.save(f"{folder}/{mode}.npy", module(x).argmax(dim=1).numpy())
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        check=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
        capture_output=True,
    )
    for mode in INT8_MODES:
        assert np.array_equal(np.load(tmp_path / f"{mode}.npy"), expected[mode]), mode


# --- the pipeline ---------------------------------------------------------------------------------


def test_prepare_variant_composes_steps_and_measures_the_exported_file(
    data, tmp_path: Path, use_cache
) -> None:
    spec = ModelSpec(framework="torch", source="builtin:mlp")
    prepared = prepare_variant(
        spec,
        variant("pruned-int8", ("torch.prune", {"amount": 0.5, "scope": "global"}), ("torch.int8", {})),
        tmp_path,
        tmp_path / "out",
        data,
    )
    assert prepared.artifact.path == tmp_path / "out" / "model.pt2"
    assert [r["recipe"] for r in prepared.compression] == ["torch.prune", "torch.int8"]
    m = prepared.metrics
    assert set(m) == {
        "accuracy_inprocess",
        "model_size_bytes",
        "model_size_gzip_bytes",
        "sparsity",
        "param_count",
    }
    assert m["model_size_bytes"] == prepared.artifact.path.stat().st_size
    assert 0 < m["model_size_gzip_bytes"] < m["model_size_bytes"]
    assert m["sparsity"] >= 0.49
    assert m["param_count"] == 64 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10
    assert m["accuracy_inprocess"] == artifact_accuracy(prepared.artifact, data.x_test, data.y_test)
    assert m["accuracy_inprocess"] >= 0.93
    assert not prepared.warnings


def test_prepare_variant_accuracy_comes_from_the_file_not_the_in_memory_model(
    data, tmp_path: Path, use_cache, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_export(module: Any, out_dir: Path, **kwargs: Any):
        torch.manual_seed(1)
        return export_module(build_mlp().eval(), out_dir, **kwargs)  # an untrained model lands on disk

    monkeypatch.setattr(torch_backend, "export_module", broken_export)
    prepared = prepare_variant(
        ModelSpec(framework="torch", source="builtin:mlp"),
        variant("reference"),
        tmp_path,
        tmp_path / "o",
        data,
    )
    assert prepared.metrics["accuracy_inprocess"] < 0.5
    assert prepared.details["accuracy_in_memory"] > 0.9
    assert "export changed what the model computes" in prepared.warnings[0]


@pytest.fixture
def torchscript_file(reference, tmp_path: Path) -> Path:
    path = tmp_path / "models" / "digits.pt"
    path.parent.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated in torch 2.13
        torch.jit.save(torch.jit.script(copy.deepcopy(reference.module)), str(path))
    return path


def test_user_torchscript_model_is_served_as_given_and_resolved_against_the_scenario(
    data, reference, torchscript_file: Path, tmp_path: Path
) -> None:
    spec = ModelSpec(framework="torch", source="models/digits.pt")
    prepared = prepare_variant(spec, variant("reference"), tmp_path, tmp_path / "out", data)
    assert prepared.artifact.format == "torchscript"
    assert prepared.artifact.path.read_bytes() == torchscript_file.read_bytes()
    assert prepared.metrics["accuracy_inprocess"] == pytest.approx(reference.test_accuracy)
    with pytest.raises(UserError, match=r"torch\.prune needs nn\.Linear layers.*TorchScript"):
        prepare_variant(spec, variant("p", ("torch.prune", {"amount": 0.5})), tmp_path, tmp_path / "p", data)


def test_user_pt2_model_is_served_as_given(data, model, tmp_path: Path) -> None:
    artifact, _ = export_module(model, tmp_path / "models", input_shape=(64,), num_classes=10)
    spec = ModelSpec(framework="torch", source=str(artifact.path))
    prepared = prepare_variant(spec, variant("reference"), ROOT, tmp_path / "out", data)
    assert prepared.artifact.format == "torch.export"
    assert prepared.metrics["accuracy_inprocess"] == accuracy(labels_of(model, data.x_test), data.y_test)


def test_missing_or_unreadable_user_model_is_a_user_error_naming_the_path(data, tmp_path: Path) -> None:
    missing = ModelSpec(framework="torch", source="nowhere/model.pt2")
    with pytest.raises(UserError, match=r"nowhere/model\.pt2 does not exist; expected a TorchScript"):
        prepare_variant(missing, variant("reference"), tmp_path, tmp_path / "out", data)
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(UserError, match=r"junk\.pt could not be loaded as torchscript"):
        prepare_variant(
            ModelSpec(framework="torch", source="junk.pt"),
            variant("reference"),
            tmp_path,
            tmp_path / "o",
            data,
        )


def test_user_model_with_the_wrong_output_shape_is_a_user_error(data, tmp_path: Path) -> None:
    wrong = torch.nn.Sequential(torch.nn.Linear(64, 3)).eval()
    artifact, _ = export_module(wrong, tmp_path, input_shape=(64,), num_classes=3)
    spec = ModelSpec(framework="torch", source=str(artifact.path))
    with pytest.raises(UserError, match=r"shape \[1, 3\].*10 class scores"):
        prepare_variant(spec, variant("reference"), tmp_path, tmp_path / "out", data)
