"""Realistic run records for the report tests, built from the typed record (harness.results).

`make_run()` is a finished run of three variants: the reference (a sweep of two load points and
an SLO search, VALID, pass), int8 (a latency regression confirmed by a re-measure) and pruned
(INVALID twice: inconclusive). Its verdicts carry evidence of each kind; its serving facts hold
absolute paths inside the run folder, unrounded floats and log sizes, as targets report them.
"""

from __future__ import annotations

from harness.baselines import histogram
from harness.results import (
    AccuracyEvidence,
    BaselineOutcome,
    LatencyEvidence,
    LoadPointResult,
    Measurement,
    Outcome,
    RunFailure,
    RunResult,
    SearchProbe,
    SearchResult,
    ThresholdEvidence,
    Validity,
    VariantResult,
    Verdict,
    Window,
)

RUN_DIR = "/srv/reports/20250101-120000-digits-ab12"
GATES = {"latency_p95_ms": "+10%", "accuracy": "-0.01 abs", "error_rate": 0}
UNSTABLE = (
    "not stable after 10 windows: throughput spread 31.0%, p95 latency spread 4.0% across the last 3 "
    "(limit 10.0%, or a latency range within 0.5 ms)"
)


def windows(throughputs: list[float], p95s: list[float | None], *, width: float = 2.0) -> list[Window]:
    out = []
    for i, (tp, p95) in enumerate(zip(throughputs, p95s, strict=True)):
        ok = int(tp * width)
        out.append(
            Window(
                index=i,
                start_s=2.0 + i * width,
                end_s=2.0 + (i + 1) * width,
                requests=ok + 1,
                ok=ok,
                failures=1,
                throughput_rps=tp,
                percentile=95.0,
                latency_ms=p95,
            )
        )
    return out


def point(
    label: str,
    users: int,
    throughputs: list[float],
    p95s: list[float],
    *,
    valid: bool = True,
    reasons: tuple[str, ...] = (),
    spreads: dict[str, float] | None = None,
    base_ms: float = 2.0,
    extra: dict[str, float] | None = None,
) -> LoadPointResult:
    wins = windows(throughputs, list(p95s))
    latencies = [base_ms + 0.013 * (k % 97) for k in range(600)]
    metrics = {
        "latency_p50_ms": base_ms * 1.2,
        "latency_p90_ms": base_ms * 1.5,
        "latency_p95_ms": max(p95s),
        "latency_p99_ms": max(p95s) * 1.3,
        "latency_max_ms": max(p95s) * 2.1,
        "latency_mean_ms": base_ms * 1.25,
        "throughput_rps": sum(throughputs) / len(throughputs),
        "error_rate": 0.001,
        "request_count": float(sum(w.requests for w in wins)),
        "client_cpu_percent": 41.5,
        **(extra or {}),
    }
    facts = {
        "warmup_s": 2.0,
        "window_s": 2.0,
        "windows": len(wins),
        "stable_windows": 3,
        "max_windows": 10,
        "percentile": 95.0,
        "spreads": spreads if spreads is not None else {"throughput_rps": 0.031, "latency_ms": 0.042},
        "stable": valid or not any(r.startswith("not stable") for r in reasons),
        "max_spread": 0.10,
        "min_requests": 130,
        "requests": sum(w.requests for w in wins),
        "ok": sum(w.ok for w in wins),
        "error_rate": 0.001,
        "generator_cpu_percent_max": 41.5,
        "stopped_reason": "stable" if valid else "max_windows",
    }
    return LoadPointResult(
        label=label,
        users=users,
        rate_rps=None,
        metrics=metrics,
        validity=Validity(valid=valid, reasons=list(reasons), windows=wins, facts=facts),
        latency_histogram=histogram.encode(latencies),
        window_latencies={"95": list(p95s)},
        failures={"timeout": 2, "http_503": 1} if not valid else {"timeout": 1},
        failure_examples=["POST /predictions/digits: timeout after 5.0 s"] if not valid else [],
        stopped_reason="stable" if valid else "max_windows",
        server={"server_inference_ms": 1.1},
        host={"server_cpu_percent": 180.2, "server_rss_mb_max": 812.4},
    )


def serving(variant: str, suffix: str = "", startup: float = 5.920060595999985) -> dict[str, object]:
    base = f"{RUN_DIR}/variants/{variant}/serving{suffix}"
    return {
        "target": "torchserve",
        "torchserve_version": "0.12.0",
        "python": "/usr/bin/python3",
        "workers": 1,
        "batch_size": 1,
        "ports": {"inference": 41000 + len(variant) + len(suffix), "metrics": 42000 + len(variant)},
        "startup_s": startup,
        "teardown_s": 0.40813,
        "config_path": f"{base}/config.properties",
        "logs": {"console": f"{base}/console.log", "ts_log": f"{base}/logs/ts_log.log"},
        "log_bytes": {"console": 18_734, "ts_log": 1_203_337},
    }


