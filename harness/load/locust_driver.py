"""Drive an HTTP endpoint with Locust running as separate processes (one, or a master and workers).

Locust is never imported here: gevent's monkey patching breaks once TensorFlow is loaded, and
separate processes also keep the load generator's CPU visible on its own. The packaged
locustfile records every request's exact timing and flushes it to CSV while the test runs; this
module tails those files, ends the test when the measured windows are done (or a stop rule says
the numbers are stable), cuts the windows out of the samples and watches each process's CPU.

With `load.workers: N` a Locust master and N local workers run (Locust's own distributed mode);
`load.remote_workers: M` makes the master also wait for M workers started elsewhere with
`locust -f - --worker --master-host <this host> --master-port <load.master_bind_port>`.

Request bodies come encoded (`EncodedRequests`, by the target, before load starts) and reach the
Locust processes through a file (local) or the master's config message (workers, remote ones
included), so Locust only sends bytes.
"""

from __future__ import annotations

import json
import math
import os
import struct
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

from harness.errors import RunError, UserError
from harness.load.cpu import CpuSampler, cpu_percent
from harness.load.interleave import Interleave
from harness.load.locust_watch import FLUSH_S, LocustRunFiles, LocustRunWatch, wait_exit
from harness.load.plan import LoadPoint, MeasureHooks, StopWhen, WindowPlan, single_point
from harness.load.result import LoadResult, Sample
from harness.load.samples import read_samples, summarize
from harness.placement import placed_here
from harness.processes import ManagedProcess, free_port
from harness.scenario.load_spec import LoadSpec
from harness.serving.base import EncodedRequests, HttpEndpoint

LOCUSTFILE_PACKAGE = "harness.load.locustfiles"
LOCUSTFILE_NAME = "predict.py"
# Only tracebacks mean a locustfile bug; failed requests are classified by the locustfile
LOCUST_FATAL_MARKERS = ("Traceback (most recent call last)",)
# Locust's default master port: remote workers must know it in advance, local ones get a free one
DEFAULT_MASTER_PORT = 5557
SAFETY_MARGIN_S = 30.0  # a Locust process stops by itself this long after the longest run
BODY_LENGTH = struct.Struct("<Q")  # the bodies file the locustfile reads: length, then the bytes


