"""Small typed records for tests: measurements and verdicts without serving anything."""

from __future__ import annotations

from harness.baselines import histogram
from harness.results import LoadPointResult, Measurement, Validity, Verdict, VerdictStatus


def point(
    *, valid: bool = True, latencies: tuple[float, ...] = (1.0, 1.2, 1.1), reasons=()
) -> LoadPointResult:
    return LoadPointResult(
        label="4 users",
        users=4,
        rate_rps=None,
        metrics={
            "latency_p95_ms": max(latencies) if latencies else 0.0,
            "throughput_rps": 100.0,
            "error_rate": 0.0,
        },
        validity=Validity(valid=valid, reasons=list(reasons) or ([] if valid else ["p95 spread 40% > 10%"])),
        latency_histogram=histogram.encode(list(latencies)) if latencies else "",
    )


def verdict(metric: str, status: VerdictStatus, number: int = 1, variant: str = "v") -> Verdict:
    return Verdict(
        variant=variant,
        metric=metric,
        threshold="+10%",
        current=1.0,
        baseline=1.0,
        limit=1.1,
        status=status,
        message=f"{metric} {status}",
        measurement=number,
    )


def measurement(
    number: int = 1, *, valid: bool = True, verdicts=(), latencies=(1.0, 1.2, 1.1)
) -> Measurement:
    p = point(valid=valid, latencies=latencies)
    return Measurement(
        number=number,
        accuracy=0.97,
        predictions=[1, 2, 3],
        points=[p],
        metrics={"accuracy": 0.97, "model_size_bytes": 1000.0, **p.metrics},
        verdicts=list(verdicts),
    )