def verdict(
    variant: str,
    metric: str,
    status: str,
    current: float,
    baseline: float | None,
    limit: float | None,
    *,
    evidence: object = None,
    measurement: int = 1,
    threshold: str = "",
) -> Verdict:
    word = {"pass": "within", "fail": "beyond", "inconclusive": "not judged:"}[status]
    return Verdict(
        variant=variant,
        metric=metric,
        threshold=threshold or f"{metric}: {GATES.get(metric, 0)}",
        current=current,
        baseline=baseline,
        limit=limit,
        status=status,  # type: ignore[arg-type]
        message=f"{variant} {metric} {current:.4g} {word} limit {limit}",
        evidence=evidence or ThresholdEvidence(),  # type: ignore[arg-type]
        measurement=measurement,
    )


def latency_evidence(ratio: float, *, significant: bool, test: str = "windows") -> LatencyEvidence:
    windows_test = test == "windows"
    return LatencyEvidence(
        test=test,  # type: ignore[arg-type]
        alpha=0.05,
        percentile=95.0,
        ratio=ratio,
        min_ratio=1.1,
        ci_low=ratio - 0.04,
        ci_high=ratio + 0.05,
        confidence_level=0.9,
        significant=significant,
        exceeds_threshold=ratio > 1.1,
        n_current=8 if windows_test else 5123,
        n_baseline=9 if windows_test else 4987,
        p_value=None if windows_test else 0.0021,
        window_quantile=0.25 if windows_test else None,
        current_windows_value=2.8 * ratio if windows_test else None,
        baseline_windows_value=2.8 if windows_test else None,
        fallback="" if windows_test else "baseline has fewer than 5 windows",
    )


ACCURACY_EVIDENCE = AccuracyEvidence(
    alpha=0.05,
    p_value=0.3437,
    p_value_two_sided=0.6875,
    b=3,
    c=1,
    n=450,
    delta=-0.0044444,
    ci_low=-0.0121,
    ci_high=0.0031,
    confidence_level=0.95,
    significant=False,
    exceeds_threshold=False,
)


def _model_metrics(size: float, params: float = 8906.0) -> dict[str, float]:
    return {
        "model_size_bytes": size,
        "model_size_gzip_bytes": size * 0.91,
        "param_count": params,
        "accuracy_inprocess": 0.9711,
    }


def _measurement(
    number: int, points: list[LoadPointResult], model: dict[str, float], verdicts: list[Verdict], **kw: object
) -> Measurement:
    accuracy = 0.9711 - 0.0044 * (number > 1)
    metrics = {**model, "accuracy": accuracy, **points[-1].metrics}
    return Measurement(
        number=number,
        accuracy=accuracy,
        predictions=[k % 10 for k in range(30)],
        points=points,
        metrics=metrics,
        verdicts=verdicts,
        **kw,  # type: ignore[arg-type]
    )


