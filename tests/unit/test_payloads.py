"""Request encoders (harness side) against the TorchServe handler's decoder (server side), response
rows at an output path, and the locustfile's row count against the harness's reading of a response."""

from __future__ import annotations

import ast
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.data.tensors import TensorSpec
from harness.serving import payloads
from harness.serving.payloads import (
    JsonColumnarEncoder,
    JsonInstancesEncoder,
    NpyEncoder,
    TemplateEncoder,
    as_output_rows,
    auto_encoding,
    encode_requests,
    make_encoder,
    request_rows,
    rows_at_path,
    tfserving_output_path,
    tfserving_rows,
)
from tests.conftest import ROOT

# the handler imports torch at module level (it runs in TorchServe's worker)
handler = pytest.importorskip("harness.serving.torchserve_handler")

IMAGE = (TensorSpec("pixels", (3, 32, 32), "float32"),)
TEXT = (TensorSpec("input_ids", (16,), "int64"), TensorSpec("attention_mask", (16,), "int64"))
MIXED = (
    TensorSpec("photo", (8, 8, 3), "uint8"),
    TensorSpec("flags", (4,), "bool"),
    TensorSpec("scale", (), "float16"),
    TensorSpec("count", (2,), "int32"),
)
SIGNATURES = {"image": IMAGE, "text": TEXT, "mixed": MIXED}


def _batch(inputs: tuple[TensorSpec, ...], n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for spec in inputs:
        shape = (n, *spec.shape)
        if spec.dtype == "bool":
            out[spec.name] = rng.random(shape) > 0.5
        elif spec.dtype.startswith(("int", "uint")):
            out[spec.name] = rng.integers(0, 200, size=shape).astype(spec.dtype)
        else:
            out[spec.name] = rng.normal(size=shape).astype(spec.dtype)
    return out


def _specs(inputs: tuple[TensorSpec, ...]) -> list[tuple[str, tuple[int, ...], str]]:
    return [(s.name, s.shape, s.dtype) for s in inputs]


def _decode(body: bytes, inputs: tuple[TensorSpec, ...], content_type: str) -> dict[str, np.ndarray]:
    """What the handler gets from TorchServe: JSON bodies arrive parsed, others as a bytearray."""
    value: Any = json.loads(body) if content_type == "application/json" else bytearray(body)
    return handler.decode_request({"body": value}, _specs(inputs))


@pytest.mark.parametrize("signature", sorted(SIGNATURES))
@pytest.mark.parametrize("encoder_class", [JsonInstancesEncoder, JsonColumnarEncoder, "binary"])
def test_the_handler_decodes_exactly_what_each_encoder_wrote(signature: str, encoder_class: Any) -> None:
    inputs = SIGNATURES[signature]
    batch = _batch(inputs, 3)
    encoder = make_encoder(inputs, "binary") if encoder_class == "binary" else encoder_class(inputs)
    decoded = _decode(encoder.encode(batch), inputs, encoder.content_type)
    assert list(decoded) == [s.name for s in inputs]  # signature order: the model is called positionally
    for spec in inputs:
        assert decoded[spec.name].dtype == np.dtype(spec.dtype)
        np.testing.assert_array_equal(decoded[spec.name], batch[spec.name])


def test_raw_bytes_and_text_bodies_are_decoded_too() -> None:
    batch = _batch(TEXT, 2)
    body = JsonInstancesEncoder(TEXT).encode(batch)
    for raw in (body, bytearray(body), body.decode()):
        decoded = handler.decode_request({"body": raw}, _specs(TEXT))
        np.testing.assert_array_equal(decoded["input_ids"], batch["input_ids"])


def test_binary_is_npy_for_one_input_and_an_uncompressed_npz_for_several() -> None:
    image = make_encoder(IMAGE, "binary")
    assert (image.encoding, image.content_type) == ("npy", "application/x-npy")
    body = image.encode(_batch(IMAGE, 2))
    assert body.startswith(b"\x93NUMPY")
    array = np.load(io.BytesIO(body))
    assert (array.shape, array.dtype) == ((2, 3, 32, 32), np.float32)
    text = make_encoder(TEXT, "binary")
    assert (text.encoding, text.content_type) == ("npz", "application/x-npz")
    body = text.encode(_batch(TEXT, 2))
    with np.load(io.BytesIO(body)) as npz:
        assert sorted(npz.files) == ["attention_mask", "input_ids"]
    import zipfile

    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_STORED}


