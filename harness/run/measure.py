"""Serve one prepared variant and measure it: accuracy through the target, then every load point.

Each load point runs in windows until stable (or the window limit), is judged VALID or INVALID
on its own (harness.load.validity), and carries the server's own figures (metrics endpoint) and
its process tree's CPU and memory next to the client's, so a report can say where time went.
The last load point of a sweep is the one the gates see; every point is kept in the record.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.atomic import atomic_write_json
from harness.baselines import histogram
from harness.compression.pipeline import PreparedVariant
from harness.data.dataset import Dataset
from harness.data.tensors import predict_in_chunks
from harness.errors import RunError
from harness.load.drivers import http_driver
from harness.load.plan import LoadPoint, MeasureHooks, StopWhen, plan_points
from harness.load.result import LoadResult
from harness.load.search import search_max_rps_at_slo
from harness.load.threadpool_driver import ThreadPoolDriver
from harness.load.validity import StabilityStopRule, ValidityVerdict, assess, window_percentiles
from harness.metrics.host import ProcessTreeSampler
from harness.metrics.latency import PERCENTILES, latency_summary
from harness.metrics.quality import evaluate_outputs
from harness.metrics.server_metrics import ServerMetricsWindow
from harness.placement import tree_cpus
from harness.progress import Progress
from harness.results import LoadPointResult, Measurement, SearchProbe, SearchResult, Validity, Window
from harness.scenario.schema import Scenario
from harness.serving.base import EncodedRequests, Target
from harness.serving.placement import scenario_placement, shared_cpus_warning
from harness.serving.registry import TARGETS
from harness.timing import timed

DEFAULT_GATED_PERCENTILE = 95.0


@dataclass
class PointMeasurement:
    """One load point: what the client saw, whether it counts, and what the server reported."""

    point: LoadPoint
    load: LoadResult
    validity: ValidityVerdict
    server: dict[str, float] = field(default_factory=dict)
    host: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # the CPUs the server tree and the load processes could use, and those the load was seen on
    placement: dict[str, Any] = field(default_factory=dict)

    def place(self, server_cpus: list[int] | None) -> None:
        """Record where server and load ran (affinities read from the live processes); a note
        when they could share a CPU."""
        load = self.load
        self.placement = {
            "server_cpus": server_cpus,
            "load_cpus": load.generator_cpus,
            "load_cpus_used": load.generator_cpus_used,
        }
        warning = shared_cpus_warning(server_cpus, load.generator_cpus)
        if warning:
            self.notes.append(warning)

    def metrics(self) -> dict[str, float]:
        load = self.load
        out: dict[str, float] = latency_summary(load.latencies_ms)
        out["throughput_rps"] = load.throughput_rps
        out["error_rate"] = load.error_rate
        out["request_count"] = float(load.request_count)
        if load.client_cpu_percent is not None:
            out["client_cpu_percent"] = load.client_cpu_percent
        if load.mode == "open" and load.request_count:
            out["late_fraction"] = load.late_count / load.request_count
            if load.service_latencies_ms:
                service = latency_summary(load.service_latencies_ms)
                out["service_latency_p95_ms"] = service["latency_p95_ms"]
        for key in ("server_inference_ms", "server_queue_ms", "server_request_ms"):
            if key in self.server:
                out[key] = self.server[key]
        host_keys = (("server_cpu_percent", "server_cpu_percent"), ("server_rss_mb_max", "server_rss_mb"))
        for key, metric in host_keys:
            if self.host.get(key) is not None:
                out[metric] = float(self.host[key])
        return out

    def window_latencies(self) -> dict[str, list[float]]:
        """Each latency percentile in each measured window (harness.load.validity.window_percentiles)."""
        load = self.load
        return window_percentiles(load.samples, load.measure_start_s, load.window_s, load.windows_measured)

    def to_record(self, samples_file: str = "") -> LoadPointResult:
        verdict = self.validity
        windows = [
            Window(w.index, w.start_s, w.end_s, w.requests, w.ok, w.failures, w.throughput_rps,
                   w.percentile, w.latency_ms)
            for w in verdict.windows
        ]  # fmt: skip
        return LoadPointResult(
            label=self.point.label,
            users=self.point.users,
            rate_rps=self.point.rate_rps,
            metrics=self.metrics(),
            validity=Validity(verdict.valid, list(verdict.reasons), windows, dict(verdict.facts)),
            latency_histogram=histogram.encode(self.load.latencies_ms) if self.load.latencies_ms else "",
            window_latencies=self.window_latencies(),
            failures=dict(self.load.failures),
            failure_examples=list(self.load.failure_examples),
            stopped_reason=self.load.stopped_reason,
            server=dict(self.server),
            host={k: v for k, v in self.host.items() if not isinstance(v, set | frozenset)},
            notes=list(self.notes),
            samples_file=samples_file,
            placement=dict(self.placement),
        )


def gated_percentile(gates: dict[str, Any]) -> float:
    """The latency percentile the scenario gates on (the highest one), p95 if none."""
    gated = [PERCENTILES[m] for m in gates if m in PERCENTILES]
    return max(gated) if gated else DEFAULT_GATED_PERCENTILE


def measure_variant(
    scenario: Scenario,
    name: str,
    prepared: PreparedVariant,
    data: Dataset,
    run_dir: Path,
    timings: dict[str, float],
    progress: Progress,
    *,
    number: int = 1,
    keep_samples: bool = False,
    reference_outputs: np.ndarray | None = None,
    scenario_dir: Path | None = None,
) -> Measurement:
    """Start the target on the variant's artifact, evaluate its outputs through it, then drive load.

    Quality (accuracy, errors, fidelity to `reference_outputs`: the reference variant's served
    outputs) is computed on what the server answered. `number` 1 is the first measurement;
    re-measures get their own serving and load folders. With `keep_samples`, each point's
    per-request latencies go to an opt-in JSON file."""
    target_name = scenario.serving.target
    suffix = f"-confirm{number - 1}" if number > 1 else ""
    variant_dir = run_dir / "variants" / name
    key = f"{name}{suffix}"
    points: list[PointMeasurement] = []
    search: SearchResult | None = None
    target_cls = TARGETS.resolve(target_name)
    placement = scenario_placement(scenario)
    serving_dir = variant_dir / f"serving{suffix}"
    with target_cls(
        scenario.serving, serving_dir, scenario_dir=scenario_dir, cpus=placement.server
    ) as target:
        with progress.stage(f"starting {target_name} for {key}"), timed(timings, f"serve_start:{key}"):
            target.start(prepared.artifact)
        server_cpus = tree_cpus(target.server_pid)
        with (
            progress.stage(f"outputs of {key} through {target_name}"),
            timed(timings, f"accuracy_served:{key}"),
        ):
            outputs = served_outputs(target, prepared, data)
            quality = evaluate_outputs(
                outputs,
                task=prepared.artifact.signature.task,
                output_kind=prepared.artifact.signature.output.kind,
                labels=data.test.labels,
                num_classes=data.num_classes,
                reference=outputs if reference_outputs is None else reference_outputs,
            )
            outputs_file = variant_dir / f"outputs{suffix}.npy"
            np.save(outputs_file, outputs)
        requests = (
            target.encode_requests(data.test.inputs, scenario.load.request_batch_size)
            if (target.endpoint is not None)
            else None
        )
        for i, point in enumerate(plan_points(scenario.load)):
            load_dir = variant_dir / f"load{suffix}" / (f"{i:02d}-{point.label}" if i else "")
            label = f"load {key}: {point.label}, {scenario.load.warmup_s:g}s warm-up + windows"
            with progress.stage(label), timed(timings, f"load:{key}:{point.label}"):
                points.append(measure_point(target, scenario, data, point, load_dir, requests))
                points[-1].place(server_cpus)
                died = target.died()
                if died is not None:
                    raise died
        if scenario.load.search is not None:
            with progress.stage(f"search max_rps_at_slo for {key}"), timed(timings, f"search:{key}"):
                search = _search(target, scenario, data, variant_dir / f"search{suffix}", requests)
    serving_facts = target.describe()  # after teardown, so it includes how long that took
    serving_facts["cpu_placement"] = placement.describe()
    serving_facts["server_cpus"] = server_cpus

    records = [
        p.to_record(_write_samples(p, run_dir, variant_dir / f"load{suffix}", i) if keep_samples else "")
        for i, p in enumerate(points)
    ]
    gated = points[-1]
    metrics: dict[str, float] = dict(prepared.metrics)
    metrics.update(quality.metrics)
    metrics.update(gated.metrics())
    if search is not None and search.max_rps_at_slo is not None:
        metrics["max_rps_at_slo"] = float(search.max_rps_at_slo)
    warnings = [*gated.load.warnings, *gated.notes]
    if not gated.validity.valid:
        warnings.append("measurement INVALID: " + "; ".join(gated.validity.reasons))
    for warning in warnings:
        progress.note(f"{key}: {warning}")
    return Measurement(
        number=number,
        accuracy=quality.metrics.get("accuracy"),
        predictions=[] if quality.predictions is None else [int(p) for p in quality.predictions],
        per_example={name: [float(v) for v in values] for name, values in quality.per_example.items()},
        outputs_file=str(outputs_file.relative_to(run_dir)),
        points=records,
        metrics=metrics,
        serving=serving_facts,
        search=search,
        warnings=warnings,
    )


def served_outputs(target: Target, prepared: PreparedVariant, data: Dataset) -> np.ndarray:
    """The test split's outputs through the target, checked against the shape the artifact promises."""
    outputs = predict_in_chunks(target.predict, data.test.inputs)
    width = prepared.artifact.signature.output.width
    if outputs.shape != (len(data.test), width):
        raise RunError(
            f"{target.name} answered outputs of shape {list(outputs.shape)} for {len(data.test)} "
            f"examples; expected [{len(data.test)}, {width}]"
        )
    return outputs


