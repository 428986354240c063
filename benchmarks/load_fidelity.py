"""Load-generator fidelity: the harness's Locust clients against bare Locust and wrk on one TorchServe.

Usage: .venv/bin/python benchmarks/load_fidelity.py [--seconds 10] [--warmup-s 2] [--rounds 3]
           [--users 1,8] [--placement both|on|off] [--clients lean,fasthttp,native,locust,wrk | none]
           [--server-warmup-s 20] [--log-levels] [--workers-scale]

One TorchServe (1 worker, log level WARN, one torch thread) serves the built-in torch MLP; it
starts unplaced and is pinned afterwards (harness.placement.pin_tree) per placement: "on" puts its
tree on the server CPUs of plan_placement("local", "auto", "auto") and the client on the rest,
"off" gives the tree every CPU and leaves the client unpinned. Each round runs every placement,
concurrency and client once, the client order rotating per round, each run `--seconds` measured
after `--warmup-s`. Clients (closed loop, same body and headers): "harness lean" and "harness
fasthttp" (LocustDriver, load.client lean / fasthttp), "harness native" (NativeDriver,
load.generator native: the C engine), "bare Locust" (a minimal FastHttpUser
locustfile, `locust --headless`) and "wrk" (`wrk -t1 -c<users> --latency`, POST from a Lua script).

Prints, per placement, concurrency and client, the median over rounds of: req/s, p50 ms, the
client's CPU per request (us; LocustDriver: its process's CPU over the measured windows; bare
Locust: getrusage inside the process over the measured part; wrk: os.wait4), TorchServe's own
inference time per request (its metrics endpoint, request minus queue time, scraped around the
measured part), and req/s and p50 as ratios to wrk's. `--log-levels` adds, per serving log level
(a TorchServe each), the server tree's CPU ms and log bytes per request under the lean client at
8 users. `--workers-scale` adds the lean client's req/s against trivial_server.py with 32 users
in one Locust process and in two workers (load.cpus any), and their ratio (issue 13: >= 1.6x).
Every figure goes to reports/load-fidelity-<time>/summary.json, rewritten after each run.
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from fidelity_clients import ClientRun, run_bare_locust, run_wrk
from trivial_server import trivial_server

from harness.artifacts import ServedArtifact
from harness.atomic import atomic_write_json
from harness.compression.pipeline import prepare_variant
from harness.errors import RunError
from harness.load.drivers import http_driver
from harness.load.locust_driver import LocustDriver
from harness.load.plan import MeasureHooks
from harness.metrics.host import ProcessTreeSampler
from harness.metrics.server_metrics import ServerMetricsWindow
from harness.models.digits import load_digits_split
from harness.placement import CpuPlacement, available_cpus, pin_tree, plan_placement
from harness.scenario.load_spec import LoadSpec
from harness.scenario.schema import ModelSpec, ServingSpec, VariantSpec
from harness.serving.base import EncodedRequests
from harness.serving.torchserve import TorchServeTarget
from harness.signals import interrupts_unwind

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = {
    "lean": "harness lean",
    "fasthttp": "harness fasthttp",
    "native": "harness native",
    "locust": "bare Locust",
    "wrk": "wrk",
}
LOG_LEVELS = ("DEBUG", "INFO", "WARN", "ERROR")
LOG_LEVEL_USERS = 8
SCALE_USERS = 32
SCALE_WORKERS = (0, 2)
TRIVIAL = EncodedRequests("application/json", (b'{"instances": [[0]]}',), 1, "json-instances", None)
FIGURES = ("rps", "p50_ms", "client_us_per_request", "server_inference_ms")


def main() -> int:
    args = _parse_args()
    out = ROOT / "reports" / f"load-fidelity-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True)
    plan = plan_placement("local", "auto", "auto")
    if "on" in args.placements and plan.server is None:
        raise SystemExit(f"--placement on needs 2 CPUs or more: {plan.how}")
    doc: dict[str, Any] = {"format_version": 1, "settings": {**vars(args)}, "placement": plan.describe()}

    def save() -> None:
        atomic_write_json(out / "summary.json", doc)

    if args.clients or args.log_levels:
        artifact, inputs = _reference_model(out)
    if args.clients:
        doc["runs"] = []
        with TorchServeTarget(_serving("WARN"), out / "torchserve") as target:
            target.start(artifact)
            requests = _one_body(target.encode_requests(inputs, 1))
            _warm_server(target, requests, None, args.server_warmup_s, out / "server-warmup")
            _clients_section(target, requests, plan, args, out, doc["runs"], save)
        doc["table"] = _table(doc["runs"], args)
        save()
        _print_table(doc["table"])
    if args.log_levels:
        doc["log_levels"] = _log_levels_section(artifact, inputs, plan, args, out, save)
    if args.workers_scale:
        doc["workers_scale"] = _workers_scale_section(args, out, save)
    save()
    print(f"raw figures: {out / 'summary.json'}")
    return 0


def _reference_model(out: Path) -> tuple[ServedArtifact, Any]:
    model = ModelSpec(framework="torch", source="builtin:mlp")
    data = load_digits_split(seed=model.seed)
    prepared = prepare_variant(model, VariantSpec(name="reference"), ROOT, out / "artifact", data)
    return prepared.artifact, data.test.inputs


def _serving(log_level: str) -> ServingSpec:
    # one torch thread: what the harness gives a 1-worker server placed on one CPU, in both placements
    return ServingSpec(
        target="torchserve", workers=1, log_level=log_level, startup_timeout_s=180,
        options={"torch_threads": 1},
    )  # fmt: skip


def _one_body(encoded: EncodedRequests) -> EncodedRequests:
    """Every client sends the same bytes: the first body only."""
    return replace(encoded, bodies=encoded.bodies[:1])


def _place(pid: int | None, placement: str, plan: CpuPlacement) -> Sequence[int] | None:
    """Pin the server's tree ('on': its planned CPUs; 'off': all); the CPUs for the client (None: any)."""
    assert pid is not None
    if placement == "on":
        assert plan.server is not None
        pin_tree(pid, plan.server)
        return plan.load
    pin_tree(pid, available_cpus())
    return None