def test_a_binary_body_is_a_fraction_of_the_json_one_for_an_image() -> None:
    spec = (TensorSpec("image", (224, 224, 3), "float32"),)
    batch = _batch(spec, 1)
    binary = make_encoder(spec, "auto").encode(batch)
    text = make_encoder(spec, "json").encode(batch)
    assert len(binary) == 224 * 224 * 3 * 4 + 128  # the .npy header is padded to 128 bytes
    assert len(text) > 4 * len(binary)


def test_auto_goes_binary_above_a_thousand_numbers_per_example() -> None:
    assert auto_encoding((TensorSpec("x", (1000,), "float32"),)) == "json"
    assert auto_encoding((TensorSpec("x", (1001,), "float32"),)) == "binary"
    assert auto_encoding(TEXT) == "json"
    assert auto_encoding((*TEXT, TensorSpec("pixels", (224, 224, 3), "uint8"))) == "binary"
    assert make_encoder(TEXT, "auto").encoding == "json-instances"
    assert make_encoder(TEXT, "json", json_format="columnar").encoding == "json-columnar"


def test_json_formats_are_tf_servings_row_and_columnar_formats() -> None:
    batch = {"input_ids": np.array([[1, 2], [3, 4]]), "attention_mask": np.array([[1, 1], [1, 0]])}
    specs = (TensorSpec("input_ids", (2,), "int64"), TensorSpec("attention_mask", (2,), "int64"))
    assert json.loads(JsonInstancesEncoder(specs).encode(batch)) == {
        "instances": [
            {"input_ids": [1, 2], "attention_mask": [1, 1]},
            {"input_ids": [3, 4], "attention_mask": [1, 0]},
        ]
    }
    assert json.loads(JsonColumnarEncoder(specs).encode(batch)) == {
        "inputs": {"input_ids": [[1, 2], [3, 4]], "attention_mask": [[1, 1], [1, 0]]}
    }
    one = (TensorSpec("x", (2,), "float32"),)
    rows = {"x": np.array([[0.5, 1.0]], np.float32)}
    assert json.loads(JsonInstancesEncoder(one).encode(rows)) == {"instances": [[0.5, 1.0]]}
    assert json.loads(JsonColumnarEncoder(one).encode(rows)) == {"inputs": [[0.5, 1.0]]}


def test_json_keeps_float32_values_exact() -> None:
    values = np.random.default_rng(3).normal(size=(4, 64)).astype(np.float32)
    body = JsonInstancesEncoder((TensorSpec("x", (64,), "float32"),)).encode({"x": values})
    assert np.array_equal(np.asarray(json.loads(body)["instances"], dtype=np.float32), values)