class LocustDriver:
    """Runs `python -m locust --headless` against an endpoint and returns exact per-request results."""

    name = "locust"  # LoadResult.generator
    title = "Locust"  # in messages
    files_prefix = "locust"

    def __init__(
        self,
        *,
        startup_slack_s: float = 60.0,
        poll_s: float = 0.2,
        python: str | None = None,
        worker_wait_s: float = 120.0,
    ) -> None:
        self.startup_slack_s = startup_slack_s  # Locust import and exit, on a busy machine
        self.poll_s = poll_s  # also the CPU sampling period
        self.python = python or sys.executable
        self.worker_wait_s = worker_wait_s  # how long the master waits for every worker to connect

    def run(
        self,
        endpoint: HttpEndpoint,
        load: LoadSpec,
        requests: EncodedRequests,
        run_dir: Path,
        *,
        point: LoadPoint | None = None,
        stop_when: StopWhen | None = None,
        seed: int = 0,
        hooks: MeasureHooks | None = None,
        cpus: Sequence[int] | None = None,
        interleave: Interleave | None = None,
    ) -> LoadResult:
        """Drive `point` of `load` at `endpoint` with the bodies of `requests` (cycled through in
        order, each holding `load.request_batch_size` examples); files go to `run_dir`.

        `point` may be omitted when `load` sweeps nothing. `stop_when(samples, measure_start_s)`
        is asked after each window once `measure_s` is covered; True ends the run as "stable".
        `seed` seeds the open-loop arrival schedule (each worker derives its own). `hooks` are
        called as the measured windows begin and once they are decided (within one poll).
        `cpus`: the CPUs every local Locust process may run on (harness.placement); None: any.
        `interleave`: load its targets in turn instead (`endpoint` and `requests` are its first);
        each sample says which target it went to. A single process only: no workers.
        """
        point = single_point(load, point)
        if not requests.bodies:
            raise RunError("no request bodies to send")
        if requests.rows_per_body != load.request_batch_size:
            raise RunError(
                f"the requests hold {requests.rows_per_body} example(s) each but load.request_batch_size "
                f"is {load.request_batch_size}: encode them with the load's batch size"
            )
        plan = WindowPlan.for_load(load, has_stop_rule=stop_when is not None)
        processes = load.workers + load.remote_workers
        if interleave is not None and processes:
            raise RunError(
                "an interleaved run is one Locust process: load.workers and remote_workers must be 0"
            )
        if point.mode == "open" and processes > point.users:
            raise UserError(
                f"load.users: an open loop over {processes} Locust workers needs at least one user "
                f"(in-flight slot) per worker, got {point.users}"
            )
        files_ = LocustRunFiles(Path(run_dir), self.files_prefix)
        files_.clean()
        with ExitStack() as stack, placed_here(cpus):
            main, workers = self._launch(
                stack, endpoint, load, point, requests, files_, plan, processes, seed, interleave, cpus
            )
            start_wait_s = self.startup_slack_s + (self.worker_wait_s if processes else 0.0)
            watch = LocustRunWatch(
                load, plan, files_, main, workers, stop_when,
                poll_s=self.poll_s, start_wait_s=start_wait_s, stop_slack_s=self.startup_slack_s,
                hooks=hooks,
            )  # fmt: skip
            watch.until_stopped()
            for worker in workers:  # they got the master's quit; give them a moment to exit cleanly
                wait_exit(worker, 5.0)
            problems = [p for p in [main, *workers] if p.fatal_line()]
        code = main.returncode
        if code != 0 or problems:
            culprit = problems[0] if problems else main
            raise RunError(
                f"{culprit.name} failed (exit code {culprit.returncode})",
                log=culprit.log_path,
                log_tail=culprit.log_tail(),
            )
        if not files_.meta.exists():
            raise RunError(
                f"{main.name} exited without writing {files_.meta.name}",
                log=files_.log,
                log_tail=main.log_tail(),
            )
        meta = json.loads(files_.meta.read_text())
        return self._result(load, point, plan, watch.windows, watch.reason or "measure_s", meta, files_,
                            [watch.main_cpu, *watch.worker_cpus], processes)  # fmt: skip

    def _launch(
        self,
        stack: ExitStack,
        endpoint: HttpEndpoint,
        load: LoadSpec,
        point: LoadPoint,
        requests: EncodedRequests,
        files_: LocustRunFiles,
        plan: WindowPlan,
        processes: int,
        seed: int,
        interleave: Interleave | None,
        cpus: Sequence[int] | None,
    ) -> tuple[ManagedProcess, list[ManagedProcess]]:
        """Write the run's inputs and start its processes (entered into `stack`): main, workers."""
        port = None
        if processes:
            port = load.master_bind_port or (DEFAULT_MASTER_PORT if load.remote_workers else free_port())
        write_bodies(files_.bodies, requests.bodies)
        config = _config(endpoint, load, point, requests, files_, plan, processes, seed)
        if interleave is not None:
            config["interleave"] = _interleave_config(interleave, load, files_)
        files_.config.write_text(json.dumps(config))
        locustfile = stack.enter_context(as_file(files(LOCUSTFILE_PACKAGE).joinpath(LOCUSTFILE_NAME)))
        # once every Locust process is gone: the bodies are the test set again, up to 64 MiB of it
        stack.callback(files_.bodies.unlink, missing_ok=True)
        for extra in files_.dir.glob("bodies-*.bin") if interleave is not None else ():
            stack.callback(extra.unlink, missing_ok=True)
        main = ManagedProcess(
            self._main_argv(locustfile, load, point, endpoint, files_, processes, port),
            files_.log,
            name="locust master" if processes else "locust",
            env=_locust_env(files_.config),
            cwd=files_.dir,
            fatal_markers=LOCUST_FATAL_MARKERS,
            cpus=cpus,
        )
        stack.enter_context(main)
        workers = []
        master = ["--master-host", _local_address(load.master_bind_host), "--master-port", str(port)]
        for index in range(load.workers):
            worker = ManagedProcess(
                [*self._locust(locustfile), "--worker", *master],
                files_.dir / f"locust_worker{index}.log",
                name=f"locust worker {index}",
                env=_locust_env(None),
                cwd=files_.dir,
                fatal_markers=LOCUST_FATAL_MARKERS,
                cpus=cpus,
            )
            workers.append(stack.enter_context(worker))
        return main, workers

    def _locust(self, locustfile: Path) -> list[str]:
        return [self.python, "-m", "locust", "-f", str(locustfile)]

    def _main_argv(
        self,
        locustfile: Path,
        load: LoadSpec,
        point: LoadPoint,
        endpoint: HttpEndpoint,
        files_: LocustRunFiles,
        processes: int,
        port: int | None,
    ) -> list[str]:
        argv = [
            *self._locust(locustfile),
            "--headless",
            "-u", str(point.users),
            "-r", f"{load.spawn_rate:g}",
            # users finish the request in flight at the end instead of being killed mid-request
            "--stop-timeout", f"{math.ceil(load.timeout_s) + 1}s",
            "--host", endpoint.base_url.rstrip("/"),
            "--exit-code-on-error", "0",  # failed requests are classified by us, not fatal
            "--only-summary",
            "--csv", str(files_.dir / "locust"),  # for humans only: it misses the last second
        ]  # fmt: skip
        if processes:
            argv += [
                "--master",
                "--expect-workers", str(processes),
                "--expect-workers-max-wait", str(math.ceil(self.worker_wait_s)),
                "--master-bind-host", load.master_bind_host,
                "--master-bind-port", str(port),
            ]  # fmt: skip
        return argv

    def _result(
        self,
        load: LoadSpec,
        point: LoadPoint,
        plan: WindowPlan,
        windows: int,
        reason: str,
        meta: dict[str, Any],
        files_: LocustRunFiles,
        samplers: list[CpuSampler],
        processes: int,
    ) -> LoadResult:
        start = plan.measure_start_s
        end = min(plan.end_of(windows), float(meta["stop_s"]))
        if end <= start:
            raise RunError(
                f"{self.name} stopped {meta['stop_s']:.1f}s into the run, before the measure window "
                f"({load.warmup_s:g}s warm-up) began"
            )
        samples: list[Sample] = []
        for path in files_.sample_files():
            samples.extend(read_samples(path))
        result = summarize(
            samples,
            window_start_s=start,
            window_end_s=end,
            generator=self.name,
            users=point.users,
            request_batch_size=load.request_batch_size,
            warmup_s=load.warmup_s,
            mode=point.mode,
            target_rate_rps=point.rate_rps,
            late_threshold_ms=load.validity.late_ms,
            window_s=plan.window_s,
        )
        result.stopped_reason = reason
        result.workers = processes
        start_epoch = float(meta["test_start_epoch_s"])
        main_cpu = samplers[0]
        cpu = [main_cpu.percent(start_epoch + start, start_epoch + end)]
        affinities = [set(s.affinity) for s in samplers if s.affinity is not None]
        result.generator_cpus = sorted(set().union(*affinities)) if affinities else None
        used = set().union(*(s.cpus_used(start_epoch + start, start_epoch + end) for s in samplers))
        result.generator_cpus_used = sorted(used)
        workers = meta.get("workers") or {}
        cpu += [cpu_percent([tuple(p) for p in w["cpu"]], start, end) for _, w in sorted(workers.items())]
        result.generator_cpu_percent = [c for c in cpu if c is not None]
        result.client_cpu_percent = max(result.generator_cpu_percent, default=None)
        result.warnings.extend(
            _warnings(load, point, meta, result, planned_end_s=plan.end_of(windows), engine=self.title)
        )
        return result


