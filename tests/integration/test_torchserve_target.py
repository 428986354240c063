"""TorchServeTarget against a real TorchServe (Java 17) serving a tiny exported torch model."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import psutil
import pytest
import requests
import torch

from harness.artifacts import ServedArtifact
from harness.data.tensors import OutputSpec, Signature, TensorSpec
from harness.errors import RunError
from harness.load.native_driver import NativeDriver
from harness.scenario.load_spec import LoadSpec
from harness.scenario.schema import ServingSpec
from harness.serving.listeners import listening_sockets
from harness.serving.torchserve import TorchServeTarget
from tests.conftest import ROOT
from tests.integration.torchserve_helpers import TORCHSERVE_MARKS, torchserve_serving

pytestmark = TORCHSERVE_MARKS

SIGNATURE = Signature(
    inputs=(TensorSpec("inputs", (64,), "float32"),), output=OutputSpec("logits", 10), task="classification"
)


def _tiny_model() -> torch.nn.Module:
    gen = torch.Generator().manual_seed(1234)
    model = torch.nn.Sequential(torch.nn.Linear(64, 10))
    with torch.no_grad():
        model[0].weight.copy_(torch.randn(10, 64, generator=gen))
        model[0].bias.copy_(torch.randn(10, generator=gen))
    return model.eval()


def _expected_outputs(model: torch.nn.Module, rows: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(rows)).numpy()


def _assert_same_outputs(got: np.ndarray, expected: np.ndarray) -> None:
    # the same program in TorchServe's worker: equal up to float32 summation order
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got.argmax(axis=1), expected.argmax(axis=1))


def _export_pt2(model: torch.nn.Module, path: Path) -> ServedArtifact:
    batch = torch.export.Dim("batch")
    program = torch.export.export(model, (torch.randn(4, 64),), dynamic_shapes={"input": {0: batch}})
    torch.export.save(program, path)
    return ServedArtifact(path=path, framework="torch", format="torch.export", signature=SIGNATURE)


def _rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 64)).astype(np.float32)


def _server_processes(target: TorchServeTarget) -> list[psutil.Process]:
    leader = psutil.Process(target._process.pid)
    return [leader, *leader.children(recursive=True)]


def _alive(procs: list[psutil.Process]) -> list[str]:
    alive = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{proc.pid} {proc.name()}")
        except psutil.NoSuchProcess:
            pass
    return alive


def _java_mentioning(text: str) -> list[str]:
    found = []
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if text in cmdline and proc.info["pid"] != os.getpid():
            found.append(f"{proc.info['pid']} {proc.info['name']}: {cmdline[:160]}")
    return found


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return _tiny_model()


@pytest.fixture(scope="module")
def served(model, tmp_path_factory):
    """One server shared by the tests that only talk to it: batching on, generous delay."""
    base = tmp_path_factory.mktemp("ts-shared")
    artifact = _export_pt2(model, base / "model.pt2")
    # INFO: a test below reads the handler's per-batch lines from model_log.log
    with torchserve_serving(
        artifact, base / "run", workers=1, batch_size=8, max_batch_delay_ms=100, log_level="INFO"
    ) as target:
        yield target


def test_outputs_through_server_match_in_process_and_nothing_survives_teardown(model, tmp_path):
    artifact = _export_pt2(model, tmp_path / "model.pt2")
    rows = _rows(100, seed=7)
    with torchserve_serving(
        artifact, tmp_path / "run", workers=1, batch_size=4, max_batch_delay_ms=5
    ) as target:
        procs = _server_processes(target)
        assert any(p.name().startswith("java") for p in procs), "java runs inside our process group"
        got = target.predict({"inputs": rows})  # 100 rows -> two requests of at most 64
        assert target.describe()["request_encoding"] == "json-instances"  # 64 numbers: auto picks JSON
        assert target.startup_s is not None
    assert got.shape == (100, 10)
    _assert_same_outputs(got, _expected_outputs(model, rows))
    assert _alive(procs) == []
    assert _java_mentioning(str(tmp_path)) == []
    assert (tmp_path / "run" / "torchserve" / "logs" / "ts_log.log").is_file()


def test_the_native_engine_loads_torchserve_and_every_answer_holds_its_rows(served, tmp_path):
    requests = served.encode_requests({"inputs": _rows(16, seed=3)}, 2)
    load = LoadSpec(users=8, warmup_s=0.5, measure_s=1.5, request_batch_size=2, generator="native")
    result = NativeDriver().run(served.endpoint, load, requests, tmp_path)

    assert result.generator == "native"
    # the engine checks every answer's rows at the output path: a wrong count would be bad_payload
    assert result.failure_count == 0, result.failure_examples
    assert result.ok_count >= 8
    assert result.client_cpu_percent is not None
    assert not list(tmp_path.glob("native_requests-*.bin")), "the prepared requests go with the run"


def test_batching_settings_reach_the_server(served):
    mgmt = served.describe()["management_url"]
    (model,) = requests.get(f"{mgmt}/models/model", timeout=5).json()
    assert model["batchSize"] == 8
    assert model["maxBatchDelay"] == 100
    assert model["minWorkers"] == model["maxWorkers"] == 1
    assert [w["status"] for w in model["workers"]] == ["READY"]
    assert served.describe()["server_reported"]["batchSize"] == 8


def test_every_listener_is_on_loopback_and_token_auth_is_off(served):
    facts = served.describe()
    assert facts["token_auth"] == "disabled (bound to 127.0.0.1)"
    assert facts["torchserve_version"] == "0.12.0"
    listening = {
        (c.laddr.ip, c.laddr.port)
        for p in _server_processes(served)
        for c in p.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN
    }
    assert {port for _, port in listening} == set(facts["ports"].values())
    assert {ip.removeprefix("::ffff:") for ip, _ in listening} == {"127.0.0.1"}
    # no Authorization header, and still answered: token authorization is disabled
    assert requests.get(f"{facts['management_url']}/models", timeout=5).status_code == 200
    assert served.endpoint.base_url == facts["inference_url"]
    assert served.endpoint.path == "/predictions/model"


def test_concurrent_requests_are_batched_and_each_gets_its_own_rows_back(served, model):
    url = served.endpoint.base_url + served.endpoint.path
    chunks = [_rows(n, seed=100 + n) for n in (1, 3, 5, 2, 7, 4)]
    answers: dict[int, requests.Response] = {}

    def post(i: int) -> None:
        answers[i] = requests.post(url, json={"instances": chunks[i].tolist()}, timeout=30)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(chunks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, chunk in enumerate(chunks):
        assert answers[i].status_code == 200, answers[i].text
        got = np.asarray(answers[i].json()["predictions"], dtype=np.float32)
        _assert_same_outputs(got, _expected_outputs(model, chunk))
    # our handler logs the size of every server-side batch it is handed
    model_log = Path(served.describe()["logs"]["model_log"]).read_text()
    sizes = [int(n) for n in re.findall(r"harness batch: (\d+) requests", model_log)]
    assert max(sizes) > 1, f"no server-side batch formed: {sizes}"


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"x": 1}',
        b'{"instances": []}',
        b'{"instances": [[1, 2, 3]]}',
        b'{"instances": [["a"]]}',
        b"\x93NUMPY garbage",
    ],
)
def test_malformed_request_gets_400_and_the_worker_keeps_serving(served, body, model):
    url = served.endpoint.base_url + served.endpoint.path
    resp = requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=30)
    assert resp.status_code == 400
    assert "error" in resp.json()
    rows = _rows(3, seed=1)
    _assert_same_outputs(served.predict(rows), _expected_outputs(model, rows))


def test_malformed_request_in_a_server_batch_does_not_fail_its_neighbours(served, model):
    url = served.endpoint.base_url + served.endpoint.path
    good = _rows(2, seed=3)
    bodies = [json.dumps({"instances": good.tolist()}).encode(), b'{"instances": "nope"}'] * 3
    answers: dict[int, requests.Response] = {}

    def post(i: int) -> None:
        answers[i] = requests.post(
            url, data=bodies[i], headers={"Content-Type": "application/json"}, timeout=30
        )

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(len(bodies)):
        if i % 2 == 0:
            assert answers[i].status_code == 200, answers[i].text
            got = np.asarray(answers[i].json()["predictions"], dtype=np.float32)
            _assert_same_outputs(got, _expected_outputs(model, good))
        else:
            assert answers[i].status_code == 400


def test_corrupt_pt2_fails_start_with_log_text_and_leaves_no_process(tmp_path):
    broken = tmp_path / "broken.pt2"
    broken.write_bytes(b"this is not a torch.export archive")
    artifact = ServedArtifact(path=broken, framework="torch", format="torch.export", signature=SIGNATURE)
    spec = ServingSpec(target="torchserve", startup_timeout_s=120)
    target = TorchServeTarget(spec, tmp_path / "run")
    with pytest.raises(RunError) as info:
        target.start(artifact)
    message = str(info.value)
    assert "torchserve" in message
    assert "\n" not in message, "one line; the log tail is kept for the report"
    assert "Traceback" in f"{message}\n{info.value.log_tail}" or "exited" in message
    assert info.value.log.endswith("torchserve-console.log")
    assert _java_mentioning(str(tmp_path)) == []
    target.stop()  # still safe after a failed start


def test_start_retries_once_with_fresh_ports_when_a_picked_port_was_taken(model, tmp_path, monkeypatch):
    import harness.serving.torchserve as torchserve_module
    from harness.processes import free_port

    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        first = iter([taken])
        monkeypatch.setattr(torchserve_module, "free_port", lambda: next(first, None) or free_port())
        artifact = _export_pt2(model, tmp_path / "model.pt2")
        with TorchServeTarget(ServingSpec(target="torchserve"), tmp_path / "run") as target:
            target.start(artifact)
            assert taken not in target.ports.as_dict().values()
            assert target.predict(_rows(1, seed=0)).shape == (1, 10)
    logs = tmp_path / "run" / "torchserve" / "logs"
    assert "Address already in use" in (logs / "torchserve-console.1.log").read_text()
    assert _java_mentioning(str(tmp_path)) == []


# TorchScript is deprecated in torch 2.13 but still a supported artifact format; we only build one here
@pytest.mark.filterwarnings("ignore:`torch.jit.(trace|trace_method|save)` is deprecated:DeprecationWarning")
def test_torchscript_artifact_is_served_too(model, tmp_path):
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.trace(model, torch.randn(2, 64)), str(path))
    artifact = ServedArtifact(path=path, framework="torch", format="torchscript", signature=SIGNATURE)
    rows = _rows(20, seed=11)
    with torchserve_serving(artifact, tmp_path / "run") as target:
        _assert_same_outputs(target.predict(rows), _expected_outputs(model, rows))
    assert _java_mentioning(str(tmp_path)) == []


def test_torchao_quantized_program_is_served_like_the_same_file_in_process(tmp_path):
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    model.load_state_dict(
        {
            k: torch.randn(v.shape, generator=torch.Generator().manual_seed(5))
            for k, v in model.state_dict().items()
        }
    )
    quantize_(model.eval(), Int8DynamicActivationInt8WeightConfig())
    artifact = _export_pt2(model, tmp_path / "int8.pt2")
    rows = _rows(100, seed=13)
    with torch.no_grad():
        in_process = torch.export.load(artifact.path).module()(torch.from_numpy(rows)).numpy()
    with torchserve_serving(artifact, tmp_path / "run") as target:
        _assert_same_outputs(target.predict(rows), in_process)
    assert _java_mentioning(str(tmp_path)) == []


def test_handler_splits_a_batch_of_requests_back_in_order(model, tmp_path):
    from harness.serving import torchserve_handler

    _export_pt2(model, tmp_path / "model.pt2")
    (tmp_path / "harness_model.json").write_text(
        json.dumps({"format": "torch.export", "signature": SIGNATURE.as_dict(), "torch_threads": 1})
    )
    statuses: dict[int, int] = {}
    context = SimpleNamespace(
        system_properties={"model_dir": str(tmp_path)},
        manifest={"model": {"serializedFile": "model.pt2"}},
        set_response_status=lambda code, phrase, idx: statuses.__setitem__(idx, code),
    )
    handler = torchserve_handler.TensorHandler()
    handler.initialize(context)
    a, b, c = _rows(3, seed=21), _rows(2, seed=22), _rows(4, seed=23)
    npy = io.BytesIO()
    np.save(npy, c)
    data = [
        {"body": {"instances": a.tolist()}},
        {"body": b"{broken"},
        {"body": json.dumps({"instances": b.tolist()}).encode()},
        {"body": bytearray(npy.getvalue())},  # a binary request in the same server-side batch
    ]
    out = handler.handle(data, context)
    for answer, rows in ((out[0], a), (out[2], b), (out[3], c)):
        _assert_same_outputs(
            np.asarray(answer["predictions"], dtype=np.float32), _expected_outputs(model, rows)
        )
    assert "not JSON" in out[1]["error"]
    assert statuses == {1: 400}


def test_a_normal_start_passes_the_listener_check_with_only_its_five_loopback_ports(served):
    sockets = listening_sockets(served.server_pid)
    assert {s.port for s in sockets} == set(served.ports.as_dict().values())
    served._check_listeners()  # what start() ran; raises RunError on any other address or port


def _post_many(target: TorchServeTarget, n: int) -> None:
    url = target.endpoint.base_url + target.endpoint.path
    body = json.dumps({"instances": _rows(1, seed=0).tolist()})
    with requests.Session() as http:
        for _ in range(n):
            assert http.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=30).ok


def test_logs_stay_small_at_the_default_warn_level_and_log_bytes_counts_them(model, tmp_path):
    artifact = _export_pt2(model, tmp_path / "model.pt2")
    with torchserve_serving(artifact, tmp_path / "run") as target:
        assert target.spec.log_level == "WARN"
        before = target.log_bytes()
        _post_many(target, 300)
    grown = target.describe()["log_bytes"] - before
    logs = tmp_path / "run" / "torchserve" / "logs"
    access = logs / "access_log.log"
    assert not access.exists() or access.stat().st_size == 0, "an access-log line per request at WARN"
    assert "harness batch" not in (logs / "model_log.log").read_text(errors="replace")
    assert grown < 300 * 20, f"{grown} bytes of logs for 300 requests at WARN"
    assert target.describe()["log_bytes"] > 0  # the console log at least


# The harness side of an orphaning: starts a real TorchServe, prints the pids of its tree, then
# waits to be SIGKILLed, so that none of its teardown runs.
ORPHANING_HARNESS = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import psutil
    from harness.artifacts import ServedArtifact
    from harness.data.tensors import OutputSpec, Signature, TensorSpec
    from harness.scenario.schema import ServingSpec
    from harness.serving.torchserve import TorchServeTarget
    signature = Signature(inputs=(TensorSpec("inputs", (64,), "float32"),), output=OutputSpec("logits", 10),
                          task="classification")
    artifact = ServedArtifact(path=Path(sys.argv[1]), framework="torch", format="torch.export",
                              signature=signature)
    target = TorchServeTarget(ServingSpec(target="torchserve", workers=2), Path(sys.argv[2]))
    target.start(artifact)
    root = psutil.Process(target.server_pid)
    print(" ".join(str(p.pid) for p in [root, *root.children(recursive=True)]), flush=True)
    time.sleep(600)
    """
)


def test_a_sigkilled_harness_leaves_no_torchserve_process_behind(model, tmp_path):
    artifact = _export_pt2(model, tmp_path / "model.pt2")
    harness = subprocess.Popen(
        [sys.executable, "-c", ORPHANING_HARNESS, str(artifact.path), str(tmp_path / "run")],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        tree = [psutil.Process(int(pid)) for pid in harness.stdout.readline().split()]
        assert len(tree) >= 4, "launcher, java and two workers"
        assert any(p.name().startswith("java") for p in tree)
    finally:
        harness.send_signal(signal.SIGKILL)
        harness.wait()
        harness.stdout.close()
    deadline = time.monotonic() + 10
    while _alive(tree) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _alive(tree) == [], "TorchServe outlived the SIGKILLed harness"
    assert _java_mentioning(str(tmp_path)) == []
