"""digits_rgb: the image data of the built-in MobileNetV2, and the scenario rules around it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.data.loaders import load_data
from harness.models.digits import load_digits_split
from harness.models.digits_rgb import load_digits_rgb_split, upscale
from harness.scenario.loader import load_scenario
from harness.scenario.schema import DEFAULT_IMAGE_SIZE
from tests.conftest import load_error, scenario_dict


def test_nchw_and_nhwc_hold_the_same_images_as_the_digits_split() -> None:
    digits = load_digits_split(3)
    nchw = load_digits_rgb_split(3, 32, "nchw")
    nhwc = load_digits_rgb_split(3, 32, "nhwc")
    x_nchw, x_nhwc = nchw.test.inputs["images"], nhwc.test.inputs["images"]
    assert x_nchw.shape == (len(digits.test.labels), 3, 32, 32)
    assert x_nhwc.shape == (len(digits.test.labels), 32, 32, 3)
    np.testing.assert_array_equal(x_nchw.transpose(0, 2, 3, 1), x_nhwc)
    # three equal channels, the same labels and order as digits, values 0..1, read-only
    np.testing.assert_array_equal(x_nchw[:, 0], x_nchw[:, 2])
    np.testing.assert_array_equal(nchw.test.labels, digits.test.labels)
    np.testing.assert_array_equal(nchw.train.labels, digits.train.labels)
    assert x_nchw.dtype == np.float32
    assert x_nchw.min() >= 0.0
    assert x_nchw.max() <= 1.0
    assert not x_nchw.flags.writeable
    assert nchw.inputs[0].shape == (3, 32, 32)
    assert nhwc.inputs[0].shape == (32, 32, 3)


def test_upscaling_keeps_each_digit_recognisable() -> None:
    digits = load_digits_split(0).test.inputs["inputs"].reshape(-1, 8, 8)[:20]
    big = upscale(digits, 64)
    # averaging each 8x8 block of the 64x64 image gives back (a blurred) original pixel
    pooled = big.reshape(-1, 8, 8, 8, 8).mean(axis=(2, 4))
    assert np.corrcoef(pooled.ravel(), digits.ravel())[0, 1] > 0.95
    # a constant image stays constant: the interpolation weights of every output pixel sum to 1
    np.testing.assert_allclose(upscale(np.full((1, 8, 8), 0.7, np.float32), 96), 0.7, atol=1e-6)


@pytest.mark.parametrize(("framework", "shape"), [("torch", (3, 40, 40)), ("tensorflow", (40, 40, 3))])
def test_the_mobilenet_builtin_gets_digits_rgb_at_its_image_size(
    tmp_path: Path, write_scenario, framework, shape
) -> None:
    model = {"framework": framework, "source": "builtin:mobilenet_v2", "builtin": {"image_size": 40}}
    path = write_scenario(scenario_dict(model=model, variants=[]))
    data = load_data(load_scenario(path), tmp_path)
    assert data.name == "digits_rgb"
    assert data.inputs[0].shape == shape


def test_image_size_defaults_to_the_schema_default(write_scenario) -> None:
    model = {"framework": "torch", "source": "builtin:mobilenet_v2"}
    scenario = load_scenario(write_scenario(scenario_dict(model=model, variants=[])))
    assert scenario.model.builtin_options.image_size == DEFAULT_IMAGE_SIZE
    assert scenario.model.data_shorthand == "digits_rgb"


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ({"framework": "torch", "source": "builtin:mlp", "dataset": "digits_rgb"}, "model.dataset"),
        ({"framework": "torch", "source": "builtin:mobilenet_v2", "dataset": "digits"}, "model.dataset"),
        ({"framework": "torch", "source": "builtin:mlp", "builtin": {"width": 0.5}}, "builtin"),
        (
            {"framework": "torch", "source": "builtin:mobilenet_v2", "builtin": {"image_size": 16}},
            "image_size",
        ),
    ],
)
def test_mismatched_builtin_data_and_options_are_one_line_errors(write_scenario, model, expected) -> None:
    path = write_scenario(scenario_dict(model=model, variants=[]))
    assert expected in load_error(path)
