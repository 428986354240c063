"""What a load run measured, in exact per-request latencies."""

from __future__ import annotations

from dataclasses import dataclass, field

# "exception" is an in-process call that raised; the other four are HTTP outcomes
FAILURE_CLASSES = ("connection", "timeout", "http_status", "bad_payload", "exception")


@dataclass
class LoadResult:
    """Requests inside the measurement window (warm-up excluded).

    Latencies are measured by the harness per request, not Locust's rounded statistics.
    Failed requests are counted by class and never dropped.
    """

    latencies_ms: list[float]  # successful requests only, in completion order
    failures: dict[str, int]  # FAILURE_CLASSES -> count
    measure_s: float
    warmup_s: float
    generator: str  # "locust" | "threadpool"
    users: int
    request_batch_size: int
    client_cpu_percent: float | None = None  # of one core, averaged over the window
    warnings: list[str] = field(default_factory=list)
    failure_examples: list[str] = field(default_factory=list)

    @property
    def ok_count(self) -> int:
        return len(self.latencies_ms)

    @property
    def failure_count(self) -> int:
        return sum(self.failures.values())

    @property
    def request_count(self) -> int:
        return self.ok_count + self.failure_count

    @property
    def throughput_rps(self) -> float:
        return self.ok_count / self.measure_s if self.measure_s > 0 else 0.0

    @property
    def error_rate(self) -> float:
        total = self.request_count
        return self.failure_count / total if total else 0.0