def make_run() -> RunResult:
    ref_model = _model_metrics(34_712.0)
    search = SearchResult(
        slo_ms=10.0,
        percentile=95.0,
        over="rate",
        max_rps_at_slo=812.5,
        probes=[
            SearchProbe("rate", 400.0, "rate=400", 398.2, 95.0, 3.1, 0.0, 1990, True),
            SearchProbe("rate", 800.0, "rate=800", 796.1, 95.0, 8.7, 0.0, 3980, True),
            SearchProbe("rate", 1200.0, "rate=1200", 901.7, 95.0, 41.3, 0.012, 5102, False),
        ],
    )
    ref_first = [
        verdict(
            "reference",
            "latency_p95_ms",
            "pass",
            2.9,
            2.8,
            3.08,
            evidence=latency_evidence(1.03, significant=False),
        ),
        verdict("reference", "accuracy", "pass", 0.9711, 0.9711, 0.9611, evidence=ACCURACY_EVIDENCE),
        verdict("reference", "error_rate", "pass", 0.001, None, 0.0, threshold="error_rate: 0"),
    ]
    reference = VariantResult(
        name="reference",
        steps=[],
        model_metrics=ref_model,
        artifact="variants/reference/model.pt2",
        measurements=[
            _measurement(
                1,
                [
                    point("users=2", 2, [401.0, 402.5, 399.8], [2.1, 2.15, 2.12]),
                    point("users=8", 8, [810.0, 812.5, 808.9], [2.85, 2.9, 2.88]),
                ],
                ref_model,
                ref_first,
                serving=serving("reference"),
                search=search,
            )
        ],
        verdicts=list(ref_first),
        outcome=Outcome.PASS,
    )

    int8_model = _model_metrics(10_204.0)
    int8_first = [
        verdict(
            "int8",
            "latency_p95_ms",
            "fail",
            3.4,
            2.8,
            3.08,
            evidence=latency_evidence(1.21, significant=True),
        ),
        verdict("int8", "accuracy", "pass", 0.9711, 0.9711, 0.9611, evidence=ACCURACY_EVIDENCE),
    ]
    int8_second = [
        verdict(
            "int8",
            "latency_p95_ms",
            "fail",
            3.5,
            2.8,
            3.08,
            evidence=latency_evidence(1.25, significant=True, test="mannwhitney"),
            measurement=2,
        ),
        verdict(
            "int8", "accuracy", "pass", 0.9667, 0.9711, 0.9611, evidence=ACCURACY_EVIDENCE, measurement=2
        ),
    ]
    int8 = VariantResult(
        name="int8",
        steps=[{"recipe": "torch.int8", "params": {"mode": "dynamic"}}],
        model_metrics=int8_model,
        compression=[
            {
                "recipe": "torch.int8",
                "params": {"mode": "dynamic"},
                "seconds": 0.8213,
                "notes": ["quantized 3 Linear layers"],
                "details": {"quantized_layers": 3, "size_bytes": 10204},
            }
        ],
        artifact="variants/int8/model.pt2",
        warnings=["int8: dynamic quantization keeps activations in float"],
        measurements=[
            _measurement(
                1,
                [point("users=8", 8, [700.0, 702.0, 698.5], [3.38, 3.4, 3.39], base_ms=2.6)],
                int8_model,
                int8_first,
                serving=serving("int8"),
            ),
            _measurement(
                2,
                [point("users=8", 8, [690.0, 695.0, 691.5], [3.45, 3.5, 3.47], base_ms=2.7)],
                int8_model,
                int8_second,
                serving=serving("int8", "-confirm1", startup=6.101),
            ),
        ],
        verdicts=[int8_second[0], int8_second[1]],
        outcome=Outcome.REGRESSION,
    )

    pruned_model = _model_metrics(34_712.0, params=8906.0) | {"sparsity": 0.5}
    invalid_point = {
        "valid": False,
        "reasons": (UNSTABLE,),
        "spreads": {"throughput_rps": 0.31, "latency_ms": 0.04},
    }
    pruned_verdicts = [
        verdict("pruned", "latency_p95_ms", "inconclusive", 2.95, 2.8, 3.08, measurement=m) for m in (1, 2)
    ]
    pruned = VariantResult(
        name="pruned",
        steps=[{"recipe": "torch.prune", "params": {"amount": 0.5}}],
        model_metrics=pruned_model,
        artifact="variants/pruned/model.pt2",
        measurements=[
            _measurement(
                n,
                [point("users=8", 8, [500.0, 700.0, 640.0], [2.9, 2.95, 2.93], **invalid_point)],  # type: ignore[arg-type]
                pruned_model,
                [pruned_verdicts[n - 1]],
                serving=serving("pruned", "" if n == 1 else "-confirm1"),
            )
            for n in (1, 2)
        ],
        verdicts=[pruned_verdicts[1]],
        outcome=Outcome.INCONCLUSIVE,
    )
    return RunResult(
        run_id="20250101-120000-digits-ab12",
        scenario_name="digits",
        scenario={"name": "digits", "description": "desc & <b>bold</b>", "gates": GATES},
        started_at="2025-01-01T12:00:00+00:00",
        finished_at="2025-01-01T12:01:27+00:00",
        environment={"cpu_model": "Test CPU", "packages": {"torch": "2.5.1"}},
        target={"target": "torchserve"},
        variants=[reference, int8, pruned],
        baseline=BaselineOutcome(
            status="compared",
            message="compared with baseline 20241231-090000-digits-ff00",
            path="baselines/digits.json",
            fingerprint="fp1",
        ),
        stage_seconds={
            "load_scenario": 0.021,
            "data": 0.412,
            "prepare:reference": 3.104,
            "prepare:int8": 2.977,
            "prepare:pruned": 3.311,
            "serve_start:reference": 5.92,
            "accuracy_served:reference": 0.8,
            "load:reference:users=2": 8.1,
            "load:reference:users=8": 8.2,
            "search:reference": 12.5,
            "serve_start:int8": 6.0,
            "load:int8:users=8": 8.0,
            "serve_start:pruned": 6.0,
            "load:pruned:users=8": 5.1,
            "gate": 15.7,
            "serve_start:int8-confirm1": 6.1,
            "load:int8-confirm1:users=8": 8.0,
        },
        run_dir=RUN_DIR,
    )


def make_broken_run(*, interrupted: bool = False) -> RunResult:
    """The same run broken while serving int8: reference judged, int8 and pruned never judged."""
    result = make_run()
    _, int8, pruned = result.variants
    int8.measurements = int8.measurements[:1]
    for variant in (int8, pruned):
        variant.verdicts = []
        variant.outcome = None
        for m in variant.measurements:
            m.verdicts = []
    pruned.measurements = []
    result.failure = RunFailure(
        stage="load",
        variant="int8",
        message="TorchServe exited with code 1 while loading the model",
        log="variants/int8/serving/console.log",
        log_tail="2025-01-01 12:00:40 INFO loading model\njava.lang.OutOfMemoryError: Java heap space\n",
        interrupted=interrupted,
    )
    return result
