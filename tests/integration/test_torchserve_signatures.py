"""Real TorchServe serving models the old float-rows path could not: two int64 inputs, and a
(3, 32, 32) image. Every request format the handler reads (JSON row and columnar, .npy, .npz)
gives the module's own outputs, and Locust drives the server with the binary bodies."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import torch

from harness.artifacts import ServedArtifact
from harness.data.tensors import OutputSpec, Signature, TensorSpec
from harness.load.locust_driver import LocustDriver
from harness.scenario.load_spec import LoadSpec
from harness.serving.payloads import (
    JsonColumnarEncoder,
    JsonInstancesEncoder,
    NpyEncoder,
    NpzEncoder,
    RequestEncoder,
    rows_at_path,
)
from harness.serving.torchserve import TorchServeTarget
from tests.integration.torch_user_models import MaskedMeanText
from tests.integration.torchserve_helpers import TORCHSERVE_MARKS, export_batched, torchserve_serving

pytestmark = TORCHSERVE_MARKS

TEXT = Signature(
    inputs=(TensorSpec("input_ids", (16,), "int64"), TensorSpec("attention_mask", (16,), "int64")),
    output=OutputSpec("values", 3),
    task="regression",
)
IMAGE = Signature(
    inputs=(TensorSpec("pixels", (3, 32, 32), "float32"),),
    output=OutputSpec("logits", 5),
    task="classification",
)


class ImageModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, kernel_size=3, stride=2)
        self.head = torch.nn.Linear(4, 5)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(pixels)).mean(dim=(2, 3)))


def _text_batch(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "input_ids": rng.integers(0, 100, size=(n, 16)).astype(np.int64),
        "attention_mask": (rng.random((n, 16)) > 0.25).astype(np.int64),
    }


def _image_batch(n: int, seed: int) -> dict[str, np.ndarray]:
    return {"pixels": np.random.default_rng(seed).normal(size=(n, 3, 32, 32)).astype(np.float32)}


def _in_process(module: torch.nn.Module, signature: Signature, batch: dict[str, np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        return module(*(torch.from_numpy(batch[s.name]) for s in signature.inputs)).numpy()


def _post_all(
    target: TorchServeTarget, encoder: RequestEncoder, batch: dict[str, np.ndarray], step: int
) -> np.ndarray:
    """The outputs for `batch` posted by hand in `encoder`'s format, `step` examples a request."""
    endpoint = target.endpoint
    assert endpoint is not None
    width = target._artifact.signature.output.width
    rows = []
    with requests.Session() as http:
        http.trust_env = False
        total = len(next(iter(batch.values())))
        for begin in range(0, total, step):
            chunk = {name: array[begin : begin + step] for name, array in batch.items()}
            resp = http.post(
                endpoint.base_url + endpoint.path,
                data=encoder.encode(chunk),
                headers={"Content-Type": encoder.content_type},
                timeout=30,
            )
            assert resp.status_code == 200, resp.text
            rows.append(
                rows_at_path(resp.json(), "predictions", rows=len(chunk[encoder.inputs[0].name]), width=width)
            )
    return np.concatenate(rows)


def _same(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.dtype == np.float32
    assert got.shape == expected.shape
    # the same program in TorchServe's worker, up to float32 summation order
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def _serving(
    artifact: ServedArtifact, run_dir: Path, **options: Any
) -> contextlib.AbstractContextManager[TorchServeTarget]:
    """One worker, batches of up to 4 examples within 5 ms; `options` are the serving options."""
    return torchserve_serving(
        artifact, run_dir, workers=1, batch_size=4, max_batch_delay_ms=5, options=options
    )


@pytest.fixture(scope="module")
def text_served(tmp_path_factory):
    base = tmp_path_factory.mktemp("ts-text")
    torch.manual_seed(0)
    module = MaskedMeanText(vocab=100, outputs=3).eval()
    # binary: these inputs are small, so auto would pick JSON; the test posts JSON by hand too
    artifact = export_batched(module, TEXT, base / "text.pt2")
    with _serving(artifact, base / "run", encoding="binary", rows_per_request=8) as target:
        yield module, target


@pytest.fixture(scope="module")
def image_served(tmp_path_factory):
    base = tmp_path_factory.mktemp("ts-image")
    torch.manual_seed(1)
    module = ImageModel().eval()
    with _serving(export_batched(module, IMAGE, base / "image.pt2"), base / "run") as target:
        yield module, target


def test_two_int64_inputs_give_the_modules_outputs_in_npz_and_both_json_formats(text_served):
    module, target = text_served
    batch = _text_batch(20, seed=3)
    expected = _in_process(module, TEXT, batch)
    assert target.describe()["request_encoding"] == "npz"
    _same(target.predict(batch), expected)  # .npz, 8 examples a request
    _same(_post_all(target, JsonInstancesEncoder(TEXT.inputs), batch, 3), expected)
    _same(_post_all(target, JsonColumnarEncoder(TEXT.inputs), batch, 7), expected)
    _same(_post_all(target, NpzEncoder(TEXT.inputs), batch, 20), expected)


def test_a_float_input_for_an_int64_one_is_a_400_naming_the_input(text_served):
    _, target = text_served
    endpoint = target.endpoint
    body = {"instances": [{"input_ids": [0.5] * 16, "attention_mask": [1] * 16}]}
    resp = requests.post(endpoint.base_url + endpoint.path, json=body, timeout=30)
    assert resp.status_code == 400
    assert "input 'input_ids' must hold int64 values, got float64" in resp.json()["error"]


def test_a_3x32x32_image_gives_the_modules_outputs_in_npy_and_json(image_served):
    module, target = image_served
    batch = _image_batch(10, seed=4)
    expected = _in_process(module, IMAGE, batch)
    facts = target.describe()
    assert (facts["request_encoding"], facts["request_content_type"]) == ("npy", "application/x-npy")
    _same(target.predict(batch), expected)
    _same(target.predict(batch["pixels"]), expected)  # a one-input model also takes the bare array
    _same(_post_all(target, JsonInstancesEncoder(IMAGE.inputs), batch, 4), expected)
    _same(_post_all(target, NpyEncoder(IMAGE.inputs), batch, 1), expected)


def test_locust_drives_the_image_server_with_binary_bodies_encoded_once(image_served, tmp_path):
    _, target = image_served
    encoded = target.encode_requests(_image_batch(6, seed=5), rows_per_request=2)
    assert (encoded.encoding, encoded.content_type, len(encoded.bodies)) == ("npy", "application/x-npy", 3)
    assert encoded.describe()["body_bytes_mean"] == 2 * 3 * 32 * 32 * 4 + 128
    load = LoadSpec(users=2, warmup_s=0.5, measure_s=1.5, request_batch_size=2)
    result = LocustDriver().run(target.endpoint, load, encoded, tmp_path)
    assert result.failure_count == 0, result.failure_examples
    assert result.ok_count > 20
