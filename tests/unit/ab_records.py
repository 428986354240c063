"""Sample A/B records for tests, built from the typed record (harness.ab.record).

`make_ab()` is a finished A/B run of three variants measured in six ABBA blocks: reference (no
change), pruned (latency p95 and throughput regressed) and int8 (latency improved, accuracy
could not be decided). `make_passing_ab`, `make_inconclusive_ab`, `make_broken_ab` and
`make_wide_ab` vary it. Every number is fixed, so renderings are stable enough for golden files.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.ab.record import (
    AbMethod,
    AbResult,
    ChangeStatus,
    Comparison,
    Side,
    SideName,
    Slot,
    VariantComparison,
)
from harness.results import RunFailure

RUN_DIR = "/srv/reports/ab/20250102-030405-ab-digits-1a2b"
BASE_SHA = "0123456789abcdef0123456789abcdef01234567"
HEAD_SHA = "fedcba9876543210fedcba9876543210fedcba98"
ORDER = "AB BA BA AB AB BA"
PAIRS = 6


def method(**overrides: object) -> AbMethod:
    values: dict[str, object] = {
        "alpha": 0.05,
        "min_effect": 0.05,
        "pairs": PAIRS,
        "order": ORDER,
        "slot_s": 10.0,
        "warmup_s": 2.0,
        "bootstrap_resamples": 10_000,
        "best_reachable_alpha": 0.03125,
        "servers": "both-up",
        "servers_reason": "both servers fit in memory (2 x 310 MiB of 15.6 GiB available)",
        "aa_pairs": 2,
    }
    values.update(overrides)
    return AbMethod(**values)  # type: ignore[arg-type]


def slots(
    base: Sequence[float], head: Sequence[float], *, throughput: float = 480.0, slowdown: float = 0.0
) -> list[Slot]:
    """One slot per side per block, in ABBA order: p95 from `base`/`head`, the other figures derived.

    `slowdown` lowers the head's throughput by that fraction (a slower server serves less)."""
    out: list[Slot] = []
    for block, (b, h) in enumerate(zip(base, head, strict=True)):
        order: tuple[SideName, SideName] = ("base", "head")
        if ORDER.split()[block % len(ORDER.split())][0] != "A":
            order = ("head", "base")
        for position, side in enumerate(order):
            p95 = b if side == "base" else h
            tp = throughput * (1 - (slowdown if side == "head" else 0.0)) * (1 + 0.004 * ((block % 3) - 1))
            out.append(
                Slot(
                    block=block,
                    side=side,
                    position=position,
                    metrics={
                        "latency_p50_ms": round(p95 * 0.62, 4),
                        "latency_p95_ms": p95,
                        "latency_p99_ms": round(p95 * 1.35, 4),
                        "throughput_rps": round(tp, 3),
                        "error_rate": 0.0,
                    },
                    requests=int(tp * 10),
                    failures=0,
                    started_s=24.0 * block + 12.0 * position,
                )
            )
    return out


def comparison(
    variant: str,
    metric: str,
    status: ChangeStatus,
    base: float | None,
    head: float | None,
    ci: tuple[float | None, float | None],
    *,
    kind: str = "relative",
    test: str = "block log-ratio bootstrap",
    n: int = PAIRS,
    p_value: float | None = None,
    threshold: float = 0.05,
    noise_floor: float | None = None,
    better: str = "lower",
    message: str = "",
) -> Comparison:
    if base is None or head is None:
        change = None
    elif kind == "relative":
        change = head / base - 1
    else:
        change = head - base
    return Comparison(
        variant=variant,
        metric=metric,
        base_value=base,
        head_value=head,
        change=change,
        change_kind=kind,  # type: ignore[arg-type]
        ci_low=ci[0],
        ci_high=ci[1],
        threshold=threshold,
        min_effect=0.05 if kind == "relative" else threshold,
        noise_floor=noise_floor,
        status=status,
        test=test,
        n=n,
        message=message or f"{metric} {status}",
        p_value=p_value,
        better=better,  # type: ignore[arg-type]
    )


