"""The built-in torch MobileNetV2 and the recipes made for it: structured channel pruning
(torch-pruning) and half precision, on small instances (width 0.35, 32x32 digits_rgb) so the whole
module stays within seconds; the full-size figures are measured for the README, not here."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from harness.compression.base import RecipeContext
from harness.compression.pipeline import PreparedVariant, prepare_variant
from harness.compression.torch.export import TorchArtifactRunner, export_module
from harness.compression.torch.half import TorchHalfRecipe
from harness.compression.torch.prune import TorchPruneRecipe
from harness.data.dataset import Dataset
from harness.data.tensors import OutputSpec, Signature
from harness.errors import UserError
from harness.models.cache import checksum_path
from harness.models.digits_rgb import load_digits_rgb_split
from harness.models.torch_loader import load_torchscript
from harness.models.torch_mobilenet import get_reference_mobilenet
from harness.models.torch_mobilenet_arch import build_mobilenet_v2
from harness.scenario.schema import BuiltinOptions, ModelSpec, RecipeStep, ServingSpec, VariantSpec
from harness.serving.inprocess import InProcessTarget
from tests.integration.torch_user_models import MODELS, Saved, outputs_of, save_sources
from tests.integration.torchserve_helpers import JAVA_PROBLEM, torchserve_serving

SIZE = 32
WIDTH = 0.35
TINY = BuiltinOptions(width=WIDTH, image_size=SIZE, epochs=1)
CHANNELS = {"amount": 0.5, "structure": "channels", "fine_tune_epochs": 0}


@pytest.fixture(scope="module")
def data() -> Dataset:
    """digits_rgb at 32x32 with 320 training and 120 test images: training and evaluation in
    fractions of a second (the whole split's figures are the README's, at full size)."""
    full = load_digits_rgb_split(0, SIZE, "nchw")
    assert full.train is not None
    return replace(full, train=full.train.head(320), test=full.test.head(120))


@pytest.fixture(scope="module")
def signature(data) -> Signature:
    return Signature(inputs=data.inputs, output=OutputSpec("logits", 10), task="classification")


@pytest.fixture(scope="module")
def context(data, signature) -> RecipeContext:
    return RecipeContext(data=data, seed=0, signature=signature)


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="module")
def calibrated(data) -> torch.nn.Module:
    """An untrained small MobileNetV2 with batch-norm statistics of the data and a classifier of
    unit-scale weights: logits of order one that differ between images, in 0.1 s, not a training."""
    torch.manual_seed(0)
    model = build_mobilenet_v2(10, WIDTH)
    for layer in model.modules():
        if isinstance(layer, torch.nn.BatchNorm2d):
            layer.momentum = None  # a cumulative average: one pass sets the statistics exactly
    with torch.no_grad():
        model.train()
        model(torch.tensor(data.x_train[:256]))
        model.classifier[1].weight.normal_(0, 1.0)
    return model.eval().requires_grad_(False)


@pytest.fixture
def mobilenet(calibrated) -> torch.nn.Module:
    """A private copy a test may compress in place."""
    return copy.deepcopy(calibrated)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Saved]:
    return save_sources(tmp_path_factory.mktemp("scenario"), ("cnn", "text", "regression"))


def outputs(model: Any, data: Dataset) -> np.ndarray:
    with torch.inference_mode():
        out = model(torch.tensor(data.x_test))
    assert out.dtype == torch.float32
    return out.numpy()


def convs(model: torch.nn.Module) -> dict[str, torch.nn.Conv2d]:
    return {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}


def context_of(item: Saved) -> RecipeContext:
    spec = MODELS[item.kind]
    output = OutputSpec("values" if spec.task == "regression" else "logits", spec.width)
    return RecipeContext(data=item.data, seed=0, signature=Signature(spec.inputs, output, spec.task))


# --- the built-in model ---------------------------------------------------------------------------


def test_builtin_mobilenet_is_cached_and_a_damaged_file_retrains_to_the_same_weights(
    data, cache_root: Path
) -> None:
    first = get_reference_mobilenet(data, seed=0, options=TINY, cache_root=cache_root)
    second = get_reference_mobilenet(data, seed=0, options=TINY, cache_root=cache_root)
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert second.cache_path == first.cache_path
    info = second.info()
    assert info["source"] == "builtin:mobilenet_v2"
    assert (info["width"], info["image_size"], info["epochs"]) == (WIDTH, SIZE, 1)
    assert info["train_seconds"] == pytest.approx(first.train_seconds, abs=1e-3)
    assert 0.0 <= info["test_accuracy"] <= 1.0
    assert not any(p.requires_grad for p in second.module.parameters())

    blob = bytearray(first.cache_path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    first.cache_path.write_bytes(bytes(blob))
    third = get_reference_mobilenet(data, seed=0, options=TINY, cache_root=cache_root)
    assert not third.cache_hit
    assert third.cache_warning is not None
    assert "does not match its checksum" in third.cache_warning
    assert checksum_path(third.cache_path).is_file()
    # training is deterministic: the retrained weights are the first training's, bit for bit
    retrained = third.module.state_dict()
    for name, tensor in first.module.state_dict().items():
        assert torch.equal(tensor, retrained[name]), name


# --- structured channel pruning -------------------------------------------------------------------


def test_channel_pruning_shrinks_convs_across_residual_and_depthwise_blocks(mobilenet, data, context) -> None:
    before = {name: conv.out_channels for name, conv in convs(mobilenet).items()}
    expected = outputs(mobilenet, data)
    pruned, report = TorchPruneRecipe(CHANNELS).apply(mobilenet, context)

    after = convs(pruned)
    assert all(after[name].out_channels < channels for name, channels in before.items())
    for conv in after.values():
        if conv.groups > 1:  # depthwise: one filter per channel, in and out pruned together
            assert conv.groups == conv.in_channels == conv.out_channels
    # a residual add: the block's input and output channels were pruned as one group
    block = pruned.features[3]
    assert block.use_residual
    assert (
        block.conv[0].in_channels == block.conv[-2].out_channels == pruned.features[2].conv[-2].out_channels
    )
    assert pruned.classifier[1].out_features == 10  # the output layer is kept whole
    assert pruned.classifier[1].in_features == pruned.features[-1][0].out_channels

    got = outputs(pruned, data)
    assert got.shape == expected.shape
    assert np.isfinite(got).all()
    assert len(np.unique(got.argmax(axis=1))) > 1
    details = report.details
    assert details["param_count_after"] < 0.5 * details["param_count_before"]
    assert details["param_count_after"] == sum(p.numel() for p in pruned.parameters())
    assert details["macs_after"] < 0.5 * details["macs_before"]
    assert details["kept_layers"] == ["classifier.1"]
    assert report.params["structure"] == "channels"
    assert "not fine-tuned" in report.notes[-1]
    assert "parameters" in report.notes[0]
    assert "multiply-accumulates" in report.notes[0]


def test_channel_pruning_fine_tunes_on_the_train_split(mobilenet, data, context) -> None:
    params = {"amount": 0.3, "structure": "channels", "fine_tune_epochs": 1, "batch_size": 64}
    pruned, report = TorchPruneRecipe(params).apply(mobilenet, context)
    assert report.details["fine_tune_examples"] == len(data.train)
    assert 0 <= report.details["test_accuracy_after_fine_tune"] <= 1
    assert any("fine-tuned 1 epoch on 320 train examples" in note for note in report.notes)
    assert not pruned.training
    assert not any(p.requires_grad for p in pruned.parameters())


@pytest.mark.parametrize("kind", ["cnn", "text", "regression"])
def test_channel_pruning_keeps_the_output_layers_of_user_models(saved: dict[str, Saved], kind: str) -> None:
    item = saved[kind]
    model = copy.deepcopy(item.module)
    before = sum(p.numel() for p in model.parameters())
    pruned, report = TorchPruneRecipe({"amount": 0.5, "structure": "channels", "fine_tune_epochs": 1}).apply(
        model, context_of(item)
    )
    got = outputs_of(pruned, kind, dict(item.data.test.inputs))
    assert got.shape == item.reference().shape
    assert np.isfinite(got).all()
    assert sum(p.numel() for p in pruned.parameters()) < before
    assert report.details["param_count_after"] < report.details["param_count_before"]
    if kind == "text":  # the hidden layer shrinks; the logits and the returned embedding keep their width
        assert report.details["kept_layers"] == ["out"]
        assert pruned.hidden.out_features < 32
        assert pruned.out.out_features == 3
        assert pruned.bag.embedding_dim == 16


def test_channel_pruning_refuses_programs_and_torchscript_naming_the_recipe(saved: dict[str, Saved]) -> None:
    item = saved["cnn"]
    program = torch.export.load(item.folder / "cnn.pt2").module()
    with pytest.raises(UserError, match=r"^torch.prune structure channels rebuilds conv and linear modules"):
        TorchPruneRecipe(CHANNELS).apply(program, context_of(item))
    script = load_torchscript(item.folder / "cnn.ts")
    with pytest.raises(UserError, match=r"^torch.prune cannot compress a TorchScript module"):
        TorchPruneRecipe(CHANNELS).apply(script, context_of(item))
    only_an_output_layer = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 4))
    with pytest.raises(UserError, match=r"^torch.prune structure channels: no channel of Sequential"):
        TorchPruneRecipe(CHANNELS).apply(only_an_output_layer, context_of(item))


# --- half precision -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_computes_in_half_with_float32_io_close_to_float(mobilenet, data, context, dtype: str) -> None:
    expected = outputs(mobilenet, data)
    half, report = TorchHalfRecipe({"dtype": dtype}).apply(mobilenet, context)
    assert {p.dtype for p in half.parameters()} == {getattr(torch, dtype)}
    got = outputs(half, data)  # float32 in, float32 out
    assert np.isfinite(got).all()
    # An untrained 50-layer network amplifies rounding: bfloat16's 8-bit mantissa moves these
    # logits by up to half their range (the trained full-size model keeps its accuracy in bfloat16,
    # see the README), float16's 11 bits by a few percent; both stay strongly correlated.
    scale = np.abs(expected).max()
    assert np.corrcoef(got.ravel(), expected.ravel())[0, 1] > (0.75 if dtype == "bfloat16" else 0.98)
    if dtype == "float16":
        assert np.abs(got - expected).max() < 0.1 * scale
        assert (got.argmax(axis=1) == expected.argmax(axis=1)).mean() >= 0.85
    assert report.details["max_abs_output_difference"] > 0
    assert isinstance(report.details["cpu_fast_path"], bool)
    if not report.details["cpu_fast_path"]:
        assert any("no fast path" in note for note in report.notes)


@pytest.mark.parametrize("form", ["pt2", "python"])
def test_half_wraps_programs_and_leaves_integer_inputs_alone(
    saved: dict[str, Saved], tmp_path: Path, form: str
) -> None:
    item = saved["cnn" if form == "pt2" else "text"]
    model = (
        torch.export.load(item.folder / "cnn.pt2").module() if form == "pt2" else copy.deepcopy(item.module)
    )
    context = context_of(item)
    half, _ = TorchHalfRecipe({}).apply(model, context)
    assert context.signature is not None
    artifact, _ = export_module(half, tmp_path, context.signature)
    got = TorchArtifactRunner(artifact).predict_outputs(dict(item.data.test.inputs))
    reference = item.reference()
    assert got.dtype == np.float32
    assert np.abs(got - reference).max() < 0.05 * np.abs(reference).max()


def test_half_refuses_a_quantized_model_and_a_second_conversion(mobilenet, context) -> None:
    half, _ = TorchHalfRecipe({}).apply(mobilenet, context)
    with pytest.raises(UserError, match="already half precision"):
        TorchHalfRecipe({}).apply(half, context)
    with pytest.raises(UserError, match=r"put torch\.prune before torch\.half"):
        TorchPruneRecipe(CHANNELS).apply(half.inner, context)


# --- through the pipeline and a real server -------------------------------------------------------


@pytest.fixture(scope="module")
def prepared(
    data, cache_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, PreparedVariant]]:
    """The channel-pruned + static int8 and the half variants of the small built-in MobileNetV2,
    each compressed, exported and evaluated by the pipeline as `harness run` does."""
    spec = ModelSpec(framework="torch", source="builtin:mobilenet_v2", builtin=TINY)
    steps = {
        "pruned-int8": [
            RecipeStep(recipe="torch.prune", params={**CHANNELS, "fine_tune_epochs": 1}),
            RecipeStep(recipe="torch.int8", params={"mode": "static", "calibration_samples": 64}),
        ],
        "half": [RecipeStep(recipe="torch.half")],
    }
    root = tmp_path_factory.mktemp("variants")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARNESS_CACHE_DIR", str(cache_root))
        yield {
            name: prepare_variant(spec, VariantSpec(name=name, steps=s), root, root / name, data)
            for name, s in steps.items()
        }


def test_builtin_mobilenet_variants_compress_export_and_measure_through_the_pipeline(
    prepared: dict[str, PreparedVariant],
) -> None:
    pruned, half = prepared["pruned-int8"], prepared["half"]
    params = pruned.base["param_count"]
    assert pruned.base["source"] == "builtin:mobilenet_v2"
    assert [r["recipe"] for r in pruned.compression] == ["torch.prune", "torch.int8"]
    pruning = pruned.compression[0]["details"]
    assert pruning["param_count_before"] == params
    assert pruning["param_count_after"] < 0.5 * params
    assert pruning["macs_after"] < 0.5 * pruning["macs_before"]
    assert pruned.artifact.extra["quantization"] == "pt2e"
    # float32 weights would take 4 bytes each: the pruned int8 file keeps under a quarter of that,
    # the half file a little over half (weights and batch-norm statistics in bfloat16, stored
    # one file per tensor)
    assert pruned.details["archive"]["weights_bytes"] < 0.25 * 4 * params
    assert half.metrics["param_count"] == params
    assert 2 * params <= half.details["archive"]["weights_bytes"] < 2.5 * params
    for variant in (pruned, half):
        assert variant.artifact.format == "torch.export"
        assert variant.details["export_drift"]["changed_fraction"] <= 0.02
        assert not variant.warnings
        assert 0.0 <= variant.metrics["accuracy_inprocess"] <= 1.0


def test_half_variant_is_served_in_process_with_float32_outputs(
    prepared: dict[str, PreparedVariant], data, tmp_path: Path
) -> None:
    artifact = prepared["half"].artifact
    with InProcessTarget(ServingSpec(target="inprocess"), tmp_path) as target:
        target.start(artifact)
        served = target.predict(dict(data.test.inputs))
    assert served.dtype == np.float32
    np.testing.assert_array_equal(served, prepared["half"].outputs)


@pytest.mark.torchserve
@pytest.mark.skipif(JAVA_PROBLEM is not None, reason=str(JAVA_PROBLEM))
def test_channel_pruned_int8_mobilenet_is_served_by_torchserve_like_in_process(
    prepared: dict[str, PreparedVariant], data, tmp_path: Path
) -> None:
    artifact = prepared["pruned-int8"].artifact
    batch = dict(data.test.head(40).inputs)
    in_process = TorchArtifactRunner(artifact).predict_outputs(batch)
    with torchserve_serving(artifact, tmp_path / "run", workers=1) as target:
        served = target.predict(batch)
    assert served.dtype == np.float32
    np.testing.assert_allclose(served, in_process, rtol=1e-5, atol=1e-5)
