"""TfServingTarget's REST path against a fake TF Serving (remote mode): the row and columnar
formats of TF Serving's REST API, several named int64 inputs, several outputs, the input name the
server gives a one-input model, and the bodies it encodes for the load. No tensorflow_model_server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.artifacts import ServedArtifact
from harness.data.tensors import OutputSpec, Signature, TensorSpec
from harness.errors import UserError
from harness.processes import free_port
from harness.scenario.schema import ServingSpec
from harness.serving.tfserving import TfServingTarget

TEXT = Signature(
    inputs=(TensorSpec("input_ids", (4,), "int64"), TensorSpec("attention_mask", (4,), "int64")),
    output=OutputSpec("values", 2),
    task="regression",
)


def _values(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The fake model: per example, the masked sum of the ids and the count of kept tokens."""
    return np.stack([(ids * mask).sum(axis=1), mask.sum(axis=1)], axis=1).astype(np.float32)


class FakeTfServing:
    """Answers the status, metadata and predict REST calls the way TF Serving 2.x does."""

    def __init__(self, inputs: list[str], outputs: list[str]) -> None:
        self.bodies: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _send(self, payload: Any, status: int = 200) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.endswith("/metadata"):
                    signature = {"inputs": {n: {} for n in inputs}, "outputs": {n: {} for n in outputs}}
                    self._send(
                        {"metadata": {"signature_def": {"signature_def": {"serving_default": signature}}}}
                    )
                else:
                    status = {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK"}}
                    self._send({"model_version_status": [status]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.bodies.append(body)
                self._send(fake.answer(body, inputs, outputs))

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @staticmethod
    def answer(body: dict[str, Any], inputs: list[str], outputs: list[str]) -> dict[str, Any]:
        if "instances" in body:
            rows = body["instances"]
            if len(inputs) == 1:
                columns = {inputs[0]: np.asarray(rows)}
            else:
                columns = {name: np.asarray([row[name] for row in rows]) for name in inputs}
        else:
            given = body["inputs"]
            columns = {name: np.asarray(given[name]) for name in inputs} if isinstance(given, dict) else {
                inputs[0]: np.asarray(given)
            }  # fmt: skip
        if len(inputs) == 1:
            x = columns[inputs[0]]
            values = np.stack([x.sum(axis=1), x.max(axis=1)], axis=1).astype(np.float32)
        else:
            values = _values(columns["input_ids"], columns["attention_mask"])
        result = {outputs[0]: values.tolist(), **{name: [0] * len(values) for name in outputs[1:]}}
        if "instances" in body:
            if len(outputs) == 1:
                return {"predictions": result[outputs[0]]}
            return {"predictions": [{name: result[name][i] for name in outputs} for i in range(len(values))]}
        return {"outputs": result[outputs[0]] if len(outputs) == 1 else result}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_server() -> Iterator[Any]:
    servers: list[FakeTfServing] = []

    def start(inputs: list[str], outputs: list[str]) -> FakeTfServing:
        servers.append(FakeTfServing(inputs, outputs))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _target(tmp_path: Path, server: FakeTfServing, **options: Any) -> TfServingTarget:
    url = f"http://127.0.0.1:{server.port}"
    spec = ServingSpec(
        target="tfserving", startup_timeout_s=10, options={"mode": "remote", "url": url, **options}
    )
    return TfServingTarget(spec, tmp_path / "run")


def _artifact(tmp_path: Path, signature: Signature, **extra: Any) -> ServedArtifact:
    return ServedArtifact(
        path=tmp_path / "savedmodel",
        framework="tensorflow",
        format="savedmodel",
        signature=signature,
        extra=extra,
    )


def _batch(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "input_ids": rng.integers(0, 50, size=(n, 4)).astype(np.int64),
        "attention_mask": (rng.random((n, 4)) > 0.3).astype(np.int64),
    }


@pytest.mark.parametrize("rest_format", ["row", "columnar"])
def test_two_named_int64_inputs_and_two_outputs_in_either_rest_format(fake_server, tmp_path, rest_format):
    server = fake_server(["attention_mask", "input_ids"], ["values", "weights"])
    batch = _batch(10)
    with _target(tmp_path, server, rest_format=rest_format, rows_per_request=4) as target:
        target.start(_artifact(tmp_path, TEXT, output_name="values"))
        got = target.predict(batch)  # 4 + 4 + 2 examples
        encoded = target.encode_requests(batch, 3)
        facts = target.describe()
    np.testing.assert_array_equal(got, _values(batch["input_ids"], batch["attention_mask"]))
    first = server.bodies[1]  # after the start's example of zeros
    if rest_format == "row":
        assert first["instances"][0] == {
            "input_ids": batch["input_ids"][0].tolist(),
            "attention_mask": batch["attention_mask"][0].tolist(),
        }
        assert encoded.output_path == "predictions"
    else:
        assert first["inputs"]["input_ids"] == batch["input_ids"][:4].tolist()
        assert encoded.output_path == "outputs.values"
    assert (encoded.encoding, encoded.rows_per_body, len(encoded.bodies)) == (
        f"json-{'instances' if rest_format == 'row' else 'columnar'}",
        3,
        4,
    )
    assert facts["protocol"]["rest_format"] == rest_format
    assert facts["output_name"] == "values"


def test_a_one_input_model_is_sent_under_the_servers_input_name(fake_server, tmp_path):
    server = fake_server(["input_1"], ["dense"])
    signature = Signature(
        inputs=(TensorSpec("pixels", (3,), "float32"),), output=OutputSpec("x", 2), task="regression"
    )
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    with _target(tmp_path, server, rest_format="columnar") as target:
        target.start(_artifact(tmp_path, signature))
        got = target.predict({"pixels": x})
        assert target.describe()["wire_inputs"] == ["input_1: float32[3]"]
    np.testing.assert_array_equal(got, np.stack([x.sum(axis=1), x.max(axis=1)], axis=1))
    assert server.bodies[-1] == {"inputs": x.tolist()}


def test_inputs_the_server_does_not_serve_are_a_user_error_naming_both(fake_server, tmp_path):
    server = fake_server(["tokens", "mask"], ["values"])
    with (
        _target(tmp_path, server) as target,
        pytest.raises(UserError, match=r"serves inputs \['mask', 'tokens'\]"),
    ):
        target.start(_artifact(tmp_path, TEXT))