def _closed_loop(users: int, warmup_s: float, measure_s: float, **more: Any) -> LoadSpec:
    return LoadSpec(users=users, warmup_s=warmup_s, measure_s=measure_s, spawn_rate=100.0, **more)


def _warm_server(
    target: TorchServeTarget,
    requests: EncodedRequests,
    cpus: Sequence[int] | None,
    seconds: float,
    run_dir: Path,
) -> None:
    """TorchServe is slow for its first 10-30 s (JIT, caches): load it before anything is measured."""
    if seconds > 0:
        assert target.endpoint is not None
        LocustDriver().run(target.endpoint, _closed_loop(8, 0.0, seconds), requests, run_dir, cpus=cpus)


def _rotated(items: Sequence[Any], by: int) -> list[Any]:
    return [*items[by % len(items) :], *items[: by % len(items)]]


def _clients_section(
    target: TorchServeTarget, requests: EncodedRequests, plan: CpuPlacement, args: argparse.Namespace,
    out: Path, runs: list[dict[str, Any]], save: Callable[[], None],
) -> None:  # fmt: skip
    for r in range(args.rounds):
        for placement in _rotated(args.placements, r):
            cpus = _place(target.server_pid, placement, plan)
            for users in args.users:
                for client in _rotated(args.clients, r):
                    run_dir = out / "runs" / f"r{r}-{placement}-c{users}-{client}"
                    try:
                        record = _measure(client, target, requests, users, cpus, args, run_dir)
                    except RunError as exc:
                        record = {"error": str(exc), "log": exc.log}
                    record.update(round=r, placement=placement, users=users, client=client)
                    runs.append(record)
                    save()
                    print(f"round {r + 1}/{args.rounds} placement {placement:3} c={users:<2} "
                          f"{CLIENTS[client]:16} {_progress(record)}", flush=True)  # fmt: skip


def _progress(record: dict[str, Any]) -> str:
    if "error" in record:
        return f"FAILED: {record['error']}"
    inference = record.get("server_inference_ms")
    return (
        f"{record['rps']:8.1f} req/s  p50 {record['p50_ms']:.3f} ms  client "
        f"{record['client_us_per_request']:.0f} us/req  server inference "
        + (f"{inference:.3f} ms" if inference is not None else "n/a")
        + (f"  failures {record['failures']}" if record["failures"] else "")
    )


