"""Server-side metrics and process-tree sampling against a real TorchServe serving the built-in MLP."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import psutil
import pytest
import requests
import torch

from harness.compression.torch.export import export_module
from harness.data.tensors import OutputSpec, Signature, TensorSpec
from harness.metrics.host import ProcessTreeSampler
from harness.metrics.server_metrics import ServerMetricsWindow, latency_breakdown, scrape
from harness.models.torch_mlp import build_mlp
from harness.serving.torchserve import TorchServeTarget
from tests.integration.torchserve_helpers import TORCHSERVE_MARKS, torchserve_serving

pytestmark = TORCHSERVE_MARKS

REQUESTS = 200


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("ts-metrics")
    torch.manual_seed(0)
    signature = Signature(
        inputs=(TensorSpec("inputs", (64,), "float32"),),
        output=OutputSpec("logits", 10),
        task="classification",
    )
    artifact, _ = export_module(build_mlp().eval(), base / "export", signature)
    with torchserve_serving(artifact, base / "run", workers=1, batch_size=1, max_batch_delay_ms=0) as target:
        yield target


def _drive(target: TorchServeTarget, n: int) -> list[float]:
    """n sequential predictions of one row each; the client-side latencies in ms."""
    url = target.endpoint.base_url + target.endpoint.path
    rows = np.random.default_rng(0).normal(size=(n, 64)).astype(np.float32)
    latencies = []
    with requests.Session() as http:
        http.trust_env = False
        for row in rows:
            began = time.perf_counter()
            resp = http.post(url, json={"instances": [row.tolist()]}, timeout=30)
            latencies.append((time.perf_counter() - began) * 1000)
            assert resp.status_code == 200, resp.text
    return latencies


def _workers(target: TorchServeTarget) -> list[psutil.Process]:
    root = psutil.Process(target.server_pid)
    return [
        p
        for p in root.children(recursive=True)
        if p.status() != psutil.STATUS_ZOMBIE and "model_service_worker" in " ".join(p.cmdline())
    ]


def test_target_publishes_its_metrics_address_format_and_pid(served):
    assert served.server_metrics_format == "torchserve"
    assert served.server_metrics_url == served.describe()["metrics_url"]
    assert psutil.Process(served.server_pid).is_running()
    assert "ts_inference_requests" in scrape(served.server_metrics_url)


def test_server_metrics_window_counts_the_requests_and_splits_their_time(served):
    window = ServerMetricsWindow(served.server_metrics_url, served.server_metrics_format).start()
    latencies = _drive(served, REQUESTS)
    window.stop()
    figures = window.summary(REQUESTS)
    print("server figures:", figures, "client mean ms:", np.mean(latencies))
    assert window.notes == []
    assert figures["server_requests"] == pytest.approx(REQUESTS, abs=2)
    client_mean = float(np.mean(latencies))
    # the server's time is part of the client's: positive, and smaller
    assert 0 < figures["server_inference_ms"] < figures["server_request_ms"] < client_mean
    assert 0 <= figures["server_queue_ms"] < figures["server_request_ms"]
    split = latency_breakdown(client_mean, figures)
    print(split["text"])
    assert split["outside_server_ms"] > 0
    assert split["queue_ms"] + split["inference_ms"] + split["outside_server_ms"] == pytest.approx(
        client_mean
    )


def test_process_tree_sampler_sees_the_busy_server_and_no_restart(served):
    with ProcessTreeSampler(served.server_pid, interval_s=0.1) as sampler:
        _drive(served, REQUESTS)
    summary = sampler.summary()
    print("host:", {k: v for k, v in summary.items() if not k.endswith("pids")})
    assert summary["server_cpu_percent"] > 0
    assert summary["server_rss_mb_max"] > 50  # a JVM and two Python processes with torch
    assert summary["restarted"] is False
    assert len(summary["initial_pids"]) >= 2  # java and the worker under the launcher


def test_killing_a_worker_during_sampling_is_a_restart(served):
    (worker,) = _workers(served)
    with ProcessTreeSampler(served.server_pid, interval_s=0.1) as sampler:
        time.sleep(0.3)
        os.kill(worker.pid, signal.SIGKILL)
        # TorchServe's frontend notices the dead worker and starts a new one
        deadline = time.monotonic() + 60
        while not [p for p in _workers(served) if p.pid != worker.pid]:
            assert time.monotonic() < deadline, "TorchServe did not start a new worker within 60 s"
            time.sleep(0.1)
    summary = sampler.summary()
    assert summary["restarted"] is True
    assert worker.pid in summary["exited_pids"]
    assert summary["new_pids"]
