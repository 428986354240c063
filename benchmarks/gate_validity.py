"""Gate-validity experiment: how often a latency gate cries wolf, and how often it catches +15%.

Usage: .venv/bin/python benchmarks/gate_validity.py [--mode baseline] [--trials 50]
           [--scenario benchmarks/gate_validity.yaml] [--regression 0.15 | --delay-ms 0.115]
           [--threshold +7.5%] [--also-thresholds +5%,+10%,+15%]
       .venv/bin/python benchmarks/gate_validity.py --mode ab [--trials 30]
           [--scenario benchmarks/gate_validity_ab.yaml] [--regression 0.15 | --delay-ms D]
           [--pairs 16] [--rounds 2] [--slot-s 2.5] [--slice-s 0.5] [--warmup-s 1] [--alpha 0.01]
           [--min-effect 0.05]
       .venv/bin/python benchmarks/gate_validity.py --mode ab --trials 10
           --resume reports/gate-validity-ab-<time>/summary.json

`--mode ab` judges `harness ab` (the interleaved A/B comparison) instead of the baseline gate:
each trial is one whole `run_ab`, two TorchServe servers started afresh, with the scenario as
base and as head an identical copy (A/A: a p95 regression is a false alarm) or a copy with an
`inject_delay_ms` calibrated (by `run_ab`s) to raise p95 by `--regression` (A/B: a p95
regression is a detection). Trials run A/A, A/B, A/B, A/A, ... so drift hits both kinds; each
waits while /tmp/harness-suite-running exists. Trials are appended to summary.json after each
one, and `--resume` adds more to an existing file with its stored settings. See `_ab_main`.

`--mode baseline` (the default) judges the gate of `harness run` against a stored baseline:
Server "A" serves the reference model as is; server "B" serves the same model with
`serving.options.inject_delay_ms`, a deliberate slowdown whose size is calibrated by measuring
until B's p95 is about `regression` (+15%) above A's. The two are then measured alternately,
A0 B0 A1 B1 ..., each measurement exactly as `harness run` measures a variant. Trial i gates
A(i+1) against the baseline A(i) (A/A: a failure is a false alarm) and B(i) against A(i) (A/B: a
failure is a detection); when a gate fails, the next measurement of the same server is its
confirmation re-measure (A(i+2), B(i+1)), as `harness run` re-measures a failed variant.
Consecutive trials share measurements, so 50 trials cost 103 measurements instead of 250.

Every trial is judged by several gate policies on the same measurements, so the table shows what
each layer buys: the pooled percentile against the threshold alone, the request-level rank test
(Mann-Whitney), and the window test (the default), each with and without confirmation. How many
measurements were INVALID (which fails a `harness run` on its own) is counted separately.
Prints the figures and writes them, with every measurement's per-window percentiles, as JSON
(reports/gate-validity-<time>/summary.json). About 22 s per measurement on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from harness.ab.decide import compare_blocks
from harness.ab.record import AbResult, Slot
from harness.ab.runner import AbOptions, run_ab
from harness.ab.schedule import DEFAULT_ROUNDS, check_pairs, check_rounds
from harness.atomic import atomic_write_json
from harness.compression.pipeline import prepare_variant
from harness.errors import UserError
from harness.gates.evaluate import evaluate
from harness.load.plan import plan_points
from harness.models.digits import load_digits_split
from harness.run.measure import PointMeasurement, measure_point
from harness.samples import VariantSamples
from harness.scenario.loader import load_scenario
from harness.scenario.schema import GatePolicySpec, Scenario, VariantSpec
from harness.serving.registry import TARGETS
from harness.signals import interrupts_unwind

ROOT = Path(__file__).resolve().parents[1]
GATE_METRIC = "latency_p95_ms"
# (label, latency_test, confirmation re-measure)
POLICIES = (
    ("pooled p95 vs threshold only", "none", False),
    ("  + confirmation re-measure", "none", True),
    ("rank test over requests", "mannwhitney", False),
    ("  + confirmation re-measure", "mannwhitney", True),
    ("window test", "windows", False),
    ("  + confirmation re-measure (default)", "windows", True),
)


@dataclass
class Measured:
    server: str
    metrics: dict[str, float]
    latencies_ms: np.ndarray
    windows: dict[str, list[float]]
    valid: bool
    reasons: list[str]

    @classmethod
    def of(cls, server: str, m: PointMeasurement) -> Measured:
        return cls(
            server,
            m.metrics(),
            np.asarray(m.load.latencies_ms),
            m.window_latencies(),
            m.validity.valid,
            list(m.validity.reasons),
        )

    def samples(self) -> VariantSamples:
        windows = {k: np.asarray(v) for k, v in self.windows.items()}
        return VariantSamples(latencies_ms=self.latencies_ms, window_latencies=windows)

    def quiet_p95(self, quantile: float) -> float:
        return float(np.percentile(self.windows[GATE_METRIC], quantile))

    def as_dict(self) -> dict[str, Any]:
        return {
            "server": self.server,
            GATE_METRIC: self.metrics.get(GATE_METRIC),
            "window_" + GATE_METRIC: self.windows.get(GATE_METRIC, []),
            "valid": self.valid,
            "invalid_reasons": self.reasons,
        }


def gate_fails(current: Measured, baseline: Measured, threshold: str, policy: GatePolicySpec) -> bool:
    """Would `harness run` fail this latency gate (validity aside)?"""
    verdicts = evaluate(
        {GATE_METRIC: threshold},
        {"v": current.metrics},
        {"v": baseline.metrics},
        policy=policy,
        current_dist={"v": current.samples()},
        baseline_dist={"v": baseline.samples()},
    )
    return any(not v.passed for v in verdicts)


def main() -> int:
    args = _parse_args()
    return _ab_main(args) if args.mode == "ab" else _baseline_main(args)


def _baseline_main(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario)
    out = ROOT / "reports" / f"gate-validity-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True)
    data = load_digits_split(seed=scenario.model.seed)
    prepared = prepare_variant(
        scenario.model, VariantSpec(name="reference"), args.scenario.parent, out / "artifact", data
    )
    quantile = scenario.gate_policy.window_quantile
    counter = iter(range(100_000))

    def measure(name: str, target: Any, scn: Scenario = scenario) -> Measured:
        m = measure_point(target, scn, data, plan_points(scn.load)[0], out / f"m{next(counter):04d}")
        return Measured.of(name, m)

    # calibration compares medians of short measurements: 8 windows each, enough for the quartile
    eight = scenario.load.validity.model_copy(update={"max_windows": 8})
    short = scenario.model_copy(
        update={"load": scenario.load.model_copy(update={"measure_s": 8.0, "validity": eight})}
    )

    def ratio_b_to_a(server_a: Any, server_b: Any) -> float:
        pairs = [(measure("B", server_b, short), measure("A", server_a, short)) for _ in range(3)]
        slow = np.median([b.quiet_p95(quantile) for b, _ in pairs])
        plain = np.median([a.quiet_p95(quantile) for _, a in pairs])
        return float(slow / plain)

    target_cls = TARGETS.resolve(scenario.serving.target)
    started = time.perf_counter()
    with target_cls(scenario.serving, out / "server-a") as server_a:
        server_a.start(prepared.artifact)
        # p95 stays 30-60% high for the first 10-30 s after a TorchServe start (JIT, caches)
        measure("A", server_a)
        p95_a = measure("A", server_a).quiet_p95(quantile)
        # a spin on a shared 2-core machine slows more than the handler (the spinning worker
        # takes a core from the server's other threads), so the size is found by measuring
        delay_ms = args.delay_ms or 0.7 * args.regression * p95_a
        for attempt in range(1, 7):
            if args.delay_ms:  # a fixed delay: no calibration, the achieved effect is measured below
                server_b = _slow_server(target_cls, scenario, delay_ms, out / "server-b")
                try:
                    server_b.start(prepared.artifact)
                    measure("B", server_b)  # two full measurements: past the slow first 10-30 s
                    measure("B", server_b)
                    sequence = _alternate(args.trials, measure, server_a, server_b)
                finally:
                    server_b.stop()
                break
            server_b = _slow_server(target_cls, scenario, delay_ms, out / f"server-b{attempt}")
            try:
                server_b.start(prepared.artifact)
                measure("B", server_b)  # two full measurements: past the slow first 10-30 s
                measure("B", server_b)
                ratio = ratio_b_to_a(server_a, server_b)
                print(f"calibration {attempt}: delay {delay_ms:.4f} ms -> quiet p95 x{ratio:.3f}", flush=True)
                if abs(ratio - 1 - args.regression) <= 0.2 * args.regression or attempt == 6:
                    sequence = _alternate(args.trials, measure, server_a, server_b)
                    break
            finally:
                server_b.stop()
            scale = args.regression / max(ratio - 1.0, 0.01)
            delay_ms *= min(2.0, max(0.5, scale))
    trials = [_trial(i, sequence, args) for i in range(args.trials)]
    summary = _summarize(trials, sequence, args, p95_a, delay_ms, quantile, time.perf_counter() - started)
    document = {
        "summary": summary,
        "trials": trials,
        "measurements": {k: [m.as_dict() for m in v] for k, v in sequence.items()},
    }
    (out / "summary.json").write_text(json.dumps(document, indent=1))
    _print(summary)
    print(f"measurements and summary: {out}")
    return 0


def _slow_server(target_cls: Any, scenario: Scenario, delay_ms: float, run_dir: Path) -> Any:
    options = {**scenario.serving.options, "inject_delay_ms": round(delay_ms, 4)}
    return target_cls(scenario.serving.model_copy(update={"options": options}), run_dir)


def _alternate(trials: int, measure: Any, server_a: Any, server_b: Any) -> dict[str, list[Measured]]:
    """A0 B0 A1 B1 ... : trials + 2 measurements of A and trials + 1 of B."""
    sequence: dict[str, list[Measured]] = {"A": [], "B": []}
    for i in range(trials + 2):
        sequence["A"].append(measure("A", server_a))
        if i <= trials:
            sequence["B"].append(measure("B", server_b))
        a = sequence["A"][-1].metrics.get(GATE_METRIC, float("nan"))
        b = sequence["B"][-1].metrics.get(GATE_METRIC, float("nan"))
        print(f"measurement pair {i + 1:3d}/{trials + 2}: pooled p95 A {a:.3f} ms, B {b:.3f} ms", flush=True)
    return sequence


def _trial(i: int, sequence: dict[str, list[Measured]], args: argparse.Namespace) -> dict[str, Any]:
    """Trial i: baseline A(i); A/A candidate A(i+1) confirmed by A(i+2); A/B candidate B(i) by B(i+1)."""
    a, b = sequence["A"], sequence["B"]
    baseline = a[i]
    row: dict[str, Any] = {"trial": i}
    for kind, first, again in (("aa", a[i + 1], a[i + 2]), ("ab", b[i], b[i + 1])):
        outcome: dict[str, Any] = {
            "p95_ratio": first.metrics.get(GATE_METRIC, float("nan")) / baseline.metrics[GATE_METRIC],
            "valid": first.valid and baseline.valid,
            "invalid_reasons": first.reasons + baseline.reasons,
        }
        for label, test, confirm in POLICIES:
            policy = GatePolicySpec.model_validate({"latency_test": test})
            outcome[label.strip()] = _fails(first, again, baseline, args.threshold, policy, confirm)
        for threshold in args.also_thresholds:
            outcome[f"default at {threshold}"] = _fails(
                first, again, baseline, threshold, GatePolicySpec(), True
            )
        row[kind] = outcome
    return row


def _fails(
    first: Measured,
    again: Measured,
    baseline: Measured,
    threshold: str,
    policy: GatePolicySpec,
    confirm: bool,
) -> bool:
    fails = gate_fails(first, baseline, threshold, policy)
    if confirm and fails:
        fails = gate_fails(again, baseline, threshold, policy)
    return fails


def _summarize(
    trials: list[dict[str, Any]],
    sequence: dict[str, list[Measured]],
    args: argparse.Namespace,
    p95_a: float,
    delay_ms: float,
    quantile: float,
    seconds: float,
) -> dict[str, Any]:
    def rate(kind: str, key: str) -> float:
        return sum(bool(t[kind][key]) for t in trials) / len(trials)

    aa_ratios = np.array([t["aa"]["p95_ratio"] for t in trials])
    ab_ratios = np.array([t["ab"]["p95_ratio"] for t in trials])
    quiet = {k: np.array([m.quiet_p95(quantile) for m in v]) for k, v in sequence.items()}
    labels = [label.strip() for label, _, _ in POLICIES]
    measurements = sequence["A"] + sequence["B"]
    return {
        "trials": len(trials),
        "threshold": args.threshold,
        "window_quantile": quantile,
        "reference_quiet_p95_ms": p95_a,
        "injected_delay_ms": delay_ms,
        "achieved_effect_quiet_p95": float(np.median(quiet["B"]) / np.median(quiet["A"])),
        "achieved_effect_pooled_p95_median": float(np.median(ab_ratios)),
        "aa_pooled_ratio_p1_p50_p99": [float(x) for x in np.percentile(aa_ratios, [1, 50, 99])],
        "ab_pooled_ratio_p1_p50_p99": [float(x) for x in np.percentile(ab_ratios, [1, 50, 99])],
        "policies": [
            {"policy": label, "false_alarm": rate("aa", key), "detection": rate("ab", key)}
            for (label, _, _), key in zip(POLICIES, labels, strict=True)
        ],
        "default_policy_at_other_thresholds": [
            {
                "threshold": t,
                "false_alarm": rate("aa", f"default at {t}"),
                "detection": rate("ab", f"default at {t}"),
            }
            for t in args.also_thresholds
        ],
        "invalid_measurements": sum(not m.valid for m in measurements) / len(measurements),
        "measurements": len(measurements),
        "seconds": round(seconds, 1),
    }


def _print(s: dict[str, Any]) -> None:
    print()
    print(f"{s['trials']} trials, gate {GATE_METRIC} {s['threshold']}, {s['measurements']} measurements")
    print(
        f"reference quiet p95 {s['reference_quiet_p95_ms']:.3f} ms; "
        f"injected {s['injected_delay_ms']:.4f} ms; "
        f"achieved: quiet p95 x{s['achieved_effect_quiet_p95']:.3f}, "
        f"pooled p95 x{s['achieved_effect_pooled_p95_median']:.3f} (median)"
    )
    for kind in ("aa", "ab"):
        spread = ", ".join(f"{x:.3f}" for x in s[f"{kind}_pooled_ratio_p1_p50_p99"])
        print(f"{kind[0].upper()}/{kind[1].upper()} pooled p95 ratio p1/p50/p99: {spread}")
    print(f"{'policy':<42} {'false alarms':>12} {'detection':>10}")
    for row in s["policies"]:
        print(f"{row['policy']:<42} {row['false_alarm']:>11.1%} {row['detection']:>10.1%}")
    for row in s["default_policy_at_other_thresholds"]:
        label = f"default policy, gate {row['threshold']}"
        print(f"{label:<42} {row['false_alarm']:>11.1%} {row['detection']:>10.1%}")
    print(f"INVALID measurements: {s['invalid_measurements']:.1%}")
    print(f"wall time {s['seconds']:.0f} s")


# ---- --mode ab: each trial is one `harness ab` ---------------------------------------------------

AB_FORMAT_VERSION = 3  # 2: settings hold slice_s; 3: rounds (fresh server pairs per trial)
SUITE_FLAG = Path("/tmp/harness-suite-running")  # exists while another engineer runs the test suite
KIND_CYCLE = ("aa", "ab", "ab", "aa")  # ABBA over trials: a drift of the machine hits both kinds
AB_DEFAULTS: dict[str, Any] = {
    "pairs": None,  # harness ab's default: per round, the fewest blocks that can reach alpha
    "rounds": DEFAULT_ROUNDS,
    "slot_s": 2.5,
    "slice_s": 0.5,
    "warmup_s": 1.0,
    "alpha": 0.01,
    "min_effect": 0.05,
    # a calibration must be more precise than one trial
    "calibration_pairs": 16,
}
FIRST_GUESS_DELAY_MS = 0.12
CALIBRATION_RUNS = 3
MAX_ERRORS_IN_A_ROW = 3
SETTLE_AFTER_SUITE_S = 15.0


@dataclass
class AbTrial:
    """One `run_ab` of the experiment: what head was, and what `harness ab` concluded."""

    index: int
    kind: str  # "aa" (head = identical copy), "ab" (head = injected delay) or "calibration"
    delay_ms: float  # injected into head; 0 for A/A
    pairs: int  # blocks over all rounds
    outcome: str  # the run's outcome: pass, regression, inconclusive, error
    p95_status: str | None  # regressed, improved, unchanged, inconclusive (None: not compared)
    p95_change: float | None  # head / base - 1, from the mean block log-ratio
    p95_ci_low: float | None
    p95_ci_high: float | None
    p95_p_value: float | None
    p95_threshold: float | None  # max(min effect, noise floor)
    p95_log_ratios: list[float]  # per block, log(head p95 / base p95)
    base_p95_ms: float | None  # median over base's slots
    statuses: dict[str, str]  # every comparison of the run: metric -> status
    seconds: float
    run_dir: str
    waited_s: float = 0.0  # waited for the test suite to finish before starting
    shared: bool = False  # the test suite started while the trial ran: the trial is not counted
    error: str = ""
    testbed: str = ""

    @property
    def counted(self) -> bool:
        return not self.shared and not self.error

    @property
    def regressed(self) -> list[str]:
        return [metric for metric, status in self.statuses.items() if status == "regressed"]


def _ab_main(args: argparse.Namespace) -> int:
    """Calibrate the delay (unless given or resumed), then run A/A and A/B trials interleaved."""
    document, path = _ab_document(args)
    out = path.parent
    settings = document["settings"]
    trials = [AbTrial(**t) for t in document["trials"]]

    def save() -> None:
        document["trials"] = [asdict(t) for t in trials]
        document["summary"] = _ab_summarize(document, trials)
        atomic_write_json(path, document, indent=1)

    print(f"settings: {json.dumps({k: v for k, v in settings.items() if k != 'scenario_text'})}")
    calibration = document["calibration"]
    if calibration["delay_ms"] is None:
        calibration["delay_ms"] = _calibrate(settings, out, calibration, save)
        save()
    delay_ms = calibration["delay_ms"]
    heads = {
        "aa": _head_scenario(Path(settings["scenario"]), None, out / "scenarios"),
        "ab": _head_scenario(Path(settings["scenario"]), delay_ms, out / "scenarios"),
    }
    print(f"calibration: {_calibration_text(calibration)}", flush=True)
    counted = {kind: sum(t.counted and t.kind == kind for t in trials) for kind in heads}
    goal = {kind: counted[kind] + args.trials for kind in heads}
    errors_in_a_row = 0
    while any(counted[kind] < goal[kind] for kind in heads):
        kind = KIND_CYCLE[len(trials) % len(KIND_CYCLE)]
        if counted[kind] >= goal[kind]:
            kind = "ab" if kind == "aa" else "aa"
        trial = _ab_trial(len(trials), kind, heads[kind], delay_ms if kind == "ab" else 0.0, settings, out)
        trials.append(trial)
        save()
        print(_trial_line(trial, f"{sum(counted.values()) + 1:3d}/{sum(goal.values())}"), flush=True)
        counted[kind] += trial.counted
        errors_in_a_row = errors_in_a_row + 1 if trial.error else 0
        if errors_in_a_row >= MAX_ERRORS_IN_A_ROW:
            print(f"stopping: {errors_in_a_row} trials in a row failed", file=sys.stderr)
            break
    save()
    _print_ab(document["summary"])
    print(f"trials and summary: {path}")
    return 0 if errors_in_a_row < MAX_ERRORS_IN_A_ROW else 2


def _ab_document(args: argparse.Namespace) -> tuple[dict[str, Any], Path]:
    """The summary being appended to (--resume, with its stored settings) or a new one."""
    given = {key: getattr(args, key) for key in AB_DEFAULTS}
    if args.resume is None:
        out = ROOT / "reports" / f"gate-validity-ab-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
        out.mkdir(parents=True)
        settings = {key: AB_DEFAULTS[key] if value is None else value for key, value in given.items()}
        check_rounds(settings["rounds"])
        for key in ("pairs", "calibration_pairs"):  # None: harness ab's default, recorded as a number
            settings[key] = check_pairs(settings[key], settings["alpha"], settings["rounds"])
        settings.update(
            scenario=str(args.scenario),
            scenario_text=args.scenario.read_text(encoding="utf-8"),
            regression=args.regression,
        )
        calibration = {"delay_ms": args.delay_ms, "given": args.delay_ms is not None, "attempts": []}
        document = {"format_version": AB_FORMAT_VERSION, "mode": "ab", "settings": settings}
        document.update(calibration=calibration, trials=[], summary={})
        return document, out / "summary.json"
    path = args.resume.resolve()
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"--resume {path}: {exc}") from None
    if document.get("mode") != "ab" or document.get("format_version") != AB_FORMAT_VERSION:
        raise UserError(f"--resume {path}: not a summary of --mode ab (format {AB_FORMAT_VERSION})")
    settings = document["settings"]
    for key, value in [*given.items(), ("delay_ms", args.delay_ms), ("regression", args.regression)]:
        stored = document["calibration"]["delay_ms"] if key == "delay_ms" else settings[key]
        if value is not None and value != stored:
            raise UserError(f"--resume: the run used {key} {stored}; drop the option or start a new run")
    if Path(settings["scenario"]).read_text(encoding="utf-8") != settings["scenario_text"]:
        raise UserError(f"--resume: {settings['scenario']} changed since the run began; start a new run")
    return document, path


def _calibrate(settings: dict[str, Any], out: Path, calibration: dict[str, Any], save: Any) -> float:
    """The delay that raises p95 by `regression` as `harness ab` measures it: run A/B with a guess,
    fit change = k * delay through all attempts, retry with regression / k until an attempt lands
    within 20% of the target. A spin on a shared 2-core machine slows more than the handler (the
    spinning worker takes a core from the server's other threads), so the size is found by measuring.
    An attempt that shared the machine with the test suite, or failed, is repeated."""
    target = settings["regression"]
    delay = FIRST_GUESS_DELAY_MS
    attempts: list[AbTrial] = []
    for index in range(3 * CALIBRATION_RUNS):
        if len(attempts) == CALIBRATION_RUNS:
            break
        head = _head_scenario(Path(settings["scenario"]), delay, out / "scenarios")
        pairs = settings["calibration_pairs"]
        trial = _ab_trial(index, "calibration", head, delay, settings, out, pairs)
        calibration["attempts"].append(asdict(trial))
        save()
        print(_trial_line(trial, f"calibration {len(attempts) + 1}/{CALIBRATION_RUNS}"), flush=True)
        if not trial.counted:
            continue
        attempts.append(trial)
        change = trial.p95_change
        if change is not None and abs(change - target) <= 0.2 * target:
            return delay
        fitted = [(a.delay_ms, a.p95_change) for a in attempts if a.p95_change and a.p95_change > 0]
        slope = sum(d * c for d, c in fitted) / sum(d * d for d, _ in fitted) if fitted else 0.0
        wanted = target / slope if slope > 0 else 2 * delay
        delay = round(min(2 * delay, max(0.5 * delay, wanted)), 4)
    return delay  # the fit after the last attempt, not measured on its own


def _calibration_text(calibration: dict[str, Any]) -> str:
    attempts = [AbTrial(**a) for a in calibration["attempts"]]
    steps = "; ".join(f"{a.delay_ms:.4f} ms -> p95 {_pct(a.p95_change)}" for a in attempts)
    how = "given (--delay-ms)" if calibration["given"] else f"calibrated by run_ab: {steps}"
    return f"inject_delay_ms {calibration['delay_ms']:.4f} ({how})"


def _head_scenario(base: Path, delay_ms: float | None, folder: Path) -> Path:
    """Head's scenario file: an identical copy of base (A/A), or base with the injected delay."""
    folder.mkdir(parents=True, exist_ok=True)
    if delay_ms is None:
        return Path(shutil.copyfile(base, folder / f"head-aa-{base.name}"))
    document = yaml.safe_load(base.read_text(encoding="utf-8"))
    serving = document.setdefault("serving", {})
    serving["options"] = {**(serving.get("options") or {}), "inject_delay_ms": delay_ms}
    path = folder / f"head-delay-{delay_ms:.4f}ms-{base.name}"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def _ab_trial(
    index: int,
    kind: str,
    head: Path,
    delay_ms: float,
    settings: dict[str, Any],
    out: Path,
    pairs: int | None = None,
) -> AbTrial:
    """One whole `harness ab`: both servers started afresh, ABBA blocks, the decision."""
    waited = _wait_for_suite()
    options = AbOptions(
        base_scenario=Path(settings["scenario"]),
        pairs=pairs or settings["pairs"],
        rounds=settings["rounds"],
        slot_s=settings["slot_s"],
        slice_s=settings["slice_s"],
        warmup_s=settings["warmup_s"],
        alpha=settings["alpha"],
        min_effect=settings["min_effect"],
        reports_dir=out / "runs",
        servers="both-up",
    )
    started = time.perf_counter()
    with _suite_watch() as shared:
        result = run_ab(head, options)
    seconds = time.perf_counter() - started
    variant = result.variants[0] if result.variants else None
    comparisons = variant.comparisons if variant is not None else []
    p95 = next((c for c in comparisons if c.metric == GATE_METRIC), None)
    return AbTrial(
        index=index,
        kind=kind,
        delay_ms=delay_ms,
        pairs=result.method.pairs,
        outcome=result.outcome.value,
        p95_status=p95.status if p95 else None,
        p95_change=p95.change if p95 else None,
        p95_ci_low=p95.ci_low if p95 else None,
        p95_ci_high=p95.ci_high if p95 else None,
        p95_p_value=p95.p_value if p95 else None,
        p95_threshold=p95.threshold if p95 else None,
        p95_log_ratios=_block_log_ratios(variant.slots) if variant is not None else [],
        base_p95_ms=_median_p95(variant.slots, "base") if variant is not None else None,
        statuses={c.metric: c.status for c in comparisons},
        seconds=round(seconds, 1),
        run_dir=result.run_dir,
        waited_s=round(waited, 1),
        shared=shared.is_set(),
        error=_error_of(result),
        testbed=result.testbed,
    )


def _error_of(result: AbResult) -> str:
    if result.failure is not None:
        return f"{result.failure.stage}: {result.failure.message}"
    if not result.variants:
        return "no variant compared"
    return result.variants[0].error


def _block_log_ratios(slots: list[Slot]) -> list[float]:
    values = {(s.block, s.side): s.metrics.get(GATE_METRIC) for s in slots}
    ratios = []
    for block in sorted({s.block for s in slots}):
        base, head = values.get((block, "base")), values.get((block, "head"))
        if base and head and base > 0 and head > 0:
            ratios.append(math.log(head / base))
    return ratios


def _median_p95(slots: list[Slot], side: str) -> float | None:
    values = [s.metrics[GATE_METRIC] for s in slots if s.side == side and GATE_METRIC in s.metrics]
    return float(np.median(values)) if values else None


def _wait_for_suite() -> float:
    """Wait while the test suite runs on this machine (its runner holds SUITE_FLAG); seconds waited."""
    if not SUITE_FLAG.exists():
        return 0.0
    began = time.monotonic()
    print(f"{SUITE_FLAG} exists (the test suite is running): waiting until it is gone", flush=True)
    while SUITE_FLAG.exists():
        time.sleep(10)
    time.sleep(SETTLE_AFTER_SUITE_S)  # the suite's last servers may still be shutting down
    waited = time.monotonic() - began
    print(f"{SUITE_FLAG} is gone after {waited:.0f} s: going on", flush=True)
    return waited


@contextmanager
def _suite_watch() -> Iterator[threading.Event]:
    """An event set if SUITE_FLAG exists at any moment while the block runs (polled each second)."""
    seen, done = threading.Event(), threading.Event()

    def poll() -> None:
        while not seen.is_set() and not done.is_set():
            if SUITE_FLAG.exists():
                seen.set()
            done.wait(1.0)

    watcher = threading.Thread(target=poll, name="suite-watch", daemon=True)
    watcher.start()
    try:
        yield seen
    finally:
        done.set()
        watcher.join()


def _ab_summarize(document: dict[str, Any], trials: list[AbTrial]) -> dict[str, Any]:
    """False alarms (A/A with p95 regressed), detection (A/B with p95 regressed), and the spreads."""
    counted = [t for t in trials if t.counted]
    kinds: dict[str, Any] = {}
    for kind in ("aa", "ab"):
        mine = [t for t in counted if t.kind == kind]
        changes = [t.p95_change for t in mine if t.p95_change is not None]
        kinds[kind] = {
            "trials": len(mine),
            "p95_status": {s: sum(t.p95_status == s for t in mine) for s in _P95_STATUSES},
            "any_metric_regressed": sum(bool(t.regressed) for t in mine),
            "outcomes": {o: sum(t.outcome == o for t in mine) for o in sorted({t.outcome for t in mine})},
            "p95_change_p5_p50_p95": _percentiles(changes),
        }
    seconds = [t.seconds for t in trials]
    calibration = document["calibration"]
    return {
        "false_alarms": kinds["aa"]["p95_status"]["regressed"],
        "detections": kinds["ab"]["p95_status"]["regressed"],
        "kinds": kinds,
        "p95_block_log_ratios": {kind: _spread([t for t in counted if t.kind == kind]) for kind in kinds},
        # the same blocks decided at other alphas (the CLI default is 0.01)
        "p95_regressed_at_alpha": {
            f"{alpha:g}": {
                kind: _regressed_at(alpha, [t for t in counted if t.kind == kind]) for kind in kinds
            }
            for alpha in OTHER_ALPHAS
            if alpha != document["settings"]["alpha"]
        },
        "calibration": _calibration_text(calibration) if calibration["delay_ms"] is not None else "",
        "delay_ms": calibration["delay_ms"],
        "not_counted": {
            "test_suite_started_during_trial": sum(t.shared for t in trials),
            "errors": [f"{t.kind} {t.index}: {t.error}" for t in trials if t.error],
        },
        "seconds_per_trial_median": float(np.median(seconds)) if seconds else None,
        "seconds_trials": round(sum(seconds), 1),
        "seconds_calibration": round(sum(a["seconds"] for a in calibration["attempts"]), 1),
        "seconds_waited_for_test_suite": round(sum(t.waited_s for t in trials), 1),
        "testbed": next((t.testbed for t in trials if t.testbed), ""),
    }


_P95_STATUSES = ("regressed", "inconclusive", "unchanged", "improved")
OTHER_ALPHAS = (0.01, 0.05)


def _regressed_at(alpha: float, trials: list[AbTrial]) -> int:
    """How many trials `harness ab`'s rule would call a p95 regression at `alpha`, from their stored
    block log-ratios and threshold (the blocks do not depend on alpha when --pairs is given)."""
    count = 0
    for t in trials:
        if len(t.p95_log_ratios) < 2 or t.p95_threshold is None:
            continue
        head = np.exp(np.asarray(t.p95_log_ratios))
        row = compare_blocks(
            "v", GATE_METRIC, np.ones_like(head), head, better="lower", alpha=alpha,
            min_effect=t.p95_threshold, noise_floor=None,
        )  # fmt: skip
        count += row.status == "regressed"
    return count


def _spread(trials: list[AbTrial]) -> dict[str, Any]:
    """How p95's block log-ratios scatter within a trial and how their means scatter across trials.
    Means that scatter more than the within-trial standard error explains carry a per-trial offset:
    the two servers of a run settle at their own speeds (instance bias), which more blocks cannot
    average away."""
    usable = [np.asarray(t.p95_log_ratios) for t in trials if len(t.p95_log_ratios) > 1]
    if len(usable) < 2:
        return {}
    means = np.array([r.mean() for r in usable])
    within = np.array([r.var(ddof=1) for r in usable])
    squared_errors = np.array([v / len(r) for v, r in zip(within, usable, strict=True)])
    offset = float(means.var(ddof=1) - squared_errors.mean())
    return {
        "mean_sd_across_trials": float(means.std(ddof=1)),
        "mean_min_p50_max": [float(means.min()), float(np.median(means)), float(means.max())],
        "block_sd_within_trials": float(math.sqrt(within.mean())),
        "standard_error_within_trial": float(math.sqrt(squared_errors.mean())),
        "offset_sd_across_trials": math.sqrt(offset) if offset > 0 else 0.0,
    }


def _percentiles(values: list[float]) -> list[float]:
    return [float(x) for x in np.percentile(values, [5, 50, 95])] if values else []


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1%}"