def _measure(
    client: str, target: TorchServeTarget, requests: EncodedRequests, users: int,
    cpus: Sequence[int] | None, args: argparse.Namespace, run_dir: Path,
) -> dict[str, Any]:  # fmt: skip
    endpoint, url = target.endpoint, target.server_metrics_url
    assert endpoint is not None
    assert url is not None
    window = ServerMetricsWindow(url, "torchserve")
    hooks = MeasureHooks(start=window.start, end=window.stop)
    path = endpoint.path if endpoint.path.startswith("/") else "/" + endpoint.path
    base_url = endpoint.base_url.rstrip("/")
    headers = {**(endpoint.headers or {}), "Content-Type": requests.content_type}
    body = requests.bodies[0]
    if client in ("lean", "fasthttp", "native"):
        more = {"generator": "native"} if client == "native" else {"client": client}
        load = _closed_loop(users, args.warmup_s, args.seconds, **more)
        result = http_driver(load).run(endpoint, load, requests, run_dir, cpus=cpus, hooks=hooks)
        cpu_percent = result.generator_cpu_percent[0] if result.generator_cpu_percent else float("nan")
        count = result.request_count
        run = ClientRun(
            rps=result.throughput_rps,
            p50_ms=float(np.median(result.latencies_ms)) if result.latencies_ms else float("nan"),
            requests=count,
            measure_s=result.measure_s,
            client_us_per_request=cpu_percent / 100.0 * result.measure_s / count * 1e6 if count else math.nan,
            failures=result.failure_count,
            notes=list(result.warnings),
        )
    elif client == "locust":
        run = run_bare_locust(base_url, path, body, headers, users, args.warmup_s, args.seconds, cpus,
                              run_dir, hooks)  # fmt: skip
    else:
        run = run_wrk(base_url + path, body, headers, users, args.warmup_s, args.seconds, cpus,
                      run_dir, hooks)  # fmt: skip
    server = window.summary(run.requests)
    record = asdict(run)
    record.update(server)
    record["server_inference_ms"] = server.get("server_inference_ms")
    record["notes"] = run.notes + window.notes
    return record


def _median(values: list[Any]) -> float | None:
    present = [float(v) for v in values if v is not None and not math.isnan(v)]
    return statistics.median(present) if present else None


