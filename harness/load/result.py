"""What a load run measured: every request of the measured part, and the figures derived from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

OK = "ok"
# "exception" is an in-process call that raised; the other four are HTTP outcomes
FAILURE_CLASSES = ("connection", "timeout", "http_status", "bad_payload", "exception")
STOPPED_REASONS = ("stable", "max_windows", "measure_s")


class Sample(NamedTuple):
    """One request.

    `start_s` is when the request was due (seconds since the test started): in an open loop its
    scheduled send time, in a closed loop its actual send. `latency_ms` counts from `start_s` to
    completion, so in an open loop it includes any wait for a free in-flight slot (no coordinated
    omission). `service_ms` is actual send to completion (None in a closed loop, where it equals
    `latency_ms`). The open-loop send delay, latency - service, has two parts: `queue_ms`, waiting
    for a free slot because every slot was busy (the server's doing: it shows a stall), and
    `late_ms`, the generator's own slip past the time it should have sent (a free slot was
    waiting for the due time, or the due time had passed when the slot became free, and the
    process was still late): only the slip says the generator could not keep up.
    """

    start_s: float
    latency_ms: float
    outcome: str  # OK or one of FAILURE_CLASSES
    message: str = ""
    late_ms: float = 0.0
    service_ms: float | None = None
    target: int = 0  # which endpoint of an interleaved run (harness.load.interleave); 0 otherwise

    @property
    def queue_ms(self) -> float:
        """Open loop: time the request waited for a free in-flight slot."""
        if self.service_ms is None:
            return 0.0
        return max(0.0, self.latency_ms - self.service_ms - self.late_ms)


@dataclass
class LoadResult:
    """Requests due inside the measured windows (warm-up excluded).

    Latencies are measured by the harness per request, not Locust's rounded statistics.
    Failed requests are counted by class and never dropped.
    """

    latencies_ms: list[float]  # successful requests only, in completion order
    failures: dict[str, int]  # FAILURE_CLASSES -> count
    measure_s: float  # the measured duration actually used: windows_measured * window_s
    warmup_s: float
    generator: str  # "locust" | "native" | "threadpool"
    users: int  # closed loop: concurrent users; open loop: most requests in flight
    request_batch_size: int
    client_cpu_percent: float | None = None  # the busiest load process (% of one core), for compatibility
    warnings: list[str] = field(default_factory=list)
    failure_examples: list[str] = field(default_factory=list)
    # every request due in the measured windows, all outcomes, start times relative to the test start
    samples: list[Sample] = field(default_factory=list)
    measure_start_s: float = 0.0  # test time at which the first window begins (= warmup_s)
    window_s: float = 0.0
    mode: str = "closed"  # "closed" | "open"
    target_rate_rps: float | None = None  # open loop: the scheduled rate
    late_threshold_ms: float = 0.0  # a generator slip or a slot wait longer than this is counted
    late_count: int = 0  # requests the generator itself sent late (it could not keep up)
    max_late_ms: float = 0.0
    queued_count: int = 0  # open loop: requests that waited for a free slot (every slot was busy)
    max_queue_ms: float = 0.0
    service_latencies_ms: list[float] = field(default_factory=list)  # open loop, successful requests
    generator_cpu_percent: list[float] = field(default_factory=list)  # per load process (% of one core)
    generator_cpus: list[int] | None = None  # CPUs the local load processes may run on (affinity)
    generator_cpus_used: list[int] = field(default_factory=list)  # CPUs they were seen on while measuring
    windows_measured: int = 0
    stopped_reason: str = "measure_s"  # one of STOPPED_REASONS
    workers: int = 0  # Locust worker processes (local + remote); 0 for a single process

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
        """Successful requests per second of measured time."""
        return self.ok_count / self.measure_s if self.measure_s > 0 else 0.0

    @property
    def offered_rps(self) -> float:
        """Requests due per second of measured time, whatever their outcome."""
        return self.request_count / self.measure_s if self.measure_s > 0 else 0.0

    @property
    def error_rate(self) -> float:
        total = self.request_count
        return self.failure_count / total if total else 0.0

    @property
    def late_fraction(self) -> float:
        total = self.request_count
        return self.late_count / total if total else 0.0

    def windows(self) -> list[list[Sample]]:
        """The measured samples split into consecutive windows of `window_s`, by due time."""
        if self.window_s <= 0 or self.windows_measured <= 0:
            return [list(self.samples)]
        split: list[list[Sample]] = [[] for _ in range(self.windows_measured)]
        for s in self.samples:
            index = int((s.start_s - self.measure_start_s) // self.window_s)
            split[min(max(index, 0), self.windows_measured - 1)].append(s)
        return split
