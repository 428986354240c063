"""The uint8 I/O path (tf.ptq mode int8, io uint8) through every target that serves it.

One real uint8-in/uint8-out TFLite file of the digits CNN, and the float reference it came from:
in-process serving keeps the accuracy; the shared conversion (harness.serving.quantized_io) turns
the float data into the uint8 tensors the file takes and its uint8 scores back into floats,
checked against the interpreter fed directly; TfServingTarget in remote mode talks to a fake TF
Serving that runs the same file and, like TF Serving, refuses numbers that are not uint8 (REST
predict, the Locust bodies and a real Locust run); and the real tensorflow_model_server serves the
file where the binary is installed (skipped otherwise, with the reason).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from ai_edge_litert.interpreter import Interpreter

from harness.artifacts import ServedArtifact
from harness.compression.base import RecipeContext
from harness.compression.tensorflow.ptq import TfPtqRecipe
from harness.compression.tensorflow.runner import TfArtifactRunner
from harness.data.tensors import OutputSpec, Signature, TensorSpec
from harness.frameworks import TENSORFLOW
from harness.load.locust_driver import LocustDriver
from harness.models.digits import load_digits_split
from harness.models.tf_models import get_reference_tf_model
from harness.processes import free_port
from harness.scenario.load_spec import LoadSpec
from harness.scenario.schema import ServingSpec
from harness.serving.inprocess import InProcessTarget
from harness.serving.quantized_io import WireQuantization
from harness.serving.tfserving import TfServingTarget

DIGITS = Signature(
    inputs=(TensorSpec("inputs", (64,), "float32"),), output=OutputSpec("logits", 10), task="classification"
)
TOLERANCE = 0.02
TFSERVING_MISSING = TfServingTarget.unavailable_reason(ServingSpec(target="tfserving"))


@pytest.fixture(scope="module")
def data():
    return load_digits_split(seed=0)


@pytest.fixture(scope="module")
def reference(data):
    return get_reference_tf_model("cnn", data, seed=0)


@pytest.fixture(scope="module")
def artifact(reference, data, tmp_path_factory: pytest.TempPathFactory) -> ServedArtifact:
    root = tmp_path_factory.mktemp("uint8-io")
    tflite, _ = TfPtqRecipe({"mode": "int8", "io": "uint8"}).apply(
        reference.model, RecipeContext(data=data, seed=0)
    )
    return TENSORFLOW.backend().export(tflite, root, DIGITS)


@pytest.fixture(scope="module")
def expected(artifact, data) -> np.ndarray:
    """Scores of the file run in this process on the float test data."""
    return TfArtifactRunner(artifact).predict_outputs(data.test.inputs)


def interpreter_scores(path: Path, inputs: np.ndarray) -> np.ndarray:
    """The file's raw uint8 scores for uint8 inputs, straight from the interpreter."""
    interpreter = Interpreter(model_path=str(path))
    runner = interpreter.get_signature_runner("serving_default")
    return runner(inputs=inputs)["scores"]


def test_the_file_takes_and_returns_uint8_and_records_its_scale_and_zero_point(artifact) -> None:
    assert artifact.extra["input_dtypes"] == {"inputs": "uint8"}
    assert artifact.extra["output_dtype"] == "uint8"
    pixels = artifact.extra["input_quantization"]["inputs"]
    assert pixels["dtype"] == "uint8"
    assert pixels["scale"] == pytest.approx(1 / 255, rel=1e-3)  # calibrated on [0, 1] pixels
    assert set(artifact.extra["output_quantization"]) == {"scores"}
    assert artifact.signature == DIGITS  # clients still hold float data


def test_the_conversion_gives_uint8_requests_and_the_interpreters_dequantized_scores(
    artifact, data, expected
) -> None:
    wire = WireQuantization.from_extra(artifact.extra)
    sent = wire.to_wire(data.test.inputs, DIGITS.inputs)["inputs"]
    assert sent.dtype == np.uint8
    assert sent.max() == 255
    assert sent.min() == 0
    raw = interpreter_scores(Path(artifact.path), sent)
    assert raw.dtype == np.uint8
    np.testing.assert_array_equal(wire.from_wire(raw, "scores"), expected)


def test_in_process_serving_of_the_uint8_file_keeps_the_float_accuracy(
    artifact, reference, data, expected, tmp_path: Path
) -> None:
    with InProcessTarget(ServingSpec(target="inprocess"), tmp_path) as target:
        target.start(artifact)
        served = target.predict(data.test.inputs)
    np.testing.assert_array_equal(served, expected)
    accuracy = float(np.mean(served.argmax(axis=1) == data.y_test))
    assert abs(accuracy - reference.test_accuracy) <= TOLERANCE