def test_a_template_puts_the_data_where_its_placeholders_are() -> None:
    batch = _batch(TEXT, 2)
    encoder = TemplateEncoder(TEXT, '{"data": {{ instances }}, "ids": {{inputs.input_ids}}}', "text/plain")
    assert (encoder.encoding, encoder.content_type) == ("template", "text/plain")
    body = json.loads(encoder.encode(batch))
    assert body["ids"] == batch["input_ids"].tolist()
    assert body["data"][1]["attention_mask"] == batch["attention_mask"][1].tolist()
    # a template in the harness's own format is read by the harness handler
    ours = TemplateEncoder(TEXT, '{"inputs": {{inputs}}}', "application/json")
    decoded = _decode(ours.encode(batch), TEXT, "application/json")
    np.testing.assert_array_equal(decoded["attention_mask"], batch["attention_mask"])


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ('{"data": 1}', "no placeholder"),
        ('{"data": {{rows}}}', "unknown placeholder {{rows}}"),
        ('{"data": {{inputs.pixels}}}', "{{inputs.pixels}} names no input"),
    ],
)
def test_bad_templates_are_refused_naming_the_problem(template: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("}", r"\}")):
        TemplateEncoder(TEXT, template, "application/json")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON, .npy or .npz"),
        (b'{"x": 1}', 'expected a JSON object {"instances"'),
        (b'{"instances": []}', "non-empty list"),
        (b'{"instances": [[1, 2, 3]]}', "each instance must be an object by name"),
        (b'{"instances": [{"input_ids": [1]}]}', "instances lack input(s) ['attention_mask']"),
        (
            b'{"instances": [{"input_ids": [1.5] , "attention_mask": [1]}]}',
            "must hold int64 values, got float64",
        ),
        (b'{"inputs": {"input_ids": [[1]], "attention_mask": [[1]]}}', "shape [16], got [1]"),
        (b'{"inputs": {"input_ids": [[1]]}}', "the model takes"),
    ],
)
def test_malformed_bodies_are_value_errors_saying_what_is_wrong(body: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        handler.decode_request({"body": bytearray(body)}, _specs(TEXT))


@pytest.mark.parametrize(
    ("body", "message"),
    [(b"\x93NUMPY\x01\x00garbage", "unreadable .npy body"), (b"PK\x03\x04garbage", "unreadable .npz body")],
)
def test_corrupt_binary_bodies_are_value_errors(body: bytes, message: str) -> None:
    inputs = _specs(IMAGE) if body.startswith(b"\x93") else _specs(TEXT)
    with pytest.raises(ValueError, match=re.escape(message)):
        handler.decode_request({"body": bytearray(body)}, inputs)


def test_an_npy_body_for_a_model_with_several_inputs_is_refused() -> None:
    body = NpyEncoder(IMAGE).encode(_batch(IMAGE, 1))
    with pytest.raises(ValueError, match=r"send an \.npz"):
        handler.decode_request({"body": bytearray(body)}, _specs(TEXT))
    with pytest.raises(ValueError, match="several"):
        NpyEncoder(TEXT)


def test_binary_of_another_dtype_is_cast_within_its_kind_only() -> None:
    one = [("x", (2,), "float32")]
    decoded = handler.decode_request({"body": bytearray(_npy(np.ones((1, 2), np.float64)))}, one)
    assert decoded["x"].dtype == np.float32
    with pytest.raises(ValueError, match="must hold int64 values, got float32"):
        handler.decode_request({"body": bytearray(_npy(np.ones((1, 2), np.float32)))}, [("x", (2,), "int64")])


def test_flat_rows_of_a_multi_dimensional_input_are_reshaped_as_before() -> None:
    flat = np.arange(2 * 3 * 32 * 32, dtype=np.float32).reshape(2, -1)
    decoded = handler.decode_request({"body": {"instances": flat.tolist()}}, _specs(IMAGE))
    assert decoded["pixels"].shape == (2, 3, 32, 32)


def _npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def test_handler_output_rows_take_the_first_output_one_row_per_example() -> None:
    import torch

    scores = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    assert handler.output_rows(scores, 2) == [[0, 1, 2], [3, 4, 5]]
    assert handler.output_rows((scores, torch.zeros(2)), 2) == [[0, 1, 2], [3, 4, 5]]
    assert handler.output_rows({"logits": scores, "aux": torch.zeros(1)}, 2) == [[0, 1, 2], [3, 4, 5]]
    assert handler.output_rows(torch.tensor([1.5, 2.5]), 2) == [[1.5], [2.5]]  # regression, one value
    with pytest.raises(ValueError, match="for 3 examples"):
        handler.output_rows(scores, 3)


def test_the_handler_file_defines_exactly_one_class_as_torchserve_requires() -> None:
    tree = ast.parse((ROOT / "harness/serving/torchserve_handler.py").read_text())
    assert [n.name for n in tree.body if isinstance(n, ast.ClassDef)] == ["TensorHandler"]
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
    }
    assert "harness" not in imported, "the handler runs in TorchServe's worker, outside the harness"


