"""The `load:` block of a scenario: load points, windows, validity and the max_rps_at_slo search."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from harness.placement import AUTO, MAX_CPU, parse_cpus
from harness.scenario.bounds import (
    MAX_BATCH,
    MAX_DURATION_S,
    MAX_LOAD_WORKERS,
    MAX_RATE_RPS,
    MAX_REMOTE_WORKERS,
    MAX_SWEEP_POINTS,
    MAX_USERS,
    PLAUSIBLE_MAX_RPS,
    StrictModel,
)

# one CPU of serving.cpus / load.cpus; a bare number is a list of one (checked_cpus)
CpuNumber = Annotated[int, Field(ge=0, le=MAX_CPU)]


class ValiditySpec(StrictModel):
    """When a measurement window counts as a result (VALID) rather than noise (INVALID)."""

    stable_windows: int = Field(
        default=3,
        ge=2,
        le=100,
        description="How many most recent windows must agree for the run to be stable (2 to 100; at "
        "most the number of windows a measurement can have).",
    )
    max_spread: float = Field(
        default=0.10,
        gt=0,
        le=100,
        description="Largest allowed (max - min) / median across those windows, for throughput and the "
        "gated latency percentile (at most 100).",
    )
    latency_floor_ms: float = Field(
        default=0.5,
        ge=0,
        le=60_000,
        description="A latency range across those windows within this many ms counts as stable, "
        "whatever its relative spread (scheduler jitter at sub-millisecond latencies); at most 60000.",
    )
    max_windows: int = Field(
        default=8,
        ge=2,
        le=1000,
        description="Stop after this many windows even if not yet stable (then INVALID); 2 to 1000.",
    )
    min_requests: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000_000,
        description="Fewest successful requests in the measured windows; default from the gated "
        "percentile (64 for p90, 130 for p95, 662 for p99, as MLPerf LoadGen's early-stopping rule "
        f"needs). Refused when more than the longest measurement can give at {PLAUSIBLE_MAX_RPS:,.0f} "
        "req/s (closed loop) or at the lowest rate_rps (open loop).",
    )
    error_budget: float = Field(
        default=0.01, ge=0, le=1, description="Largest failed-request fraction of a valid measurement."
    )
    max_generator_cpu: float = Field(
        default=0.90,
        gt=0,
        le=1,
        description="Load generator CPU (fraction of one core per process) above which it is saturated.",
    )
    max_late_fraction: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="Open loop: largest fraction of requests sent later than scheduled by more than "
        "`late_ms` before the generator counts as unable to keep up.",
    )
    late_ms: float = Field(
        default=10.0,
        gt=0,
        le=60_000,
        description="Open loop: a send this late is counted late (ms, at most 60000).",
    )


class SearchSpec(StrictModel):
    """Find the highest load whose latency percentile stays under an SLO (max_rps_at_slo)."""

    slo_ms: float = Field(gt=0, le=60_000, description="Latency objective in milliseconds (at most 60000).")
    percentile: float = Field(default=95.0, gt=0, lt=100, description="Percentile held to the SLO.")
    over: Literal["rate", "users"] = Field(
        default="rate", description="Search the open-loop request rate, or the closed-loop user count."
    )
    low: float = Field(
        default=1.0,
        gt=0,
        le=MAX_RATE_RPS,
        description="Lowest rate (req/s) or user count tried; at most high.",
    )
    high: float = Field(
        gt=0,
        le=MAX_RATE_RPS,
        description=f"Highest rate (req/s, at most {MAX_RATE_RPS:,.0f}) or user count (at most {MAX_USERS}) "
        f"tried. A rate search keeps high x slo_ms requests in flight, at most {MAX_USERS}.",
    )
    iterations: int = Field(default=6, ge=1, le=20, description="Most probes of the binary search.")
    probe_s: float = Field(
        default=5.0,
        gt=0,
        le=MAX_DURATION_S,
        description=f"Measured seconds of each probe, at most {MAX_DURATION_S:g}.",
    )

    @model_validator(mode="after")
    def _searchable_interval(self) -> SearchSpec:
        if self.low > self.high:
            raise ValueError(f"low at most high (got low {self.low:g}, high {self.high:g})")
        if self.over == "users":
            if self.high > MAX_USERS:
                raise ValueError(f"high at most {MAX_USERS} when searching over users (got {self.high:g})")
            if math.ceil(self.low) > math.floor(self.high):
                raise ValueError(f"a whole user count between low and high (got {self.low:g}..{self.high:g})")
        elif self.high * self.slo_ms / 1000.0 > MAX_USERS:
            # Little's law: the search keeps high x slo requests in flight, one slot (thread) each
            raise ValueError(
                f"high x slo_ms at most {MAX_USERS} requests in flight (got {self.high:g} req/s x "
                f"{self.slo_ms:g} ms = {self.high * self.slo_ms / 1000.0:,.0f})"
            )
        return self


class LoadSpec(StrictModel):
    mode: Literal["closed", "open"] = Field(
        default="closed",
        description="closed: `users` each send back to back; open: requests are scheduled at `rate_rps` "
        "and latency counts from the scheduled send time (no coordinated omission).",
    )
    users: int | list[int] = Field(
        default=2,
        description=f"Concurrent users (closed loop), or the most requests in flight (open loop), 1 to "
        f"{MAX_USERS}. A list (at most {MAX_SWEEP_POINTS} entries) sweeps them in order, e.g. [1, 2, 4, 8].",
    )
    rate_rps: float | list[float] | None = Field(
        default=None,
        description=f"Open loop: target requests per second, above 0 and at most {MAX_RATE_RPS:,.0f}; a list "
        f"(at most {MAX_SWEEP_POINTS} entries) sweeps them.",
    )
    arrival: Literal["constant", "poisson"] = Field(
        default="poisson", description="Open loop: evenly spaced or Poisson (exponential) gaps between sends."
    )
    spawn_rate: float = Field(
        default=10.0, gt=0, le=10_000, description="Users started per second, at most 10000."
    )
    warmup_s: float = Field(
        default=2.0,
        ge=0,
        le=MAX_DURATION_S,
        description=f"Seconds of load excluded from the statistics, at most {MAX_DURATION_S:g}.",
    )
    measure_s: float = Field(
        default=10.0,
        gt=0,
        le=MAX_DURATION_S,
        description=f"Least measured seconds (at most {MAX_DURATION_S:g}); more windows follow until stable.",
    )
    window_s: float | None = Field(
        default=None,
        gt=0,
        le=MAX_DURATION_S,
        description="Length of one measurement window; default measure_s / validity.stable_windows.",
    )
    request_batch_size: int = Field(
        default=1, ge=1, le=MAX_BATCH, description=f"Examples per request, 1 to {MAX_BATCH}."
    )
    timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="Per-request timeout, at most 600 s; slower requests are failures.",
    )
    workers: int = Field(
        default=0,
        ge=0,
        le=MAX_LOAD_WORKERS,
        description="Locust worker processes started locally under a Locust master (0: one process); "
        "at most this machine's CPU count, unless force_workers allows up to "
        f"{MAX_LOAD_WORKERS}.",
    )
    # excluded from dumps: a permission, not a setting the measurement depends on (config ids)
    force_workers: bool = Field(
        default=False,
        exclude=True,
        description="Allow `workers` above this machine's CPU count (load processes then compete for "
        "cores and the generator's CPU check usually fails the measurement).",
    )
    remote_workers: int = Field(
        default=0,
        ge=0,
        le=MAX_REMOTE_WORKERS,
        description="Locust workers started elsewhere that the master waits for (see README: "
        f"`locust --worker --master-host`); at most {MAX_REMOTE_WORKERS}.",
    )
    master_bind_host: str = Field(
        default="127.0.0.1", description="Address the Locust master listens on for workers."
    )
    master_bind_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Port the Locust master listens on; default a free port, or Locust's 5557 when "
        "remote_workers must find it.",
    )
    generator: Literal["locust", "native"] = Field(
        default="locust",
        description="What sends HTTP requests. locust (default): Locust processes, with users, "
        "workers and remote workers; native: one C process (epoll, keep-alive, prepared requests) "
        "built from source with the machine's C compiler on first use, for a client that costs "
        "the server's machine far less CPU per request; plain HTTP only, no workers.",
    )
    client: Literal["lean", "fasthttp"] = Field(
        default="lean",
        description="Each Locust user's HTTP client. lean (default): a keep-alive socket that sends "
        "prepared request bytes and reads the response, with no Locust request event or statistics "
        "per request (https falls back to fasthttp); fasthttp: Locust's FastHttpSession, whose "
        "statistics also fill locust_stats.csv.",
    )
    cpus: str | CpuNumber | list[CpuNumber] = Field(
        default=AUTO,
        description="CPUs the local Locust processes may run on: 'auto' (default: on 2 or more CPUs, "
        "one per local Locust process, at most half, disjoint from the server's), 'any' (not placed), "
        "or a CPU list such as '1', '2-3' or [2, 3]. Remote workers are not placed.",
    )
    validity: ValiditySpec = Field(default_factory=ValiditySpec, description="Window validity rules.")
    search: SearchSpec | None = Field(
        default=None, description="Also search for max_rps_at_slo (after the regular measurement)."
    )

    @field_validator("cpus", mode="before")
    @classmethod
    def _cpus(cls, value: object) -> object:
        return checked_cpus(value)

    @field_validator("users")
    @classmethod
    def _positive_users(cls, users: int | list[int]) -> int | list[int]:
        values = users if isinstance(users, list) else [users]
        if not values or len(values) > MAX_SWEEP_POINTS or any(not 1 <= u <= MAX_USERS for u in values):
            raise ValueError(
                f"a user count from 1 to {MAX_USERS}, or a list of 1 to {MAX_SWEEP_POINTS} of them"
            )
        return users

    @field_validator("rate_rps")
    @classmethod
    def _positive_rates(cls, rate: float | list[float] | None) -> float | list[float] | None:
        values = [] if rate is None else rate if isinstance(rate, list) else [rate]
        if (isinstance(rate, list) and not 1 <= len(rate) <= MAX_SWEEP_POINTS) or any(
            not 0 < r <= MAX_RATE_RPS for r in values
        ):
            raise ValueError(
                f"a rate above 0 and at most {MAX_RATE_RPS:,.0f} req/s, or a list of 1 to "
                f"{MAX_SWEEP_POINTS} of them"
            )
        return rate

    @model_validator(mode="after")
    def _open_loop_needs_rate(self) -> LoadSpec:
        if self.mode == "open" and self.rate_rps is None:
            raise ValueError("mode 'open' needs rate_rps (requests per second)")
        if self.mode == "closed" and self.rate_rps is not None:
            raise ValueError("rate_rps applies to mode 'open'; closed-loop load is set by users")
        if isinstance(self.users, list) and isinstance(self.rate_rps, list):
            raise ValueError("sweep users or rate_rps, not both")
        if self.generator == "native" and (self.workers or self.remote_workers):
            raise ValueError(
                "generator 'native' is one process: workers and remote_workers are Locust's "
                "distributed mode (use generator: locust for them)"
            )
        if self.generator == "native" and self.client != "lean":
            raise ValueError(
                f"client '{self.client}' is a Locust user's HTTP client; generator 'native' has its own"
            )
        most = self.window_counts()[1]
        if self.validity.stable_windows > most:
            raise ValueError(
                f"validity.stable_windows ({self.validity.stable_windows}) at most the windows a "
                f"measurement can have: max(validity.max_windows, measure_s / window_s) = {most}"
            )
        min_requests = self.validity.min_requests
        if min_requests is not None and min_requests > self.most_requests():
            rate = f"{min(self.rates()):g}" if self.mode == "open" else f"{PLAUSIBLE_MAX_RPS:,.0f}"
            raise ValueError(
                f"validity.min_requests at most {self.most_requests():,} (the longest measurement, "
                f"{most} windows of {self.effective_window_s():g} s, at {rate} req/s), got {min_requests:,}"
            )
        return self

    def user_counts(self) -> list[int]:
        return list(self.users) if isinstance(self.users, list) else [self.users]

    def rates(self) -> list[float]:
        if self.rate_rps is None:
            return []
        return list(self.rate_rps) if isinstance(self.rate_rps, list) else [self.rate_rps]

    def effective_window_s(self) -> float:
        return self.window_s or self.measure_s / self.validity.stable_windows

    def window_counts(self) -> tuple[int, int]:
        """Fewest windows (enough to cover measure_s) and most (validity.max_windows, if more)."""
        least = max(1, math.ceil(self.measure_s / self.effective_window_s() - 1e-9))
        return least, max(least, self.validity.max_windows)

    def longest_measure_s(self) -> float:
        """Measured seconds of one load point when it never becomes stable."""
        return self.window_counts()[1] * self.effective_window_s()

    def most_requests(self) -> int:
        """Most requests one load point can measure: open loop at its lowest rate (plus ten standard
        deviations of a Poisson count), closed loop at PLAUSIBLE_MAX_RPS."""
        seconds = self.longest_measure_s()
        if self.mode == "open" and self.rates():
            expected = min(self.rates()) * seconds
            return math.ceil(expected + (10 * math.sqrt(expected) + 10 if self.arrival == "poisson" else 1))
        return math.ceil(PLAUSIBLE_MAX_RPS * seconds)


def checked_cpus(value: object) -> object:
    """`serving.cpus` / `load.cpus` as written once `parse_cpus` accepts it (its ValueError says why
    not); a bare number (YAML `cpus: 1`) is that one CPU; other types are left to the type check."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, str | list):
        parse_cpus(value)
    return value
