"""The in-process target serves the exported artifact itself, safely from many threads."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from harness.artifacts import ServedArtifact
from harness.compression.torch.export import TorchArtifactRunner, export_module
from harness.compression.torch.int8 import TorchInt8Recipe
from harness.data.tensors import OutputSpec, Signature, TensorSpec
from harness.errors import RunError, UserError
from harness.models.digits import load_digits_split
from harness.models.torch_mlp import get_reference_mlp
from harness.scenario.schema import ServingSpec
from harness.serving.inprocess import InProcessTarget
from tests.integration.torch_user_models import MaskedMeanText


@pytest.fixture(scope="module")
def data():
    return load_digits_split(seed=0)


@pytest.fixture(scope="module")
def artifacts(data, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("inprocess")
    module = get_reference_mlp(data, seed=0, cache_root=root / "cache").module
    signature = Signature(inputs=data.inputs, output=OutputSpec("logits", 10), task="classification")
    reference, _ = export_module(module, root / "reference", signature)
    quantized_module, _ = TorchInt8Recipe({"mode": "dynamic"}).apply(module)
    quantized, _ = export_module(quantized_module, root / "int8", signature)
    return {"reference": reference, "int8_dynamic": quantized}


def spec(**overrides: Any) -> ServingSpec:
    return ServingSpec(**{"target": "inprocess", **overrides})


@pytest.mark.parametrize("name", ["reference", "int8_dynamic"])
def test_outputs_equal_the_artifacts_own_outputs(data, artifacts, tmp_path: Path, name: str) -> None:
    expected = TorchArtifactRunner(artifacts[name]).predict_outputs(data.test.inputs)
    with InProcessTarget(spec(), tmp_path) as target:
        target.start(artifacts[name])
        got = target.predict(data.test.inputs)
        bare = target.predict(data.x_test)  # a one-input model also takes its bare array
    assert got.dtype == np.float32
    assert got.shape == (len(data.x_test), 10)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(bare, expected)
    assert (expected.argmax(axis=1) == data.y_test).mean() > 0.9


def test_concurrent_single_example_calls_match_serial_predictions(data, artifacts, tmp_path: Path) -> None:
    artifact = artifacts["int8_dynamic"]
    expected = TorchArtifactRunner(artifact).predict_outputs(data.test.inputs)
    with InProcessTarget(spec(workers=2), tmp_path) as target:
        target.start(artifact)
        with ThreadPoolExecutor(max_workers=8) as pool:
            got = list(
                pool.map(
                    lambda i: target.predict({"inputs": data.x_test[i : i + 1]})[0], range(len(data.x_test))
                )
            )
    np.testing.assert_array_equal(np.asarray(got), expected)


def test_a_two_input_int64_regression_model_is_fed_by_name_and_answers_its_values(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = MaskedMeanText(vocab=50, outputs=2).eval()  # a model the old float-rows path could not call
    signature = Signature(
        inputs=(TensorSpec("input_ids", (16,), "int64"), TensorSpec("attention_mask", (16,), "int64")),
        output=OutputSpec("values", 2),
        task="regression",
    )
    artifact, _ = export_module(module, tmp_path / "export", signature)
    rng = np.random.default_rng(1)
    batch = {
        "input_ids": rng.integers(0, 50, size=(12, 16)).astype(np.int64),
        "attention_mask": (rng.random((12, 16)) > 0.3).astype(np.int64),
    }
    with torch.no_grad():
        expected = module(torch.from_numpy(batch["input_ids"]), torch.from_numpy(batch["attention_mask"]))
    with InProcessTarget(spec(), tmp_path / "run") as target:
        target.start(artifact)
        got = target.predict(batch)
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-6)


class SlowRunner:
    """Stands in for the model to count how many predictions run at the same moment."""

    def __init__(self) -> None:
        self.active = self.peak = 0
        self.lock = threading.Lock()

    def predict_outputs(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        time.sleep(0.02)
        with self.lock:
            self.active -= 1
        return np.zeros((len(batch["inputs"]), 10), dtype=np.float32)


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_cap_how_many_predictions_run_at_once(artifacts, tmp_path: Path, workers: int) -> None:
    with InProcessTarget(spec(workers=workers), tmp_path) as target:
        target.start(artifacts["reference"])
        slow = SlowRunner()
        target._runner = slow
        with ThreadPoolExecutor(max_workers=6) as pool:
            list(pool.map(lambda _: target.predict({"inputs": np.zeros((1, 64), np.float32)}), range(24)))
    assert slow.peak == workers


def test_has_no_endpoint_and_describes_itself_as_serverless(artifacts, tmp_path: Path) -> None:
    with InProcessTarget(spec(workers=2), tmp_path) as target:
        target.start(artifacts["reference"])
        assert target.endpoint is None
        info = target.describe()
    assert info["target"] == "inprocess"
    assert info["mode"] == "in-process, no server"
    assert info["workers"] == 2
    assert info["intra_op_threads"] == 1
    assert info["artifact_format"] == "torch.export"
    assert info["torch_version"] == torch.__version__


def test_start_sets_intra_op_threads_and_stop_restores_them(artifacts, tmp_path: Path) -> None:
    before = torch.get_num_threads()
    wanted = 2 if before == 1 else 1
    target = InProcessTarget(spec(options={"intra_op_threads": wanted}), tmp_path)
    target.start(artifacts["reference"])
    try:
        assert torch.get_num_threads() == wanted
    finally:
        target.stop()
    assert torch.get_num_threads() == before
    target.stop()  # a second stop is harmless
    assert torch.get_num_threads() == before


def test_predict_outside_start_and_stop_is_a_run_error(artifacts, tmp_path: Path) -> None:
    target = InProcessTarget(spec(), tmp_path)
    with pytest.raises(RunError, match="not started"):
        target.predict(np.zeros((1, 64), np.float32))
    target.start(artifacts["reference"])
    target.stop()
    with pytest.raises(RunError, match="not started"):
        target.predict(np.zeros((1, 64), np.float32))


def test_missing_artifact_fails_start_and_leaves_threads_alone(artifacts, tmp_path: Path) -> None:
    from dataclasses import replace

    before = torch.get_num_threads()
    gone = replace(artifacts["reference"], path=tmp_path / "gone.pt2")
    with InProcessTarget(spec(), tmp_path) as target, pytest.raises(RunError, match="not found"):
        target.start(gone)
    assert torch.get_num_threads() == before


class NaNRunner:
    def __init__(self, artifact: ServedArtifact) -> None:
        pass

    def predict_outputs(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        return np.full((1, 10), np.nan, dtype=np.float32)


def test_start_refuses_a_model_whose_zero_example_gives_no_finite_row(
    artifacts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness import frameworks

    torch_spec = frameworks.framework("torch")
    monkeypatch.setattr(type(torch_spec), "runner", lambda self, artifact: NaNRunner(artifact))
    before = torch.get_num_threads()
    with (
        InProcessTarget(spec(), tmp_path) as target,
        pytest.raises(RunError, match="one row of 10 finite values"),
    ):
        target.start(artifacts["reference"])
    assert torch.get_num_threads() == before


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"threads": 2}, "serving.options.threads: Extra inputs"),
        ({"intra_op_threads": 0}, "greater than or equal to 1"),
    ],
)
def test_bad_options_are_user_errors(tmp_path: Path, options: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError, match=message):
        InProcessTarget(spec(options=options), tmp_path)
