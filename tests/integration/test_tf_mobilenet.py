"""The built-in TensorFlow `builtin:mobilenet_v2`, small: width 0.35 on 32x32 digits_rgb for one
epoch over a 64-image slice of the training split, into an empty cache (the full size, width 1.0
at 96x96, is the case-study scenario's). One training serves every test here: through
prepare_variant with tf.ptq int8 and uint8 I/O (the case study's step on the real architecture:
ReLU6, depthwise convolutions, batch norm, residual adds), then read back from the cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.compression.pipeline import PreparedVariant, load_base_model, prepare_variant
from harness.compression.tensorflow.tf_import import import_tf
from harness.data.dataset import Dataset
from harness.errors import UserError
from harness.frameworks import TENSORFLOW
from harness.models.digits_rgb import load_digits_rgb_split
from harness.models.tf_mobilenet import get_tf_mobilenet, shift_images
from harness.scenario.schema import BuiltinOptions, ModelSpec, RecipeStep, VariantSpec

OPTIONS = {"width": 0.35, "image_size": 32, "epochs": 1}
MODEL = ModelSpec(framework="tensorflow", source="builtin:mobilenet_v2", builtin=OPTIONS)


@pytest.fixture(scope="module")
def data() -> Dataset:
    full = load_digits_rgb_split(0, 32, "nhwc")
    assert full.train is not None
    return Dataset(
        name=full.name,
        inputs=full.inputs,
        task=full.task,
        test=full.test.head(90),
        train=full.train.head(64),
        num_classes=full.num_classes,
        seed=full.seed,
        source=full.source,
    )


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("mobilenet-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARNESS_CACHE_DIR", str(root))
        yield root


@pytest.fixture(scope="module")
def prepared(data, cache_root, tmp_path_factory: pytest.TempPathFactory) -> PreparedVariant:
    out = tmp_path_factory.mktemp("mobilenet-uint8")
    variant = VariantSpec(
        name="ptq-uint8", steps=[RecipeStep(recipe="tf.ptq", params={"mode": "int8", "io": "uint8"})]
    )
    return prepare_variant(MODEL, variant, out, out / "artifact", data)


def test_the_builtin_trains_into_an_empty_cache_as_one_flat_mobilenet_v2(prepared, cache_root) -> None:
    base = prepared.base
    assert base["source"] == "builtin:mobilenet_v2"
    assert base["cache_hit"] is False
    assert Path(base["cache_path"]).parent == cache_root / "models"
    assert Path(base["cache_path"]).is_file()
    assert (base["width"], base["image_size"], base["epochs"]) == (0.35, 32, 1)
    assert "MobileNetV2(alpha=0.35, weights=None)" in base["architecture"]
    assert base["outputs"] == "logits"


def test_ptq_int8_with_uint8_io_converts_the_mobilenet_and_serves_it_in_process(prepared, data) -> None:
    artifact = prepared.artifact
    assert artifact.format == "tflite"
    assert artifact.extra["input_dtypes"] == {"images": "uint8"}
    assert artifact.extra["input_quantization"]["images"]["dtype"] == "uint8"
    step = prepared.compression[0]
    assert step["details"]["calibration_examples"] == 64  # all the (real) training images there are
    assert step["details"]["calibration_split"] == "train"
    assert "64 real examples of the train split" in " ".join(step["notes"])
    assert set(step["details"]["kernel_dtypes"].values()) == {"int8"}
    assert 0.0 <= prepared.metrics["accuracy_inprocess"] <= 1.0
    assert prepared.outputs.shape == (len(data.test), 10)
    assert np.all(np.isfinite(prepared.outputs))


def test_a_second_load_reads_the_same_model_back_from_the_cache(prepared, data, cache_root) -> None:
    again = get_tf_mobilenet(data, seed=0, options=BuiltinOptions(**OPTIONS))
    assert again.cache_hit is True
    assert str(again.cache_path) == prepared.base["cache_path"]
    assert again.train_seconds == pytest.approx(prepared.base["train_seconds"], abs=1e-3)
    trained = load_base_model(MODEL, Path("."), data).model  # the one prepare_variant trained
    for a, b in zip(trained.get_weights(), again.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    _, keras = import_tf()
    layers = {type(layer).__name__ for layer in again.model.layers}
    assert {"DepthwiseConv2D", "BatchNormalization", "ReLU", "Add"} <= layers
    assert not any(isinstance(layer, keras.Model) for layer in again.model.layers)  # flat: tfmot wraps it
    assert again.model.input_names == ["images"]


def test_image_size_must_match_the_datas_images(data) -> None:
    model = ModelSpec(
        framework="tensorflow", source="builtin:mobilenet_v2", builtin={**OPTIONS, "image_size": 48}
    )
    with pytest.raises(UserError, match=r"model.builtin.image_size: 48 but the data's images are images"):
        TENSORFLOW.backend().load_base(model, Path("."), data)


def test_shifts_are_zero_filled_bounded_and_drawn_from_the_seed() -> None:
    images = np.zeros((8, 6, 6, 1), np.float32)
    images[:, 2:4, 2:4] = 1.0
    shifted = shift_images(images, 1, np.random.default_rng(0))
    assert np.all(shifted.sum(axis=(1, 2, 3)) == 4.0)  # a 1-pixel shift keeps the centred blob whole
    assert not np.array_equal(shifted, images)
    np.testing.assert_array_equal(shifted, shift_images(images, 1, np.random.default_rng(0)))
    moved: Any = shift_images(np.ones((2, 4, 4, 1), np.float32), 2, np.random.default_rng(1))
    assert moved.min() == 0.0  # zero-filled where the image moved away