def _config(
    endpoint: HttpEndpoint,
    load: LoadSpec,
    point: LoadPoint,
    requests: EncodedRequests,
    files_: LocustRunFiles,
    plan: WindowPlan,
    processes: int,
    seed: int,
) -> dict[str, Any]:
    """Everything the locustfile needs; a master passes the request part on to its workers."""
    return {
        "path": endpoint.path if endpoint.path.startswith("/") else "/" + endpoint.path,
        "headers": {**(endpoint.headers or {}), "Content-Type": requests.content_type},
        "bodies_path": str(files_.bodies),
        "rows": requests.rows_per_body,
        "output_path": requests.output_path,
        "output_width": requests.output_width,
        "timeout_s": load.timeout_s,
        "mode": point.mode,
        "rate_rps": point.rate_rps,
        "arrival": load.arrival,
        "seed": seed,
        "processes": max(1, processes),  # the rate is shared evenly between them
        "flush_s": FLUSH_S,
        "client": load.client,
        "host": endpoint.base_url,
        "samples_path": str(files_.samples),
        "samples_prefix": str(files_.samples.with_suffix("")),
        "started_path": str(files_.started),
        "meta_path": str(files_.meta),
        "stop_path": str(files_.stop),
        "max_run_s": plan.longest_s + SAFETY_MARGIN_S,
    }