class TfliteTfServing:
    """A fake TF Serving (the REST API remote mode talks to) running the real TFLite file. Like
    TF Serving with a uint8 input, it answers 400 to any number that is not a uint8."""

    def __init__(self, path: Path) -> None:
        self.bodies: list[Any] = []
        interpreter = Interpreter(model_path=str(path))
        runner = interpreter.get_signature_runner("serving_default")
        lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _send(self, payload: Any, status: int = 200) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path.endswith("/metadata"):
                    signature = {"inputs": {"inputs": {}}, "outputs": {"scores": {}}}
                    self._send(
                        {"metadata": {"signature_def": {"signature_def": {"serving_default": signature}}}}
                    )
                else:
                    status = {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK"}}
                    self._send({"model_version_status": [status]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.bodies.append(body)
                rows = body["instances"] if "instances" in body else body["inputs"]
                values = np.asarray(rows)
                if values.dtype.kind != "i" or values.min() < 0 or values.max() > 255:
                    self._send(
                        {"error": f"JSON Value not formatted correctly for uint8: {rows[0]!s:.40}"}, 400
                    )
                    return
                with lock:  # one interpreter, like one model instance
                    scores = runner(inputs=values.astype(np.uint8))["scores"]
                key = "predictions" if "instances" in body else "outputs"
                self._send({key: scores.tolist()})

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def fake_tfserving(artifact) -> Iterator[TfliteTfServing]:
    server = TfliteTfServing(Path(artifact.path))
    yield server
    server.close()


def _remote(url: str, tmp_path: Path, **options: Any) -> TfServingTarget:
    spec = ServingSpec(
        target="tfserving", startup_timeout_s=10, options={"mode": "remote", "url": url, **options}
    )
    return TfServingTarget(spec, tmp_path / "run")


@pytest.mark.parametrize("rest_format", ["row", "columnar"])
def test_tf_serving_requests_carry_uint8_pixels_and_the_replies_are_dequantized(
    fake_tfserving, artifact, data, expected, tmp_path: Path, rest_format: str
) -> None:
    with _remote(fake_tfserving.url, tmp_path, rest_format=rest_format) as target:
        target.start(artifact)
        served = target.predict(data.test.inputs)
        encoded = target.encode_requests(data.test.inputs, 4)
        facts = target.describe()
    np.testing.assert_array_equal(served, expected)
    assert facts["wire_inputs"] == ["inputs: uint8[64]"]
    assert facts["input_quantization"] == artifact.extra["input_quantization"]
    body = json.loads(encoded.bodies[0])
    rows = np.asarray(body["instances"] if rest_format == "row" else body["inputs"])
    assert rows.dtype.kind == "i"
    assert rows.shape == (4, 64)
    np.testing.assert_array_equal(
        rows,
        WireQuantization.from_extra(artifact.extra).to_wire({"inputs": data.x_test[:4]}, DIGITS.inputs)[
            "inputs"
        ],
    )


def test_locust_sends_the_uint8_bodies_and_the_server_accepts_every_one(
    fake_tfserving, artifact, data, tmp_path: Path
) -> None:
    with _remote(fake_tfserving.url, tmp_path) as target:
        target.start(artifact)
        encoded = target.encode_requests(data.test.inputs, 2)
        endpoint = target.endpoint
        assert endpoint is not None
        before = len(fake_tfserving.bodies)
        load = LoadSpec(users=1, warmup_s=0.5, measure_s=1.0, request_batch_size=2, timeout_s=5.0)
        result = LocustDriver().run(endpoint, load, encoded, tmp_path / "locust")
    assert result.failure_count == 0, result.failure_examples
    assert result.ok_count > 10
    sent = fake_tfserving.bodies[before:]
    assert sent
    assert all(np.asarray(b["instances"]).dtype.kind == "i" for b in sent)


@pytest.mark.tfserving
@pytest.mark.skipif(TFSERVING_MISSING is not None, reason=str(TFSERVING_MISSING))
def test_real_tf_serving_serves_the_uint8_file_like_the_in_process_runner(
    artifact, data, expected, tmp_path: Path
) -> None:
    spec = ServingSpec(target="tfserving", startup_timeout_s=120)
    with TfServingTarget(spec, tmp_path / "run") as target:
        target.start(artifact)
        served = target.predict(data.test.inputs)
        encoded = target.encode_requests(data.test.inputs, 3)
        endpoint = target.endpoint
        assert endpoint is not None
        reply = requests.post(endpoint.base_url + endpoint.path, data=encoded.bodies[0], timeout=10).json()
        assert "model.tflite" in target.describe()["model_layout"]
    np.testing.assert_allclose(served, expected, atol=1e-6)
    raw = np.asarray(reply["predictions"])
    assert raw.dtype.kind == "i"
    assert raw.shape == (3, 10)
    assert raw.min() >= 0
    assert raw.max() <= 255
