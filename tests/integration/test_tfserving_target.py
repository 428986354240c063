"""TfServingTarget against the real tensorflow_model_server serving a tiny SavedModel / TFLite file.

Skipped, with the reason and how to install the server, when the binary is not on PATH; the
`tfserving` CI job installs it from TF Serving's apt repository and runs these.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import requests

from harness.artifacts import ServedArtifact
from harness.data.tensors import OutputSpec, Signature, TensorSpec
from harness.errors import RunError
from harness.models.digits import load_digits_split
from harness.scenario.schema import ServingSpec
from harness.serving.tfserving import TfServingTarget

UNAVAILABLE = TfServingTarget.unavailable_reason(ServingSpec(target="tfserving"))

pytestmark = [
    pytest.mark.tfserving,
    pytest.mark.skipif(UNAVAILABLE is not None, reason=str(UNAVAILABLE)),
]


def _spec(**kwargs) -> ServingSpec:
    return ServingSpec(target="tfserving", startup_timeout_s=120, **kwargs)


SIGNATURE = Signature(
    inputs=(TensorSpec("inputs", (64,), "float32"),), output=OutputSpec("logits", 10), task="classification"
)


def _artifact(path: Path, fmt: str) -> ServedArtifact:
    extra = {"input_dtype": "float32"} if fmt == "tflite" else {}
    return ServedArtifact(path=path, framework="tensorflow", format=fmt, signature=SIGNATURE, extra=extra)


def _same(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got.argmax(axis=1), expected.argmax(axis=1))


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    """A 64 -> 10 dense model with well separated scores, saved with the contract's signature:
    serving_default, float32 input "inputs" [None, 64] -> output "scores" [None, 10]."""
    from harness.compression.tensorflow.tf_import import import_tf

    tf, keras = import_tf()
    rng = np.random.default_rng(1234)
    model = keras.Sequential([keras.layers.Input((64,)), keras.layers.Dense(10)])
    model.layers[0].set_weights(
        [rng.normal(scale=3.0, size=(64, 10)).astype(np.float32), np.zeros(10, np.float32)]
    )

    @tf.function(input_signature=[tf.TensorSpec([None, 64], tf.float32, name="inputs")])
    def serve(inputs):
        return {"scores": model(inputs, training=False)}

    path = tmp_path_factory.mktemp("tfs-model") / "savedmodel"
    tf.saved_model.save(model, str(path), signatures={"serving_default": serve})
    return path


@pytest.fixture(scope="module")
def in_process_outputs(saved_model) -> np.ndarray:
    """Scores of the digits test set from the same SavedModel run in this process."""
    from harness.compression.tensorflow.tf_import import import_tf

    tf, _ = import_tf()
    signature = tf.saved_model.load(str(saved_model)).signatures["serving_default"]
    return signature(inputs=tf.constant(load_digits_split(0).x_test))["scores"].numpy()


@pytest.fixture(scope="module")
def served(saved_model, tmp_path_factory):
    """One REST server shared by the tests that only talk to it."""
    with TfServingTarget(_spec(), tmp_path_factory.mktemp("tfs-run")) as target:
        target.start(_artifact(saved_model, "savedmodel"))
        yield target


def _port_closed(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_rest_outputs_equal_in_process_outputs_of_the_same_savedmodel(served, in_process_outputs):
    data = load_digits_split(0)
    _same(served.predict(data.test.inputs), in_process_outputs)  # 450 rows -> requests of at most 64


def test_columnar_rest_and_its_load_bodies_give_the_same_outputs(saved_model, in_process_outputs, tmp_path):
    data = load_digits_split(0)
    with TfServingTarget(_spec(options={"rest_format": "columnar"}), tmp_path / "run") as target:
        target.start(_artifact(saved_model, "savedmodel"))
        _same(target.predict(data.test.inputs), in_process_outputs)
        encoded = target.encode_requests(data.test.inputs, 5)
        endpoint = target.endpoint
        resp = requests.post(endpoint.base_url + endpoint.path, data=encoded.bodies[0], timeout=10)
    assert encoded.output_path == "outputs"
    assert '"inputs"' in encoded.bodies[0].decode()
    _same(np.asarray(resp.json()["outputs"], dtype=np.float32), in_process_outputs[:5])


def test_the_load_endpoint_is_the_rest_predict_api_with_instances_in_and_predictions_out(served):
    endpoint = served.endpoint
    assert endpoint is not None
    assert endpoint.path == "/v1/models/model:predict"
    body = requests.post(
        f"{endpoint.base_url}{endpoint.path}", json={"instances": [[0.0] * 64] * 3}, timeout=10
    )
    predictions = body.json()["predictions"]
    assert len(predictions) == 3
    assert all(len(row) == 10 for row in predictions)


def test_the_status_api_reports_version_1_available_and_the_signature_is_read(served):
    status = requests.get(f"{served.endpoint.base_url}/v1/models/model", timeout=5).json()
    assert [(v["version"], v["state"]) for v in status["model_version_status"]] == [("1", "AVAILABLE")]
    assert served.signature == {"inputs": ["inputs"], "outputs": ["scores"]}


def test_the_prometheus_endpoint_answers_with_tf_serving_metrics(served):
    served.predict(np.zeros((2, 64), np.float32))
    url = served.server_metrics_url
    assert url is not None
    assert url.endswith("/monitoring/prometheus/metrics")
    assert served.server_metrics_format == "tfserving"
    resp = requests.get(url, timeout=5)
    assert resp.status_code == 200
    assert ":tensorflow:" in resp.text
    assert served.prometheus_answered is True


def test_describe_reports_the_server_version_ports_and_layout(served):
    facts = served.describe()
    assert facts["mode"] == "binary"
    assert facts["versions"].get("model_server")
    assert facts["ports"]["rest"] == served.server.rest_port
    assert facts["model_layout"].endswith("/model/1/SavedModel")
    assert facts["startup_s"] > 0
    assert psutil.pid_exists(served.server_pid)


def test_grpc_outputs_equal_in_process_outputs_and_teardown_leaves_nothing(
    saved_model, in_process_outputs, tmp_path
):
    data = load_digits_split(0)
    with TfServingTarget(_spec(options={"protocol": "grpc"}), tmp_path / "run") as target:
        target.start(_artifact(saved_model, "savedmodel"))
        pid, rest_port = target.server_pid, target.describe()["ports"]["rest"]
        outputs = target.predict(data.test.inputs)
        socket_path = Path(target.describe()["ports"]["grpc_socket"])
        assert socket_path.exists()
    _same(outputs, in_process_outputs)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert _port_closed(rest_port)
    assert target.describe()["teardown_s"] is not None


def test_batching_serves_the_same_outputs_with_requests_no_larger_than_the_batch(
    saved_model, in_process_outputs, tmp_path
):
    spec = _spec(workers=1, batch_size=4, max_batch_delay_ms=2)
    with TfServingTarget(spec, tmp_path / "run") as target:
        target.start(_artifact(saved_model, "savedmodel"))
        outputs = target.predict(load_digits_split(0).test.inputs)
        facts = target.describe()
    _same(outputs, in_process_outputs)
    assert facts["batching"]["enabled"] is True
    text = (tmp_path / "run" / "tfserving" / "config" / "batching.config").read_text()
    assert "max_batch_size { value: 4 }" in text


def test_a_float_tflite_file_is_served_with_prefer_tflite_model(saved_model, in_process_outputs, tmp_path):
    from harness.compression.tensorflow.tf_import import import_tf

    tf, _ = import_tf()
    tflite = tmp_path / "model.tflite"
    tflite.write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(saved_model)).convert())
    with TfServingTarget(_spec(), tmp_path / "run") as target:
        target.start(_artifact(tflite, "tflite"))
        outputs = target.predict(load_digits_split(0).test.inputs)
        assert "model.tflite" in target.describe()["model_layout"]
    _same(outputs, in_process_outputs)


def test_a_broken_savedmodel_fails_fast_with_the_servers_load_error(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a protobuf")
    target = TfServingTarget(_spec(), tmp_path / "run")
    began = time.monotonic()
    with pytest.raises(RunError, match="could not load model 'model'"):
        target.start(_artifact(broken, "savedmodel"))
    # --max_num_load_retries=0: the default would retry 5 times a minute apart
    assert time.monotonic() - began < 60
    assert target.endpoint is None
    assert target.describe()["startup_s"] is None