def _interleave_config(interleave: Interleave, load: LoadSpec, files_: LocustRunFiles) -> dict[str, Any]:
    """Each target as an absolute URL with its own headers, bodies file and output checks."""
    targets = []
    for i, target in enumerate(interleave.targets):
        requests = target.requests
        if requests.rows_per_body != load.request_batch_size or not requests.bodies:
            raise RunError(f"interleaved target {i}: no bodies of {load.request_batch_size} example(s) each")
        path = target.endpoint.path if target.endpoint.path.startswith("/") else "/" + target.endpoint.path
        bodies = files_.dir / f"bodies-{i}.bin"
        write_bodies(bodies, requests.bodies)
        targets.append({
            "path": target.endpoint.base_url.rstrip("/") + path,
            "headers": {**(target.endpoint.headers or {}), "Content-Type": requests.content_type},
            "bodies_path": str(bodies),
            "rows": requests.rows_per_body,
            "output_path": requests.output_path,
            "output_width": requests.output_width,
        })  # fmt: skip
    return {"slice_s": interleave.slice_s, "pattern": list(interleave.pattern), "targets": targets}


def _local_address(bind_host: str) -> str:
    """Where a local worker reaches a master bound to `bind_host` (a wildcard means any address)."""
    return "127.0.0.1" if bind_host in ("", "*", "0.0.0.0", "::") else bind_host


def write_bodies(path: Path, bodies: Sequence[bytes]) -> None:
    """The bodies file the locustfile reads: each body's 8-byte little-endian length, then its bytes."""
    with open(path, "wb") as fh:
        for body in bodies:
            fh.write(BODY_LENGTH.pack(len(body)))
            fh.write(body)


def _locust_env(config: Path | None) -> dict[str, str]:
    # inherited LOCUST_* variables would silently change the run (Locust reads its options from them)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCUST_", "HARNESS_LOAD_"))}
    env["PYTHONUNBUFFERED"] = "1"
    if config is not None:
        env["HARNESS_LOAD_CONFIG"] = str(config)
    return env


def _warnings(
    load: LoadSpec,
    point: LoadPoint,
    meta: dict[str, Any],
    result: LoadResult,
    *,
    planned_end_s: float,
    engine: str = "Locust",
) -> list[str]:
    warnings = []
    limit = 100.0 * load.validity.max_generator_cpu
    names = (
        [engine]
        if not result.workers
        else ["the Locust master"]
        + [f"Locust worker {w}" for w in sorted(meta.get("workers") or {}, key=int)]
    )
    for who, cpu in zip(names, result.generator_cpu_percent, strict=False):
        if cpu > limit:
            warnings.append(
                f"load generator saturated ({who} used {cpu:.0f}% of one core): "
                "results may understate the server"
            )
    spawned = meta.get("spawning_complete_s")
    if spawned is None or spawned > load.warmup_s:
        when = "never" if spawned is None else f"{spawned:.1f}s into the run"
        warnings.append(
            f"not all {point.users} users had started by the end of the {load.warmup_s:g}s warm-up "
            f"(spawning completed {when}): raise warmup_s or spawn_rate"
        )
    for index, worker in (meta.get("workers") or {}).items():
        if not worker.get("done"):
            warnings.append(
                f"Locust worker {index} did not report its last requests before the master stopped"
            )
    undrained = int(meta.get("undrained", 0)) + sum(
        int(w.get("undrained", 0)) for w in (meta.get("workers") or {}).values()
    )
    if undrained:
        warnings.append(
            f"{undrained} request(s) due in the measured windows were still unsent when {engine} stopped"
        )
    if float(meta["stop_s"]) < planned_end_s:
        warnings.append(
            f"{engine.lower()} stopped {meta['stop_s']:.1f}s into the run, before the measurement's "
            f"planned end ({planned_end_s:g}s): the measure window is shorter"
        )
    if point.mode == "open" and result.late_fraction > load.validity.max_late_fraction:
        warnings.append(
            f"the load generator sent {result.late_count} of {result.request_count} requests more than "
            f"{load.validity.late_ms:g} ms late (worst {result.max_late_ms:.0f} ms): it could not keep up "
            f"with {point.rate_rps:g} req/s"
        )
    if result.ok_count == 0:
        warnings.append("no request succeeded in the measure window")
    return warnings
