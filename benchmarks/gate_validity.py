"""Gate-validity experiment: how often the latency gate cries wolf, and how often it catches +15%.

Usage: .venv/bin/python benchmarks/gate_validity.py [--trials 50] [--scenario benchmarks/gate_validity.yaml]
           [--regression 0.15] [--threshold +10%]

One server "A" serves the reference model as is; a second server "B" serves the same model with
`serving.options.inject_delay_ms`, a known, deliberate slowdown whose size is calibrated by
measuring until B's p95 is about `regression` (+15%) above A's. Each trial measures a fresh
baseline on A, then a candidate on A (A/A: a failure is a false alarm) and a candidate on B (A/B:
a failure is a detection), each gated like `harness run` gates the latency: the scenario's
gate_policy (threshold as minimum effect size, rank test) and a confirmation re-measure of a
failed gate. The same measurements are also judged by simpler policies (plain percentile, rank
test without confirmation), so the table shows what each layer buys; how many measurements were
INVALID (which fails a `harness run` on its own) is counted separately. Prints the figures and
writes them as JSON next to the measurements
(reports/gate-validity-<time>/summary.json). Takes about 20 s per trial on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from harness.compression.pipeline import prepare_variant
from harness.gates.evaluate import evaluate
from harness.gates.statistics import VariantSamples
from harness.load.plan import plan_points
from harness.measurement import PointMeasurement, measure_point
from harness.models.digits import load_digits_split
from harness.scenario import load_scenario
from harness.scenario.schema import GatePolicySpec, Scenario, VariantSpec
from harness.serving.registry import TARGETS
from harness.signals import interrupts_unwind

ROOT = Path(__file__).resolve().parents[1]
GATE_METRIC = "latency_p95_ms"


@dataclass
class Measured:
    metrics: dict[str, float]
    latencies_ms: np.ndarray
    valid: bool
    reasons: list[str]

    @classmethod
    def of(cls, m: PointMeasurement) -> Measured:
        return cls(m.metrics(), np.asarray(m.load.latencies_ms), m.validity.valid, list(m.validity.reasons))


def gate_fails(current: Measured, baseline: Measured, threshold: str, policy: GatePolicySpec) -> bool:
    """Would `harness run` fail this latency gate (validity aside)?"""
    verdicts = evaluate(
        {GATE_METRIC: threshold},
        {"v": current.metrics},
        {"v": baseline.metrics},
        policy=policy,
        current_dist={"v": VariantSamples(latencies_ms=current.latencies_ms)},
        baseline_dist={"v": VariantSamples(latencies_ms=baseline.latencies_ms)},
    )
    return any(not v.passed for v in verdicts)


def main() -> int:
    args = _parse_args()
    scenario = load_scenario(args.scenario)
    out = ROOT / "reports" / f"gate-validity-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True)
    data = load_digits_split(seed=scenario.model.seed)
    prepared = prepare_variant(
        scenario.model, VariantSpec(name="reference"), args.scenario.parent, out / "artifact", data
    )
    point = plan_points(scenario.load)[0]
    policy = scenario.gate_policy
    counter = iter(range(100_000))

    def measure(target: Any, scn: Scenario) -> Measured:
        return Measured.of(measure_point(target, scn, data, point, out / f"m{next(counter):04d}"))

    target_cls = TARGETS.resolve(scenario.serving.target)
    started = time.perf_counter()
    with target_cls(scenario.serving, out / "server-a") as server_a:
        server_a.start(prepared.artifact)
        for _ in range(2):  # the first windows after a start are slower (JIT, caches): not the baseline
            measure(server_a, scenario)
        p95_a = float(np.median([measure(server_a, scenario).metrics[GATE_METRIC] for _ in range(3)]))
        delay_ms = args.regression * p95_a
        for attempt in range(1, 6):
            # a delay spent on a shared 2-core machine slows more than the handler (the spinning
            # worker takes a core from the server's other threads), so the size is found by measuring
            server_b = _slow_server(target_cls, scenario, delay_ms, out / f"server-b{attempt}")
            try:
                server_b.start(prepared.artifact)
                measure(server_b, scenario)
                ratio = float(
                    np.median(
                        [
                            measure(server_b, scenario).metrics[GATE_METRIC]
                            / measure(server_a, scenario).metrics[GATE_METRIC]
                            for _ in range(3)
                        ]
                    )
                )
                print(f"calibration {attempt}: delay {delay_ms:.3f} ms -> p95 ratio {ratio:.3f}", flush=True)
                if abs(ratio - 1 - args.regression) <= 0.25 * args.regression or attempt == 5:
                    trials = [
                        _trial(i, args, scenario, policy, server_a, server_b, measure)
                        for i in range(args.trials)
                    ]
                    break
            finally:
                server_b.stop()
            scale = args.regression / max(ratio - 1.0, 0.01)
            delay_ms *= min(5.0, max(0.2, scale))
    summary = _summarize(trials, args, policy, p95_a, delay_ms, time.perf_counter() - started)
    (out / "summary.json").write_text(json.dumps({"summary": summary, "trials": trials}, indent=1))
    _print(summary)
    print(f"measurements and summary: {out}")
    return 0


def _slow_server(target_cls: Any, scenario: Scenario, delay_ms: float, run_dir: Path) -> Any:
    options = {**scenario.serving.options, "inject_delay_ms": round(delay_ms, 4)}
    return target_cls(scenario.serving.model_copy(update={"options": options}), run_dir)


def _trial(
    i: int,
    args: argparse.Namespace,
    scenario: Scenario,
    policy: GatePolicySpec,
    server_a: Any,
    server_b: Any,
    measure: Any,
) -> dict[str, Any]:
    """One baseline on A, then an A/A and an A/B candidate, each with its confirmation re-measure."""
    baseline = measure(server_a, scenario)
    row: dict[str, Any] = {"trial": i, "baseline_p95_ms": baseline.metrics.get(GATE_METRIC)}
    plain = policy.model_copy(update={"latency_test": "none"})
    for kind, server in (("aa", server_a), ("ab", server_b)):
        first = measure(server, scenario)
        fails = gate_fails(first, baseline, args.threshold, policy)
        confirmed = fails
        if fails and policy.confirm_runs:
            again = measure(server, scenario)
            confirmed = gate_fails(again, baseline, args.threshold, policy)
        row[kind] = {
            "p95_ratio": first.metrics.get(GATE_METRIC, float("nan")) / baseline.metrics[GATE_METRIC],
            "valid": first.valid and baseline.valid,
            "invalid_reasons": first.reasons + baseline.reasons,
            "fail_plain": gate_fails(first, baseline, args.threshold, plain),
            "fail_test": fails,
            "fail_confirmed": confirmed,
        }
    aa, ab = row["aa"], row["ab"]
    print(
        f"trial {i + 1:3d}/{args.trials}: baseline p95 {row['baseline_p95_ms']:.2f} ms | "
        f"A/A ratio {aa['p95_ratio']:.3f} alarm={aa['fail_confirmed']} | "
        f"A/B ratio {ab['p95_ratio']:.3f} detected={ab['fail_confirmed']}",
        flush=True,
    )
    return row


def _summarize(
    trials: list[dict[str, Any]],
    args: argparse.Namespace,
    policy: GatePolicySpec,
    p95_a: float,
    delay_ms: float,
    seconds: float,
) -> dict[str, Any]:
    def rate(kind: str, key: str) -> float:
        return sum(bool(t[kind][key]) for t in trials) / len(trials)

    aa_ratios = np.array([t["aa"]["p95_ratio"] for t in trials])
    ab_ratios = np.array([t["ab"]["p95_ratio"] for t in trials])
    return {
        "trials": len(trials),
        "threshold": args.threshold,
        "policy": policy.model_dump(),
        "reference_p95_ms": p95_a,
        "injected_delay_ms": delay_ms,
        "achieved_effect_median": float(np.median(ab_ratios)),
        "aa_ratio_p1_p50_p99": [float(x) for x in np.percentile(aa_ratios, [1, 50, 99])],
        "ab_ratio_p1_p50_p99": [float(x) for x in np.percentile(ab_ratios, [1, 50, 99])],
        "false_alarm": {k: rate("aa", k) for k in ("fail_plain", "fail_test", "fail_confirmed")},
        "detection": {k: rate("ab", k) for k in ("fail_plain", "fail_test", "fail_confirmed")},
        "invalid_measurement_rate": {
            "aa": 1 - rate("aa", "valid"),
            "ab": 1 - rate("ab", "valid"),
        },
        "seconds": round(seconds, 1),
    }


def _print(s: dict[str, Any]) -> None:
    print()
    print(f"{s['trials']} trials, gate {GATE_METRIC} {s['threshold']}, policy {s['policy']}")
    print(
        f"reference p95 {s['reference_p95_ms']:.2f} ms; injected {s['injected_delay_ms']:.3f} ms; "
        f"achieved median p95 ratio {s['achieved_effect_median']:.3f}"
    )
    print(f"A/A p95 ratio p1/p50/p99: {', '.join(f'{x:.3f}' for x in s['aa_ratio_p1_p50_p99'])}")
    print(f"A/B p95 ratio p1/p50/p99: {', '.join(f'{x:.3f}' for x in s['ab_ratio_p1_p50_p99'])}")
    print(f"{'policy':<42} {'false alarms':>12} {'detection':>10}")
    labels = {
        "fail_plain": "percentile vs threshold only",
        "fail_test": "+ rank test (significant and beyond)",
        "fail_confirmed": "+ confirmation re-measure (the default)",
    }
    for key, label in labels.items():
        print(f"{label:<42} {s['false_alarm'][key]:>11.1%} {s['detection'][key]:>10.1%}")
    inv = s["invalid_measurement_rate"]
    print(f"INVALID measurements (either side): A/A {inv['aa']:.1%}, A/B {inv['ab']:.1%}")
    print(f"wall time {s['seconds']:.0f} s")


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--scenario", type=Path, default=ROOT / "benchmarks" / "gate_validity.yaml")
    parser.add_argument("--regression", type=float, default=0.15, help="injected p95 increase (0.15 = +15%%)")
    parser.add_argument("--threshold", default="+10%", help="the latency gate's threshold (min effect size)")
    args = parser.parse_args()
    args.scenario = args.scenario.resolve()
    return args


if __name__ == "__main__":
    # SIGTERM (a cancelled job, `kill`) unwinds like Ctrl-C, so both TorchServe instances are torn down
    with interrupts_unwind():
        try:
            sys.exit(main())
        except KeyboardInterrupt as exc:  # servers are torn down by now; say why and stop
            print(f"interrupted ({exc or 'Ctrl-C'})", file=sys.stderr)
            sys.exit(130)