# ---- requests for the load --------------------------------------------------------------------


def test_requests_cover_every_example_and_the_last_one_is_topped_up_from_the_start() -> None:
    assert [r.tolist() for r in request_rows(5, 2)] == [[0, 1], [2, 3], [4, 0]]
    assert [r.tolist() for r in request_rows(2, 4)] == [[0, 1, 0, 1]]
    batch = {"x": np.arange(5, dtype=np.float32)[:, None]}
    encoded = encode_requests(
        JsonInstancesEncoder((TensorSpec("x", (1,), "float32"),)), batch, 2, output_path="predictions",
        output_width=10,
    )  # fmt: skip
    assert encoded.rows_per_body == 2
    assert [json.loads(b)["instances"] for b in encoded.bodies] == [[[0], [1]], [[2], [3]], [[4], [0]]]
    assert encoded.describe()["distinct_bodies"] == 3
    assert (encoded.output_path, encoded.output_width, encoded.content_type) == (
        "predictions",
        10,
        "application/json",
    )


def test_requests_stop_growing_past_the_byte_cap_but_keep_at_least_one_body() -> None:
    batch = _batch(IMAGE, 10)
    encoder = NpyEncoder(IMAGE)
    size = len(encoder.encode({"pixels": batch["pixels"][:1]}))
    capped = encode_requests(encoder, batch, 1, output_path=None, output_width=None, max_bytes=3 * size)
    assert len(capped.bodies) == 3
    one = encode_requests(encoder, batch, 1, output_path=None, output_width=None, max_bytes=1)
    assert len(one.bodies) == 1
    assert payloads.MAX_BODIES_BYTES == 64 * 1024 * 1024


# ---- responses ----------------------------------------------------------------------------------


def test_rows_at_a_dotted_path_of_keys_and_list_indexes() -> None:
    ours = {"predictions": [[0.1, 0.9], [0.8, 0.2]]}
    np.testing.assert_array_equal(
        rows_at_path(ours, "predictions", rows=2, width=2), np.array([[0.1, 0.9], [0.8, 0.2]], np.float32)
    )
    theirs = {"outputs": [{"probs": [0.25, 0.75]}]}
    assert rows_at_path(theirs, "outputs.0.probs", rows=1, width=2).tolist() == [[0.25, 0.75]]
    assert rows_at_path({"y": [1.5, 2.5]}, "y", rows=2, width=1).tolist() == [[1.5], [2.5]]
    assert rows_at_path({"y": 3.0}, "y", rows=1, width=1).tolist() == [[3.0]]
    with pytest.raises(ValueError, match=r"nothing at 'outputs\.1'"):
        rows_at_path(theirs, "outputs.1.probs", rows=1, width=2)
    with pytest.raises(ValueError, match=r"expected 2 row\(s\) of 2 value\(s\), got shape \[2\]"):
        rows_at_path(theirs, "outputs.0.probs", rows=2, width=2)


def test_tf_serving_row_and_columnar_responses_give_the_same_rows() -> None:
    rows = [[0.1, 0.9], [0.6, 0.4]]
    expected = np.array(rows, np.float32)
    got = [
        tfserving_rows({"predictions": rows}, rest_format="row", output_name=None, rows=2, width=2),
        tfserving_rows({"outputs": rows}, rest_format="columnar", output_name=None, rows=2, width=2),
        tfserving_rows(
            {"predictions": [{"logits": r, "label": 1} for r in rows]},
            rest_format="row", output_name="logits", rows=2, width=2,
        ),
        tfserving_rows(
            {"outputs": {"logits": rows, "label": [1, 0]}}, rest_format="columnar", output_name="logits",
            rows=2, width=2,
        ),
    ]  # fmt: skip
    for array in got:
        np.testing.assert_array_equal(array, expected)
    with pytest.raises(ValueError, match=r"outputs \['label', 'logits'\]; expected one output"):
        tfserving_rows({"outputs": {"logits": rows, "label": [1, 0]}}, rest_format="columnar",
                       output_name=None, rows=2, width=2)  # fmt: skip
    with pytest.raises(ValueError, match="no 'outputs'"):
        tfserving_rows({"predictions": rows}, rest_format="columnar", output_name=None, rows=2, width=2)
    assert tfserving_output_path("row", "logits", True) == "predictions"
    assert tfserving_output_path("columnar", "logits", True) == "outputs.logits"
    assert tfserving_output_path("columnar", "logits", False) == "outputs"