def _reference() -> VariantComparison:
    name = "reference"
    return VariantComparison(
        name=name,
        base_metrics={"model_size_bytes": 110_000, "accuracy": 0.9583},
        head_metrics={"model_size_bytes": 110_000, "accuracy": 0.9583},
        slots=slots([2.31, 2.35, 2.29, 2.33, 2.30, 2.34], [2.32, 2.33, 2.31, 2.35, 2.29, 2.33]),
        noise_floor={"latency_p95_ms": 0.031, "throughput_rps": 0.02},
        noise_floor_source="aa-blocks",
        comparisons=[
            comparison(name, "latency_p95_ms", "unchanged", 2.32, 2.322, (-0.011, 0.014), p_value=0.81),
            comparison(
                name,
                "throughput_rps",
                "unchanged",
                480.0,
                479.1,
                (-0.009, 0.006),
                better="higher",
                p_value=0.62,
            ),
            comparison(
                name,
                "accuracy",
                "unchanged",
                0.9583,
                0.9583,
                (0.0, 0.0),
                kind="absolute",
                test="McNemar exact",
                n=360,
                p_value=1.0,
                threshold=0.01,
                better="higher",
            ),
        ],
    )


def _pruned() -> VariantComparison:
    name = "pruned"
    base = [2.30, 2.34, 2.28, 2.33, 2.31, 2.35]
    head = [round(b * 1.182, 4) for b in base]
    return VariantComparison(
        name=name,
        base_metrics={"model_size_bytes": 110_000, "accuracy": 0.9556},
        head_metrics={"model_size_bytes": 61_000, "accuracy": 0.9528},
        slots=slots(base, head, slowdown=0.09),
        noise_floor={"latency_p95_ms": 0.031, "throughput_rps": 0.02},
        noise_floor_source="aa-blocks",
        comparisons=[
            comparison(
                name,
                "latency_p95_ms",
                "regressed",
                2.318,
                2.740,
                (0.121, 0.240),
                p_value=0.0312,
                noise_floor=0.031,
                message="latency_p95_ms +18.2% [+12.1%, +24.0%] beyond the 5% threshold",
            ),
            comparison(
                name,
                "throughput_rps",
                "regressed",
                480.0,
                436.8,
                (-0.12, -0.061),
                p_value=0.0312,
                better="higher",
                noise_floor=0.02,
                message="throughput_rps -9.0% [-12.0%, -6.1%] beyond the 5% threshold",
            ),
            comparison(
                name,
                "model_size_bytes",
                "improved",
                110_000,
                61_000,
                (None, None),
                test="exact",
                n=1,
                message="model_size_bytes -44.5%",
            ),
            comparison(
                name,
                "accuracy",
                "unchanged",
                0.9556,
                0.9528,
                (-0.0083, 0.0028),
                kind="absolute",
                test="McNemar exact",
                n=360,
                p_value=0.5,
                threshold=0.01,
                better="higher",
            ),
        ],
    )


def _int8() -> VariantComparison:
    name = "int8"
    base = [2.40, 2.44, 2.39, 2.42, 2.41, 2.45]
    head = [round(b * 0.88, 4) for b in base]
    return VariantComparison(
        name=name,
        base_metrics={"model_size_bytes": 32_000, "accuracy": 0.9556},
        head_metrics={"model_size_bytes": 32_000, "accuracy": 0.9500},
        slots=slots(base, head, slowdown=-0.05),
        noise_floor={},
        noise_floor_source="none",
        comparisons=[
            comparison(
                name,
                "latency_p95_ms",
                "improved",
                2.418,
                2.128,
                (-0.151, -0.088),
                p_value=0.0312,
                message="latency_p95_ms -12.0% [-15.1%, -8.8%]",
            ),
            comparison(
                name,
                "accuracy",
                "inconclusive",
                0.9556,
                0.9500,
                (-0.0151, 0.0039),
                kind="absolute",
                test="McNemar exact",
                n=360,
                p_value=0.29,
                threshold=0.01,
                better="higher",
                message="accuracy -0.56 pp [-1.51 pp, +0.39 pp]: the interval spans the 1.00 pp threshold",
            ),
            comparison(
                name,
                "throughput_rps",
                "unchanged",
                480.0,
                503.9,
                (-0.01, 0.09),
                better="higher",
                p_value=0.09,
            ),
        ],
    )


