"""Load-generator cost of a 224x224x3 float32 request: JSON against binary (.npy), through Locust.

Usage: .venv/bin/python benchmarks/payload_encoding.py [--servers torchserve,trivial]
       [--users 4] [--measure-s 10]

For each server and encoding, the harness's LocustDriver runs a closed loop (one request = one
image) with bodies encoded once beforehand (`Target.encode_requests`), and the script prints:
body bytes, requests/s, the Locust process's CPU (% of one core over the measured windows) and
per request (us), and the server's CPU. The client does not saturate first when its CPU stays
well below one core while the server's is at the machine's cores (torchserve) or, for the
trivial server, when the client's own CPU per request would allow far more requests/s than
the server's path answered.

Servers: `torchserve` is a real TorchServe (the harness target, our handler) serving a tiny
torch.export model that takes a (224, 224, 3) image (mean over pixels, then a linear layer), so
the handler's decoding is most of the server's work; `trivial` (trivial_server.py) is an asyncio
server in its own process that reads the body and answers one row at once, which isolates the
client's cost. Encoding each body once is timed too: that cost is paid before the load, never
per request. Both share this machine's cores with Locust: the figures are for this machine, not a
dedicated client.

Two runs on the 2-core development VM (other work running, load average about 3), 4 users, 10 s:
  torchserve json    2.3-5.5 req/s, server 200-225 ms CPU a request, Locust 2.3-2.7 ms (1% of a core)
  torchserve binary  92-136 req/s,  server 9-12 ms CPU a request,    Locust 0.8-0.9 ms (8-11%)
  trivial json       ~160 req/s,                                     Locust 1.5-1.8 ms (25-29%)
  trivial binary     3000-3300 req/s,                                Locust 0.3 ms (its core is full:
                     the trivial server answers in 0.2 ms, so this is the client's own ceiling,
                     and the saturation warning it prints is expected)
Against TorchServe the client stays far from saturation in both encodings; the server pays for
JSON (Java frontend and Python worker parsing 3 MB of text), 20x the CPU of the .npy body.
Encoding one body costs ~150-290 ms as JSON and 0.3 ms as .npy, once, before the load.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from trivial_server import trivial_server

from harness.artifacts import ServedArtifact
from harness.data.tensors import OutputSpec, Signature, TensorSpec
from harness.load.locust_driver import LocustDriver
from harness.load.plan import MeasureHooks
from harness.metrics.host import ProcessTreeSampler
from harness.scenario.load_spec import LoadSpec
from harness.scenario.schema import ServingSpec
from harness.serving.base import EncodedRequests, HttpEndpoint
from harness.serving.payloads import encode_requests, make_encoder
from harness.serving.torchserve import TorchServeTarget
from harness.signals import interrupts_unwind

SHAPE = (224, 224, 3)
CLASSES = 10
SIGNATURE = Signature(
    inputs=(TensorSpec("image", SHAPE, "float32"),),
    output=OutputSpec("logits", CLASSES),
    task="classification",
)
EXAMPLES = 8  # distinct images: the load cycles through their bodies
RESPONSE = json.dumps({"predictions": [[0.0] * CLASSES]}).encode()


def _tiny_image_model(path: Path) -> ServedArtifact:
    import torch

    class MeanThenLinear(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = torch.nn.Linear(SHAPE[-1], CLASSES)

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return self.head(image.mean(dim=(1, 2)))

    torch.manual_seed(0)
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(
        MeanThenLinear().eval(), (torch.zeros(2, *SHAPE),), dynamic_shapes=({0: batch},)
    )
    torch.export.save(program, path)
    return ServedArtifact(path=path, framework="torch", format="torch.export", signature=SIGNATURE)


def _requests(batch: dict[str, np.ndarray]) -> dict[str, tuple[EncodedRequests, float]]:
    """Per encoding, the bodies and the milliseconds it took to encode one (paid once, before load)."""
    out = {}
    for encoding in ("json", "binary"):
        encoder = make_encoder(SIGNATURE.inputs, encoding)
        began = time.perf_counter()
        encoded = encode_requests(encoder, batch, 1, output_path="predictions", output_width=CLASSES)
        out[encoding] = (encoded, (time.perf_counter() - began) * 1000.0 / len(encoded.bodies))
    return out


def _measure(
    endpoint: HttpEndpoint, encoded: EncodedRequests, server_pid: int, run_dir: Path, args: argparse.Namespace
) -> dict[str, Any]:
    load = LoadSpec(
        users=args.users, warmup_s=args.warmup_s, measure_s=args.measure_s, timeout_s=30.0,
        spawn_rate=100.0, request_batch_size=1, validity={"max_spread": 10.0},
    )  # fmt: skip
    sampler = ProcessTreeSampler(server_pid, interval_s=0.25)

    def begin() -> None:
        sampler.start()

    hooks = MeasureHooks(start=begin, end=sampler.stop)
    try:
        result = LocustDriver().run(endpoint, load, encoded, run_dir, hooks=hooks)
    finally:
        sampler.stop()
    cpu = result.client_cpu_percent or 0.0
    rps = result.throughput_rps
    client_us = cpu / 100.0 / rps * 1e6 if rps else float("nan")
    server_cpu = sampler.summary().get("server_cpu_percent") or float("nan")
    return {
        "rps": rps,
        "client_cpu_percent": cpu,
        "client_us_per_request": client_us,
        "client_bound_rps": 1e6 / client_us if client_us else float("nan"),
        "server_cpu_percent": server_cpu,
        "server_ms_per_request": server_cpu / 100.0 / rps * 1e3 if rps else float("nan"),
        "p50_ms": float(np.percentile(result.latencies_ms, 50)) if result.latencies_ms else float("nan"),
        "failures": result.failure_count,
        "warnings": [w for w in result.warnings if "saturated" in w],
    }


COLUMNS = (
    ("server", 10, "{}"),
    ("body", 6, "{}"),
    ("body bytes", 11, "{:,.0f}"),
    ("encode ms", 9, "{:.1f}"),
    ("req/s", 8, "{:.1f}"),
    ("p50 ms", 8, "{:.1f}"),
    ("client %", 8, "{:.1f}"),
    ("client us", 9, "{:.0f}"),
    ("client cap", 10, "{:.0f}"),
    ("server %", 8, "{:.0f}"),
    ("server ms", 9, "{:.1f}"),
    ("fail", 5, "{}"),
)


def _print_row(
    server: str, encoding: str, encoded: EncodedRequests, encode_ms: float, m: dict[str, Any]
) -> None:
    values = (
        server, encoding, encoded.describe()["body_bytes_mean"], encode_ms, m["rps"], m["p50_ms"],
        m["client_cpu_percent"], m["client_us_per_request"], m["client_bound_rps"], m["server_cpu_percent"],
        m["server_ms_per_request"], m["failures"],
    )  # fmt: skip
    print(" ".join(fmt.format(v).rjust(width) for (_, width, fmt), v in zip(COLUMNS, values, strict=True)))
    sys.stdout.flush()
    for warning in m["warnings"]:
        print(f"{'':>10} warning: {warning}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--servers", default="torchserve,trivial", help="comma-separated: torchserve, trivial"
    )
    parser.add_argument("--users", type=int, default=4, help="Locust users (closed loop)")
    parser.add_argument("--warmup-s", type=float, default=3.0)
    parser.add_argument("--measure-s", type=float, default=10.0)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    batch = {"image": rng.random((EXAMPLES, *SHAPE), dtype=np.float32)}
    encoded = _requests(batch)
    print(" ".join(name.rjust(width) for name, width, _ in COLUMNS))
    with tempfile.TemporaryDirectory(prefix="harness-payload-encoding-") as tmp:
        for server in args.servers.split(","):
            if server == "torchserve":
                spec = ServingSpec(target="torchserve", workers=1, batch_size=1, startup_timeout_s=180)
                with TorchServeTarget(spec, Path(tmp) / "ts") as target:
                    target.start(_tiny_image_model(Path(tmp) / "image.pt2"))
                    assert target.endpoint is not None
                    assert target.server_pid is not None
                    # the target's own bodies (binary: auto picks it for 150,528 numbers an example)
                    assert target.encode_requests(batch, 1).bodies == encoded["binary"][0].bodies
                    for encoding, (requests, encode_ms) in encoded.items():
                        run_dir = Path(tmp) / f"ts-{encoding}"
                        m = _measure(target.endpoint, requests, target.server_pid, run_dir, args)
                        _print_row(server, encoding, requests, encode_ms, m)
            elif server == "trivial":
                with trivial_server(Path(tmp), RESPONSE) as trivial:
                    for encoding, (requests, encode_ms) in encoded.items():
                        run_dir = Path(tmp) / f"trivial-{encoding}"
                        m = _measure(trivial.endpoint, requests, trivial.pid, run_dir, args)
                        _print_row(server, encoding, requests, encode_ms, m)
            else:
                parser.error(f"unknown server {server!r}; expected torchserve or trivial")
    print(
        "client %: the Locust process's CPU over the measured windows (% of one core); client us: that "
        "per request; client cap: the req/s that CPU would allow; server %: the server's process tree "
        "(% of one core; it shares this machine's cores with Locust); server ms: its CPU per request."
    )
    return 0


if __name__ == "__main__":
    with interrupts_unwind():  # SIGTERM stops the servers and Locust like Ctrl-C
        raise SystemExit(main())