def _table(runs: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Per placement, users and client: medians over rounds, and req/s and p50 relative to wrk."""
    rows = []
    for placement in args.placements:
        for users in args.users:
            medians = {}
            for client in args.clients:
                key = (placement, users, client)
                group = [r for r in runs if (r["placement"], r["users"], r["client"]) == key]
                good = [r for r in group if "error" not in r]
                medians[client] = {k: _median([r.get(k) for r in good]) for k in FIGURES}
                medians[client].update(runs_ok=len(good), runs_failed=len(group) - len(good),
                                       failures=sum(r["failures"] for r in good))  # fmt: skip
            wrk = medians.get("wrk", {})
            for client, m in medians.items():
                row = {"placement": placement, "users": users, "client": CLIENTS[client], **m}
                row["rps_vs_wrk"] = _ratio(m["rps"], wrk.get("rps"))
                row["p50_vs_wrk"] = _ratio(m["p50_ms"], wrk.get("p50_ms"))
                rows.append(row)
    return rows


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


TABLE = (
    ("placement", 9, "{}"), ("users", 5, "{}"), ("client", 16, "{}"), ("req/s", 8, "{:.1f}"),
    ("p50 ms", 7, "{:.3f}"), ("client us/req", 13, "{:.0f}"), ("server inf ms", 13, "{:.3f}"),
    ("req/s vs wrk", 12, "{:.3f}"), ("p50 vs wrk", 10, "{:.3f}"), ("runs", 4, "{}"), ("fail", 4, "{}"),
)  # fmt: skip
TABLE_KEYS = ("placement", "users", "client", "rps", "p50_ms", "client_us_per_request",
              "server_inference_ms", "rps_vs_wrk", "p50_vs_wrk", "runs_ok", "failures")  # fmt: skip


def _print_row(columns: Sequence[tuple[str, int, str]], values: Sequence[Any]) -> None:
    cells = ["n/a" if v is None else fmt.format(v) for (_, _, fmt), v in zip(columns, values, strict=True)]
    print(" ".join(c.rjust(w) for c, (_, w, _) in zip(cells, columns, strict=True)), flush=True)


def _print_table(rows: list[dict[str, Any]]) -> None:
    print("\nmedians over rounds (client us/req: the client's CPU per request; server inf ms: "
          "TorchServe's inference time per request, request minus queue)")  # fmt: skip
    print(" ".join(name.rjust(width) for name, width, _ in TABLE))
    for row in rows:
        _print_row(TABLE, [row[k] for k in TABLE_KEYS])


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _log_hooks(
    target: TorchServeTarget, sampler: ProcessTreeSampler, window: ServerMetricsWindow, logged: list[int]
) -> MeasureHooks:
    def begin() -> None:
        logged.append(_folder_bytes(target.log_dir))
        window.start()
        sampler.start()

    def end() -> None:
        sampler.stop()
        window.stop()
        logged.append(_folder_bytes(target.log_dir))

    return MeasureHooks(start=begin, end=end)


def _log_levels_section(
    artifact: ServedArtifact, inputs: Any, plan: CpuPlacement, args: argparse.Namespace, out: Path,
    save: Callable[[], None],
) -> list[dict[str, Any]]:  # fmt: skip
    placement = "on" if "on" in args.placements else "off"
    print(f"\nserving log level, lean client at {LOG_LEVEL_USERS} users, placement {placement}: the server "
          "tree's CPU and the bytes its log folder grew by, per request")  # fmt: skip
    columns = (("log level", 9, "{}"), ("req/s", 8, "{:.1f}"), ("p50 ms", 7, "{:.3f}"),
               ("server CPU ms/req", 17, "{:.3f}"), ("log bytes/req", 13, "{:.1f}"),
               ("server inf ms", 13, "{:.3f}"))  # fmt: skip
    print(" ".join(name.rjust(width) for name, width, _ in columns))
    records: list[dict[str, Any]] = []
    for level in LOG_LEVELS:
        with TorchServeTarget(_serving(level), out / f"log-{level}") as target:
            target.start(artifact)
            assert target.endpoint is not None
            assert target.server_pid is not None
            assert target.server_metrics_url is not None
            cpus = _place(target.server_pid, placement, plan)
            requests = _one_body(target.encode_requests(inputs, 1))
            _warm_server(target, requests, cpus, args.server_warmup_s, out / f"log-{level}" / "warmup")
            sampler = ProcessTreeSampler(target.server_pid, interval_s=0.25)
            window = ServerMetricsWindow(target.server_metrics_url, "torchserve")
            logged: list[int] = []  # the log folder's bytes as the measured part begins and ends
            load = _closed_loop(LOG_LEVEL_USERS, args.warmup_s, args.seconds)
            try:
                hooks = _log_hooks(target, sampler, window, logged)
                run_dir = out / f"log-{level}" / "load"
                result = LocustDriver().run(target.endpoint, load, requests, run_dir, cpus=cpus, hooks=hooks)
            finally:
                sampler.stop()
            tree, server = sampler.summary(), window.summary(result.request_count)
        served = server.get("server_requests") or result.request_count
        cpu_s = (tree["server_cpu_percent"] or 0.0) / 100.0 * tree["sampled_s"]
        log_bytes = logged[-1] - logged[0] if len(logged) == 2 else None
        record = {
            "log_level": level, "rps": result.throughput_rps,
            "p50_ms": float(np.median(result.latencies_ms)) if result.latencies_ms else None,
            "server_cpu_ms_per_request": cpu_s / served * 1e3 if served else None,
            "log_bytes_per_request": log_bytes / served if served and log_bytes is not None else None,
            "server_cpu_s": cpu_s, "log_bytes": log_bytes,
            "server_inference_ms": server.get("server_inference_ms"), "server_requests": served,
            "client_requests": result.request_count, "notes": window.notes + tree["notes"] + result.warnings,
        }  # fmt: skip
        records.append(record)
        save()
        keys = ("log_level", "rps", "p50_ms", "server_cpu_ms_per_request", "log_bytes_per_request",
                "server_inference_ms")  # fmt: skip
        _print_row(columns, [record[k] for k in keys])
    return records


def _workers_scale_section(args: argparse.Namespace, out: Path, save: Callable[[], None]) -> dict[str, Any]:
    print(f"\nLocust processes against trivial_server.py, lean client, closed loop, {SCALE_USERS} users, "
          "load.cpus any")  # fmt: skip
    runs: list[dict[str, Any]] = []
    with trivial_server(out / "workers-scale", b'{"predictions": [0]}') as server:
        for r in range(args.rounds):
            for workers in _rotated(SCALE_WORKERS, r):
                sampler = ProcessTreeSampler(server.pid, interval_s=0.25)
                load = _closed_loop(SCALE_USERS, args.warmup_s, args.seconds, workers=workers)
                hooks = MeasureHooks(start=sampler.start, end=sampler.stop)
                run_dir = out / "workers-scale" / f"r{r}-w{workers}"
                try:
                    result = LocustDriver().run(server.endpoint, load, TRIVIAL, run_dir, hooks=hooks)
                finally:
                    sampler.stop()
                record = {
                    "round": r, "workers": workers, "rps": result.throughput_rps,
                    "generator_cpu_percent": result.generator_cpu_percent,
                    "server_cpu_percent": sampler.summary()["server_cpu_percent"],
                    "failures": result.failure_count, "warnings": result.warnings,
                }  # fmt: skip
                runs.append(record)
                save()
                cpu = " ".join(f"{c:.0f}" for c in result.generator_cpu_percent)
                server_cpu = record["server_cpu_percent"] or 0.0
                print(f"round {r + 1}/{args.rounds} workers {workers}: {result.throughput_rps:8.1f} req/s, "
                      f"Locust CPU % {cpu}, server CPU {server_cpu:.0f}%", flush=True)  # fmt: skip
    medians = {w: _median([x["rps"] for x in runs if x["workers"] == w]) for w in SCALE_WORKERS}
    ratio = _ratio(medians[2], medians[0])
    print(f"median req/s: one process {medians[0] or 0:.1f}, two workers {medians[2] or 0:.1f}, "
          f"ratio {ratio or 0:.2f} (target >= 1.6)")  # fmt: skip
    return {"runs": runs, "median_rps": {str(k): v for k, v in medians.items()}, "ratio": ratio}


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="measured seconds per run")
    parser.add_argument("--warmup-s", type=int, default=2, help="unmeasured seconds before each run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--users", default="1,8", help="comma-separated concurrencies (closed loop)")
    parser.add_argument("--placement", choices=("both", "on", "off"), default="both")
    parser.add_argument("--clients", default=",".join(CLIENTS), help="comma-separated, or 'none'")
    parser.add_argument("--server-warmup-s", type=float, default=20.0,
                        help="load on a fresh TorchServe before measuring")  # fmt: skip
    parser.add_argument("--log-levels", action="store_true", help="add the serving log level section")
    parser.add_argument("--workers-scale", action="store_true", help="add the Locust workers section")
    args = parser.parse_args()
    args.users = [int(u) for u in args.users.split(",")]
    args.placements = ["on", "off"] if args.placement == "both" else [args.placement]
    args.clients = [] if args.clients == "none" else args.clients.split(",")
    if unknown := set(args.clients) - set(CLIENTS):
        parser.error(f"unknown client(s) {', '.join(sorted(unknown))}; known: {', '.join(CLIENTS)}")
    if "wrk" in args.clients and shutil.which("wrk") is None:
        parser.error("wrk is not on PATH (apt-get install wrk), or leave it out of --clients")
    if args.seconds < 1 or args.warmup_s < 0 or args.rounds < 1:
        parser.error("--seconds at least 1, --warmup-s at least 0, --rounds at least 1")
    return args


if __name__ == "__main__":
    with interrupts_unwind():  # SIGTERM stops TorchServe, Locust and wrk like Ctrl-C
        raise SystemExit(main())
