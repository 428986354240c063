"""The scenario file schema. Every field is described; unknown keys are errors."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

REFERENCE_VARIANT = "reference"
# names become file and folder names: no leading dot, no separators
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(StrictModel):
    framework: Literal["torch", "tensorflow"] = Field(
        description="Framework of the model; its recipes are named torch.* or tf.*."
    )
    source: str = Field(
        description="'builtin:mlp' (both frameworks) or 'builtin:cnn' (tensorflow) for a built-in "
        "reference model trained on digits, or a path relative to the scenario file: TorchScript "
        "(.pt/.ts) or torch.export (.pt2) for torch; a SavedModel folder or a .keras/.h5 file for tensorflow."
    )
    dataset: Literal["digits"] = Field(
        default="digits", description="Evaluation dataset: scikit-learn's bundled digits (8x8, 10 classes)."
    )
    seed: int = Field(default=0, description="Seed for the train/test split and built-in model training.")

    @property
    def is_builtin(self) -> bool:
        return self.source.startswith("builtin:")


class RecipeStep(StrictModel):
    recipe: str = Field(
        description="Registered recipe name, e.g. torch.prune or torch.int8 (see `harness list`)."
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Parameters of the recipe.")


class VariantSpec(StrictModel):
    name: str = Field(description="Variant name, unique within the scenario.", pattern=NAME_PATTERN)
    steps: list[RecipeStep] = Field(default_factory=list, description="Compression steps, applied in order.")


class ServingSpec(StrictModel):
    target: str = Field(
        description="Registered serving target: torchserve, tfserving or inprocess (see `harness list`)."
    )
    workers: int = Field(default=1, ge=1, description="Model workers (TorchServe) or threads (inprocess).")
    batch_size: int = Field(default=1, ge=1, description="Server-side dynamic batch size.")
    max_batch_delay_ms: int = Field(default=5, ge=0, description="Longest wait to fill a server-side batch.")
    startup_timeout_s: float = Field(
        default=120.0, gt=0, description="Deadline for the server to become ready."
    )
    options: dict[str, Any] = Field(default_factory=dict, description="Target-specific options.")


class ValiditySpec(StrictModel):
    """When a measurement window counts as a result (VALID) rather than noise (INVALID)."""

    stable_windows: int = Field(
        default=3, ge=2, description="How many most recent windows must agree for the run to be stable."
    )
    max_spread: float = Field(
        default=0.10,
        gt=0,
        description="Largest allowed (max - min) / median across those windows, for throughput and the "
        "gated latency percentile.",
    )
    latency_floor_ms: float = Field(
        default=0.5,
        ge=0,
        description="A latency range across those windows within this many ms counts as stable, "
        "whatever its relative spread (scheduler jitter at sub-millisecond latencies).",
    )
    max_windows: int = Field(
        default=8, ge=2, description="Stop after this many windows even if not yet stable (then INVALID)."
    )
    min_requests: int | None = Field(
        default=None,
        ge=1,
        description="Fewest successful requests in the measured windows; default from the gated "
        "percentile (64 for p90, 662 for p99, as MLPerf LoadGen's early-stopping rule needs).",
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
    late_ms: float = Field(default=10.0, gt=0, description="Open loop: a send this late is counted late.")


class SearchSpec(StrictModel):
    """Find the highest load whose latency percentile stays under an SLO (max_rps_at_slo)."""

    slo_ms: float = Field(gt=0, description="Latency objective in milliseconds.")
    percentile: float = Field(default=95.0, gt=0, lt=100, description="Percentile held to the SLO.")
    over: Literal["rate", "users"] = Field(
        default="rate", description="Search the open-loop request rate, or the closed-loop user count."
    )
    low: float = Field(default=1.0, gt=0, description="Lowest rate (req/s) or user count tried.")
    high: float = Field(gt=0, description="Highest rate (req/s) or user count tried.")
    iterations: int = Field(default=6, ge=1, le=20, description="Most probes of the binary search.")
    probe_s: float = Field(default=5.0, gt=0, description="Measured seconds of each probe.")


class LoadSpec(StrictModel):
    mode: Literal["closed", "open"] = Field(
        default="closed",
        description="closed: `users` each send back to back; open: requests are scheduled at `rate_rps` "
        "and latency counts from the scheduled send time (no coordinated omission).",
    )
    users: int | list[int] = Field(
        default=2,
        description="Concurrent users (closed loop), or the most requests in flight (open loop). A list "
        "sweeps them in order, e.g. [1, 2, 4, 8].",
    )
    rate_rps: float | list[float] | None = Field(
        default=None, description="Open loop: target requests per second; a list sweeps them."
    )
    arrival: Literal["constant", "poisson"] = Field(
        default="poisson", description="Open loop: evenly spaced or Poisson (exponential) gaps between sends."
    )
    spawn_rate: float = Field(default=10.0, gt=0, description="Users started per second.")
    warmup_s: float = Field(default=2.0, ge=0, description="Seconds of load excluded from the statistics.")
    measure_s: float = Field(
        default=10.0, gt=0, description="Least measured seconds; more windows follow until stable."
    )
    window_s: float | None = Field(
        default=None,
        gt=0,
        description="Length of one measurement window; default measure_s / validity.stable_windows.",
    )
    request_batch_size: int = Field(default=1, ge=1, description="Examples per request.")
    timeout_s: float = Field(
        default=10.0, gt=0, description="Per-request timeout; slower requests are failures."
    )
    workers: int = Field(
        default=0,
        ge=0,
        description="Locust worker processes started locally under a Locust master (0: one process).",
    )
    remote_workers: int = Field(
        default=0,
        ge=0,
        description="Locust workers started elsewhere that the master waits for (see README: "
        "`locust --worker --master-host`).",
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
    validity: ValiditySpec = Field(default_factory=ValiditySpec, description="Window validity rules.")
    search: SearchSpec | None = Field(
        default=None, description="Also search for max_rps_at_slo (after the regular measurement)."
    )

    @field_validator("users")
    @classmethod
    def _positive_users(cls, users: int | list[int]) -> int | list[int]:
        values = users if isinstance(users, list) else [users]
        if not values or any(u < 1 for u in values):
            raise ValueError("a user count of at least 1, or a non-empty list of them")
        return users

    @field_validator("rate_rps")
    @classmethod
    def _positive_rates(cls, rate: float | list[float] | None) -> float | list[float] | None:
        values = [] if rate is None else rate if isinstance(rate, list) else [rate]
        if (isinstance(rate, list) and not rate) or any(r <= 0 for r in values):
            raise ValueError("a rate above 0 req/s, or a non-empty list of them")
        return rate

    @model_validator(mode="after")
    def _open_loop_needs_rate(self) -> LoadSpec:
        if self.mode == "open" and self.rate_rps is None:
            raise ValueError("mode 'open' needs rate_rps (requests per second)")
        if self.mode == "closed" and self.rate_rps is not None:
            raise ValueError("rate_rps applies to mode 'open'; closed-loop load is set by users")
        if isinstance(self.users, list) and isinstance(self.rate_rps, list):
            raise ValueError("sweep users or rate_rps, not both")
        return self

    def user_counts(self) -> list[int]:
        return list(self.users) if isinstance(self.users, list) else [self.users]

    def rates(self) -> list[float]:
        if self.rate_rps is None:
            return []
        return list(self.rate_rps) if isinstance(self.rate_rps, list) else [self.rate_rps]

    def effective_window_s(self) -> float:
        return self.window_s or self.measure_s / self.validity.stable_windows


class GatePolicySpec(StrictModel):
    """How a threshold breach becomes a verdict: significance, effect size and confirmation."""

    alpha: float = Field(
        default=0.01, gt=0, lt=0.5, description="Significance level of the latency and accuracy tests."
    )
    latency_test: Literal["windows", "mannwhitney", "bootstrap", "none"] = Field(
        default="windows",
        description="Test on the stored latency samples. 'windows' compares the lower quartile "
        "(window_quantile) of the per-window percentiles with a bootstrap over windows, robust to "
        "bursts of interference; with fewer than 8 windows on a side it falls back to "
        "'mannwhitney' (a rank test over requests). 'bootstrap' resamples requests for the "
        "percentile ratio; 'none' compares the percentiles alone. A latency regression needs "
        "both significance and a change beyond the gate's threshold.",
    )
    window_quantile: float = Field(
        default=25.0,
        gt=0,
        lt=100,
        description="Which percentile of the per-window values the window test compares (25: "
        "the quieter windows).",
    )
    bootstrap_resamples: int = Field(default=2000, ge=100, description="Resamples of the bootstrap test.")
    confirm_runs: int = Field(
        default=1,
        ge=0,
        description="Re-measurements of a variant whose gate failed; it fails only if every one fails too.",
    )


class Scenario(StrictModel):
    name: str = Field(description="Scenario name; also names its baseline file.", pattern=NAME_PATTERN)
    description: str = Field(default="", description="Free text shown in the report.")
    model: ModelSpec = Field(description="The model under test.")
    variants: list[VariantSpec] = Field(
        default_factory=list,
        description="Compressed variants. An uncompressed 'reference' variant is always measured first.",
    )
    serving: ServingSpec = Field(description="Where the variants are served.")
    load: LoadSpec = Field(default_factory=LoadSpec, description="The load profile.")
    gate_policy: GatePolicySpec = Field(
        default_factory=GatePolicySpec, description="Statistics applied to the gates."
    )
    gates: dict[str, str | int | float] = Field(
        default_factory=dict,
        description="Per-metric thresholds, e.g. latency_p95_ms: '+10%', accuracy: '-0.01 abs', "
        "error_rate: 0.",
    )

    @field_validator("gates", mode="before")
    @classmethod
    def _thresholds_are_text_or_numbers(cls, gates: Any) -> Any:
        # checked before pydantic's coercion, which would turn YAML `true` into a limit of 1
        if isinstance(gates, dict):
            for metric, value in gates.items():
                if isinstance(value, bool) or not isinstance(value, str | int | float):
                    raise ValueError(
                        f"a threshold for {metric!r} like '+10%', '-0.01 abs' or a number, got {value!r}"
                    )
        return gates

    @field_validator("variants")
    @classmethod
    def _unique_names(cls, variants: list[VariantSpec]) -> list[VariantSpec]:
        seen: set[str] = set()
        for v in variants:
            if v.name in seen:
                raise ValueError(f"variant name {v.name!r} is used twice")
            seen.add(v.name)
        return variants

    @model_validator(mode="after")
    def _reference_is_uncompressed(self) -> Scenario:
        for v in self.variants:
            if v.name == REFERENCE_VARIANT and v.steps:
                raise ValueError(
                    f"the {REFERENCE_VARIANT!r} variant is the uncompressed model and takes no steps"
                )
        return self

    def all_variants(self) -> list[VariantSpec]:
        """The reference variant first, then the declared ones."""
        declared = [v for v in self.variants if v.name != REFERENCE_VARIANT]
        return [VariantSpec(name=REFERENCE_VARIANT, steps=[]), *declared]