def _trial_line(t: AbTrial, label: str) -> str:
    name = {"aa": "A/A", "ab": "A/B", "calibration": "cal"}[t.kind]
    text = (
        f"{label} {name} p95 {_pct(t.p95_change):>7} CI [{_pct(t.p95_ci_low)}, {_pct(t.p95_ci_high)}] "
        f"p={t.p95_p_value if t.p95_p_value is not None else float('nan'):.3g} "
        f"{t.p95_status or 'n/a':<12} ({t.outcome}) {t.seconds:.0f} s"
    )
    others = [m for m in t.regressed if m != GATE_METRIC]
    if others:
        text += f"; also regressed: {', '.join(others)}"
    if t.shared:
        text += "; the test suite ran during this trial: not counted"
    if t.error:
        text += f"; ERROR {t.error}"
    return text


def _print_ab(s: dict[str, Any]) -> None:
    aa, ab = s["kinds"]["aa"], s["kinds"]["ab"]

    def share(k: int, n: int) -> str:
        return f"{k}/{n} ({k / n:.1%})" if n else "0/0"

    rows = [
        ("p95 regressed", aa["p95_status"]["regressed"], ab["p95_status"]["regressed"]),
        ("any metric regressed", aa["any_metric_regressed"], ab["any_metric_regressed"]),
        *(
            (f"p95 {status}", aa["p95_status"][status], ab["p95_status"][status])
            for status in _P95_STATUSES[1:]
        ),
    ]
    print()
    print(f"testbed {s['testbed']}; {s['calibration']}")
    print(f"{'':<24} {'A/A (false alarms)':>20} {'A/B (detection)':>20}")
    for label, k_aa, k_ab in rows:
        print(f"{label:<24} {share(k_aa, aa['trials']):>20} {share(k_ab, ab['trials']):>20}")
    medians = [
        (_pct(k["p95_change_p5_p50_p95"][1]) if k["p95_change_p5_p50_p95"] else "n/a") for k in (aa, ab)
    ]
    print(f"{'median p95 change':<24} {medians[0]:>20} {medians[1]:>20}")
    for kind, spread in s["p95_block_log_ratios"].items():
        if spread:
            low, mid, high = spread["mean_min_p50_max"]
            print(
                f"{kind[0].upper()}/{kind[1].upper()} p95 block log-ratios: trial means sd "
                f"{spread['mean_sd_across_trials']:.3f} (min {low:+.3f}, median {mid:+.3f}, "
                f"max {high:+.3f}); "
                f"blocks sd {spread['block_sd_within_trials']:.3f} within a trial (standard error "
                f"{spread['standard_error_within_trial']:.3f}); per-trial offset sd "
                f"{spread['offset_sd_across_trials']:.3f}"
            )
    for alpha, counts in s.get("p95_regressed_at_alpha", {}).items():
        print(
            f"{'p95 regressed, alpha ' + alpha:<24} {share(counts['aa'], aa['trials']):>20} "
            f"{share(counts['ab'], ab['trials']):>20}  (the same blocks)"
        )
    missing = s["not_counted"]
    print(
        f"not counted: {missing['test_suite_started_during_trial']} trials shared with the test suite, "
        f"{len(missing['errors'])} failed"
    )
    print(
        f"{s['seconds_per_trial_median']:.0f} s per trial (median); trials {s['seconds_trials']:.0f} s, "
        f"calibration {s['seconds_calibration']:.0f} s, waited for the test suite "
        f"{s['seconds_waited_for_test_suite']:.0f} s"
    )


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("baseline", "ab"), default="baseline")
    parser.add_argument("--trials", type=int, default=None, help="baseline: 50; ab: per kind, 30")
    parser.add_argument(
        "--scenario",
        type=Path,
        default=None,
        help="baseline: benchmarks/gate_validity.yaml; ab: benchmarks/gate_validity_ab.yaml",
    )
    parser.add_argument("--regression", type=float, default=None, help="injected p95 increase (0.15 = +15%%)")
    parser.add_argument("--threshold", default="+7.5%", help="the latency gate's threshold (min effect size)")
    parser.add_argument(
        "--delay-ms",
        type=float,
        default=None,
        help="inject this delay instead of calibrating one (each TorchServe start has its own speed, "
        "so calibrations across restarts wander by +-8%%)",
    )
    parser.add_argument(
        "--also-thresholds",
        default="+5%,+10%,+15%",
        help="other thresholds to judge the same measurements with, by the default policy",
    )
    ab = parser.add_argument_group("--mode ab (defaults apply to a new run; --resume keeps the stored ones)")
    ab.add_argument("--pairs", type=int, default=None, help="ABBA blocks per trial (default: harness ab's)")
    ab.add_argument("--slot-s", type=float, default=None, help=f"seconds per slot ({AB_DEFAULTS['slot_s']})")
    ab.add_argument(
        "--slice-s", type=float, default=None, help=f"harness ab --slice-s ({AB_DEFAULTS['slice_s']}; 0: off)"
    )
    ab.add_argument(
        "--warmup-s", type=float, default=None, help=f"warm-up of each slot ({AB_DEFAULTS['warmup_s']})"
    )
    ab.add_argument(
        "--rounds", type=int, default=None, help=f"fresh server pairs per trial ({AB_DEFAULTS['rounds']})"
    )
    ab.add_argument("--alpha", type=float, default=None, help=f"({AB_DEFAULTS['alpha']})")
    ab.add_argument("--min-effect", type=float, default=None, help=f"({AB_DEFAULTS['min_effect']})")
    ab.add_argument(
        "--calibration-pairs",
        type=int,
        default=None,
        help=f"blocks of each calibration run ({AB_DEFAULTS['calibration_pairs']})",
    )
    ab.add_argument("--resume", type=Path, default=None, help="append trials to this summary.json")
    args = parser.parse_args()
    if args.mode == "baseline":
        ab_only = [
            f"--{k.replace('_', '-')}" for k in (*AB_DEFAULTS, "resume") if getattr(args, k) is not None
        ]
        if ab_only:
            parser.error(f"{', '.join(ab_only)}: only with --mode ab")
    args.also_thresholds = [t.strip() for t in args.also_thresholds.split(",") if t.strip()]
    args.trials = args.trials if args.trials is not None else (30 if args.mode == "ab" else 50)
    if args.trials < 1:
        parser.error("--trials must be at least 1")
    default = "gate_validity_ab.yaml" if args.mode == "ab" else "gate_validity.yaml"
    args.scenario = (args.scenario or ROOT / "benchmarks" / default).resolve()
    if args.mode == "baseline" or args.resume is None:
        args.regression = 0.15 if args.regression is None else args.regression
    return args


if __name__ == "__main__":
    # SIGTERM (a cancelled job, `kill`) unwinds like Ctrl-C, so both TorchServe instances are torn down
    with interrupts_unwind():
        try:
            sys.exit(main())
        except KeyboardInterrupt as exc:  # servers are torn down by now; say why and stop
            print(f"interrupted ({exc or 'Ctrl-C'})", file=sys.stderr)
            sys.exit(130)