def make_ab(**overrides: object) -> AbResult:
    """The three-variant A/B run described in the module docstring (outcome: regression)."""
    values: dict[str, object] = {
        "run_id": "20250102-030405-ab-digits-1a2b",
        "scenario_name": "digits-quickstart",
        "started_at": "2025-01-02T03:04:05+00:00",
        "finished_at": "2025-01-02T03:09:41+00:00",
        "base": Side(
            name="base",
            ref="origin/main",
            sha=BASE_SHA,
            scenario_file="scenarios/quickstart.yaml",
            data_fingerprint="9f2c0e1d4b7a",
        ),
        "head": Side(
            name="head",
            ref="working tree",
            sha=HEAD_SHA,
            dirty=True,
            scenario_file="scenarios/quickstart.yaml",
            data_fingerprint="9f2c0e1d4b7a",
        ),
        "method": method(),
        "testbed": "github-ubuntu-24.04",
        "environment": {"cpu_model": "AMD EPYC 7763 64-Core Processor", "logical_cores": 4},
        "variants": [_reference(), _pruned(), _int8()],
        "run_dir": RUN_DIR,
    }
    values.update(overrides)
    return AbResult(**values)  # type: ignore[arg-type]


def make_passing_ab() -> AbResult:
    """No regression and nothing undecided: int8 improved, the rest did not change."""
    ab = make_ab()
    ab.variants = [_reference(), _int8()]
    for c in ab.variants[1].comparisons:
        if c.status == "inconclusive":
            c.status = "unchanged"
    return ab


def make_inconclusive_ab(policy: str = "fail") -> AbResult:
    """int8's accuracy could not be decided; nothing regressed."""
    ab = make_ab(inconclusive=policy)
    ab.variants = [_reference(), _int8()]
    return ab


def make_broken_ab() -> AbResult:
    """The head side failed to start its server: the run broke."""
    return make_ab(
        variants=[],
        failure=RunFailure(
            stage="serve head",
            variant="pruned",
            message="torchserve did not become ready within 60 s\nsee the log",
            log="head/logs/torchserve.log",
            log_tail="2025-01-02 03:05:00 INFO loading model\njava.lang.OutOfMemoryError: Java heap space\n",
        ),
    )


def make_wide_ab(variants: int, *, name_length: int = 12, changed: bool = True) -> AbResult:
    """`variants` variants with names `name_length` characters long, each with a regressed latency
    (when `changed`) and an unchanged throughput: for the size limits of the PR comment."""
    out = []
    for i in range(variants):
        name = f"v{i:04d}-" + "x" * max(name_length - 6, 0)
        status: ChangeStatus = "regressed" if changed else "unchanged"
        comparisons = [
            comparison(
                name, "latency_p95_ms", status, 2.0, 2.0 * (1.1 + i / 1000), (0.06, 0.15), p_value=0.03
            ),
            comparison(name, "throughput_rps", "unchanged", 500.0, 499.0, (-0.01, 0.01), better="higher"),
        ]
        out.append(
            VariantComparison(
                name=name,
                slots=slots([2.0] * PAIRS, [2.2] * PAIRS),
                noise_floor={"latency_p95_ms": 0.03},
                noise_floor_source="history",
                comparisons=comparisons,
            )
        )
    return make_ab(variants=out)