def _locustfile_functions() -> dict[str, Any]:
    """The locustfile's response-checking functions, compiled alone: importing the file would
    import Locust, whose gevent monkey-patching must not happen in the test process."""
    source = (ROOT / "harness/load/locustfiles/predict.py").read_text()
    tree = ast.parse(source)
    wanted = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in ("_at_path", "_row_count")]
    namespace: dict[str, Any] = {"Any": Any}
    exec(compile(ast.Module(body=wanted, type_ignores=[]), "predict.py", "exec"), namespace)
    return namespace


@pytest.mark.parametrize(
    ("payload", "path", "width", "rows"),
    [
        ({"predictions": [[0.1, 0.9], [0.8, 0.2]]}, "predictions", 2, 2),
        ({"predictions": [[0.1, 0.9]]}, "predictions", 2, 1),
        ({"outputs": [{"probs": [0.25, 0.75]}]}, "outputs.0.probs", 2, 1),
        ({"outputs": [{"probs": [0.25, 0.75, 0.0]}]}, "outputs.0.probs", 2, None),
        ({"y": [1.5, 2.5, 3.5]}, "y", 1, 3),
        ({"y": 2.0}, "y", 1, 1),
        ({"predictions": "nope"}, "predictions", 2, None),
    ],
)
def test_the_locustfile_counts_the_rows_the_harness_reads(
    payload: Any, path: str, width: int, rows: int | None
) -> None:
    locust_side = _locustfile_functions()
    assert locust_side["_row_count"](locust_side["_at_path"](payload, path), width) == rows
    for n in (1, 2, 3):
        if n == rows:
            assert rows_at_path(payload, path, rows=n, width=width).shape == (n, width)
        else:
            with pytest.raises(ValueError, match=r"expected|nothing at|rows of numbers"):
                rows_at_path(payload, path, rows=n, width=width)


def test_the_locustfile_counts_tf_servings_per_example_objects_and_misses_nothing_at_a_path() -> None:
    locust_side = _locustfile_functions()
    value = locust_side["_at_path"]({"predictions": [{"logits": [1, 2]}, {"logits": [3, 4]}]}, "predictions")
    assert locust_side["_row_count"](value, 2) == 2
    with pytest.raises(KeyError):
        locust_side["_at_path"]({"outputs": []}, "outputs.0.probs")


def test_as_output_rows_refuses_non_numbers() -> None:
    with pytest.raises(ValueError, match="rows of numbers"):
        as_output_rows([["a", "b"]], rows=1, width=2)


def test_light_modules_stay_light() -> None:
    # the option models import wire.py; `harness validate` must not pull numpy in through it
    import subprocess
    import sys

    code = "import sys, harness.serving.torchserve_config; print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"
    assert Path(payloads.__file__).name == "payloads.py"


def test_a_one_input_model_takes_a_one_entry_batch_whatever_its_key() -> None:
    from harness.serving.payloads import model_batch

    data = {"x": np.ones((2, 3, 32, 32), dtype=np.float64)}  # the data's name and dtype
    batch = model_batch(data, IMAGE)
    assert list(batch) == ["pixels"]
    assert batch["pixels"].dtype == np.float32
    assert model_batch(np.ones((3, 32, 32)), IMAGE)["pixels"].shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="missing input 'input_ids'"):
        model_batch({"ids": np.ones((2, 16)), "mask": np.ones((2, 16))}, TEXT)