def _write_samples(point: PointMeasurement, run_dir: Path, load_dir: Path, index: int) -> str:
    """The point's successful requests' latencies, one JSON list, outside results.json."""
    path = load_dir / f"latencies-{index:02d}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, [float(x) for x in point.load.latencies_ms])
    return str(path.relative_to(run_dir))


def measure_point(
    target: Target,
    scenario: Scenario,
    data: Dataset,
    point: LoadPoint,
    load_dir: Path,
    requests: EncodedRequests | None = None,
) -> PointMeasurement:
    """Drive one load point until stable, with server metrics and the server's CPU/RSS alongside."""
    load = scenario.load
    # one rule for stopping and for the verdict: the windows the driver stopped on are the ones judged
    rule = StabilityStopRule.for_load(load, gated_percentile(dict(scenario.gates)))
    server, host = _server_window(target), _host_sampler(target)
    hooks = None
    if server is not None or host is not None:
        hooks = MeasureHooks(start=lambda: _start(server, host), end=lambda: _stop(server, host))
    try:
        result = drive_load(target, scenario, data, point, load_dir, rule, hooks, requests)
    finally:
        if host is not None:
            host.stop()  # also when the run failed: the sampler thread must not outlive it
    notes: list[str] = []
    host_summary = host.summary() if host is not None else {}
    server_summary = server.summary(None) if server is not None else {}
    if server is not None:
        notes.extend(server.notes)
    verdict = assess(
        result.samples,
        measure_start_s=result.measure_start_s,
        window_s=rule.window_s,
        spec=rule.spec,
        percentile=rule.percentile,
        warmup_s=load.warmup_s,
        generator_cpu_percent=list(result.generator_cpu_percent),
        late_count=result.late_count if load.mode == "open" else None,
        server_restarted=host_summary.get("restarted") if host_summary else None,
        stopped_reason=result.stopped_reason,
        # the driver measured exactly these windows; the last requests' completions may not reach
        # the end of the last one, which would otherwise leave it looking incomplete
        end_s=result.measure_start_s + result.windows_measured * result.window_s,
    )
    numeric_server = {k: float(v) for k, v in server_summary.items() if isinstance(v, int | float)}
    return PointMeasurement(point, result, verdict, numeric_server, host_summary, notes)


