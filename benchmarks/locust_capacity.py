"""Highest open-loop rate Locust sustains here with under 1% late sends (one process, then workers).

Usage: .venv/bin/python benchmarks/locust_capacity.py [--workers 0,2] [--rates 250,500,...]
Drives a minimal asyncio HTTP server (trivial_server.py: its own process, answers every POST at
once) with the harness's LocustDriver in open loop (Poisson arrivals) at rising rates and prints,
per rate, the achieved rate, the late fraction (sent more than validity.late_ms after the due time
by the generator itself), the median latency and each load process's CPU. The machine's cores are
shared by the server and the generator, so the figures are a floor for a dedicated client.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from trivial_server import trivial_server

from harness.load.locust_driver import LocustDriver
from harness.scenario.load_spec import LoadSpec
from harness.serving.base import EncodedRequests
from harness.signals import interrupts_unwind

RESPONSE = b'{"predictions": [0]}'
DEFAULT_RATES = "250,500,1000,1500,2000,2500,3000"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="0,2", help="comma-separated Locust worker counts")
    parser.add_argument("--rates", default=DEFAULT_RATES, help="comma-separated target rates (req/s)")
    parser.add_argument("--measure-s", type=float, default=4.0)
    args = parser.parse_args()

    # the server answers any body; one small JSON body, sent over and over, like the harness's own
    requests = EncodedRequests(
        content_type="application/json",
        bodies=(b'{"instances": [[0]]}',),
        rows_per_body=1,
        encoding="json-instances",
        output_path=None,  # the trivial server's answer is not checked row by row
    )
    with (
        tempfile.TemporaryDirectory(prefix="harness-locust-capacity-") as tmp,
        trivial_server(Path(tmp), RESPONSE) as server,
    ):
        print(f"{'workers':>7} {'target':>7} {'achieved':>8} {'late %':>7} {'p50 ms':>7}  CPU % per process")
        for workers in (int(w) for w in args.workers.split(",")):
            for rate in (float(r) for r in args.rates.split(",")):
                load = LoadSpec(
                    mode="open", rate_rps=rate, users=64, arrival="poisson", workers=workers,
                    warmup_s=2.0, measure_s=args.measure_s, spawn_rate=100.0, timeout_s=5.0,
                )  # fmt: skip
                run_dir = Path(tmp) / f"w{workers}-r{rate:g}"
                result = LocustDriver().run(server.endpoint, load, requests, run_dir)
                p50 = float(np.percentile(result.latencies_ms, 50)) if result.latencies_ms else float("nan")
                cpu = " ".join(f"{c:.0f}" for c in result.generator_cpu_percent)
                print(
                    f"{workers:>7} {rate:>7g} {result.offered_rps:>8.0f} "
                    f"{100 * result.late_fraction:>7.2f} {p50:>7.2f}  {cpu}",
                    flush=True,
                )
                if result.late_fraction > 0.05:
                    break  # well past what it sustains
    return 0


if __name__ == "__main__":
    with interrupts_unwind():  # SIGTERM stops the server and Locust like Ctrl-C
        raise SystemExit(main())
