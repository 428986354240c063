"""The client-side conversion for integer-I/O models (harness.serving.quantized_io), numpy only:
float data to the wire dtype with the recorded scale and zero point, integer replies back."""

from __future__ import annotations

import numpy as np
import pytest

from harness.data.tensors import TensorSpec
from harness.serving.quantized_io import TensorQuantization, WireQuantization

PIXELS = TensorQuantization("uint8", 1 / 255, 0)
SCORES = TensorQuantization("uint8", 0.05, 128)
EXTRA = {
    "input_quantization": {"images": PIXELS.as_dict()},
    "output_quantization": {"scores": SCORES.as_dict()},
}
IMAGES = TensorSpec("images", (2, 2, 3), "float32")


def test_uint8_pixels_round_trip_within_half_a_step_and_clip_at_the_range() -> None:
    x = np.linspace(0, 1, 12, dtype=np.float32).reshape(1, 2, 2, 3)
    q = PIXELS.quantize(x)
    assert q.dtype == np.uint8
    assert q.min() == 0
    assert q.max() == 255
    np.testing.assert_allclose(PIXELS.dequantize(q), x, atol=0.5 / 255 + 1e-7)
    assert PIXELS.quantize(np.array([-3.0, 7.0])).tolist() == [0, 255]
    int8 = TensorQuantization("int8", 0.1, -3)
    assert int8.quantize(np.array([0.0, 1.0, -100.0, 100.0])).tolist() == [-3, 7, -128, 127]


def test_the_wire_specs_and_batch_carry_uint8_and_the_reply_is_dequantized() -> None:
    wire = WireQuantization.from_extra(EXTRA)
    assert wire.wire_specs((IMAGES,)) == (TensorSpec("images", (2, 2, 3), "uint8"),)
    batch = {"images": np.full((4, 2, 2, 3), 0.6, np.float32)}
    sent = wire.to_wire(batch, (IMAGES,))
    assert sent["images"].dtype == np.uint8
    assert set(np.unique(sent["images"]).tolist()) == {153}  # 0.6 * 255
    reply = np.array([[128, 148, 108]], dtype=np.float32)  # what JSON gives back: numbers
    np.testing.assert_allclose(wire.from_wire(reply, "scores"), [[0.0, 1.0, -1.0]], atol=1e-6)


def test_a_one_input_model_is_converted_whatever_the_data_calls_its_input() -> None:
    wire = WireQuantization.from_extra(EXTRA)
    spec = TensorSpec("inputs", (2, 2, 3), "float32")
    assert wire.wire_specs((spec,))[0].dtype == "uint8"
    assert wire.to_wire({"inputs": np.ones((1, 2, 2, 3), np.float32)}, (spec,))["inputs"].dtype == np.uint8


def test_integer_inputs_that_were_never_quantized_and_float_models_pass_through() -> None:
    ids, mask = TensorSpec("input_ids", (4,), "int64"), TensorSpec("features", (3,), "float32")
    wire = WireQuantization.from_extra(
        {"input_quantization": {"features": {"dtype": "int8", "scale": 0.5, "zero_point": 0}}}
    )
    batch = {"input_ids": np.arange(8).reshape(2, 4), "features": np.ones((2, 3), np.float32)}
    sent = wire.to_wire(batch, (ids, mask))
    assert sent["input_ids"] is batch["input_ids"]
    assert sent["features"].dtype == np.int8
    assert sent["features"].tolist() == [[2, 2, 2]] * 2
    assert [s.dtype for s in wire.wire_specs((ids, mask))] == ["int64", "int8"]
    assert wire.from_wire(np.array([[1, 2]]), "scores").dtype == np.float32  # no output quantization

    plain = WireQuantization.from_extra({"input_dtype": "float32"})
    assert not plain
    x = {"images": np.zeros((1, 2, 2, 3), np.float32)}
    assert plain.to_wire(x, (IMAGES,))["images"].dtype == np.float32
    np.testing.assert_array_equal(plain.from_wire(np.array([[1.5]]), None), [[1.5]])


def test_the_extra_entries_read_back_and_bad_parameters_are_refused() -> None:
    wire = WireQuantization.from_extra(EXTRA)
    assert wire.as_extra() == EXTRA
    assert wire.output_for(None) == SCORES
    assert wire.output_for("other") is None
    with pytest.raises(ValueError, match="scale must be positive"):
        TensorQuantization("uint8", 0.0, 0)
    with pytest.raises(ValueError, match="not float32"):
        TensorQuantization("float32", 1.0, 0)
    detail = {"dtype": np.uint8, "quantization": (0.0, 0)}
    assert TensorQuantization.from_tflite(detail) is None  # an integer tensor without a scale: ids
    assert TensorQuantization.from_tflite(
        {"dtype": np.int8, "quantization": (0.25, -1)}
    ) == TensorQuantization("int8", 0.25, -1)