def drive_load(
    target: Target,
    scenario: Scenario,
    data: Dataset,
    point: LoadPoint,
    load_dir: Path,
    stop_when: StopWhen | None,
    hooks: MeasureHooks | None = None,
    requests: EncodedRequests | None = None,
) -> LoadResult:
    """Load from threads in this process for a target without a server, else from Locust.

    `hooks` mark the measured part for server-side figures; the thread-pool driver has no server
    to scrape, so they are only passed to Locust."""
    endpoint = target.endpoint
    if endpoint is None:
        return ThreadPoolDriver().run(
            target.predict, scenario.load, data.test.inputs, point=point, stop_when=stop_when, seed=data.seed
        )
    if requests is None:
        requests = target.encode_requests(data.test.inputs, scenario.load.request_batch_size)
    return http_driver(scenario.load).run(
        endpoint,
        scenario.load,
        requests,
        load_dir,
        point=point,
        stop_when=stop_when,
        seed=data.seed,
        hooks=hooks,
        cpus=scenario_placement(scenario).load,
    )


def _search(
    target: Target, scenario: Scenario, data: Dataset, out_dir: Path, requests: EncodedRequests | None
) -> SearchResult:
    """Binary search for the highest throughput whose percentile stays under the SLO."""
    spec = scenario.load.search
    assert spec is not None
    probe_load = scenario.load.model_copy(update={"measure_s": spec.probe_s, "window_s": None})
    probe_scenario = scenario.model_copy(update={"load": probe_load})
    counter = iter(range(1000))

    def measure(point: LoadPoint) -> LoadResult:
        probe_dir = out_dir / f"probe-{next(counter):02d}"
        return drive_load(target, probe_scenario, data, point, probe_dir, None, None, requests)

    def percentile_of(result: LoadResult, q: float) -> float:
        lat = result.latencies_ms
        return float(np.percentile(lat, q)) if lat else float("inf")

    found = search_max_rps_at_slo(
        measure, spec, percentile_of, error_budget=scenario.load.validity.error_budget
    )
    probes = [
        SearchProbe(**{**probe, "percentile_ms": _finite_or_none(probe["percentile_ms"])})
        for probe in found.probes
    ]
    return SearchResult(spec.slo_ms, spec.percentile, spec.over, found.max_rps_at_slo, probes)


def _finite_or_none(value: float) -> float | None:
    """A probe with no successful request has no percentile: None, as strict JSON needs."""
    return value if math.isfinite(value) else None


def _server_window(target: Target) -> Any:
    url, fmt = target.server_metrics_url, target.server_metrics_format
    if not url or not fmt:
        return None
    return ServerMetricsWindow(url, fmt)  # scrapes never raise: a failure becomes a note


def _host_sampler(target: Target) -> Any:
    pid = target.server_pid
    if not pid:
        return None
    return ProcessTreeSampler(pid)


def _start(server: Any, host: Any) -> None:
    if server is not None:
        server.start()
    if host is not None:
        host.start()


def _stop(server: Any, host: Any) -> None:
    if host is not None:
        host.stop()
    if server is not None:
        server.stop()
