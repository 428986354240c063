"""The scenario file schema. Every field is described; unknown keys are errors.

Every number has a finite upper bound, stated in its description: a scenario must not be able to
exhaust the machine (memory, processes, wall time) by a typo. NaN and infinities are refused, and
so are YAML booleans where a number is expected (`users: yes` is not 1).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.json_schema import GetJsonSchemaHandler, JsonSchemaValue
from pydantic_core import CoreSchema

from harness.compression.params import PARAMS
from harness.serving.registry import TARGET_DESCRIPTIONS

REFERENCE_VARIANT = "reference"
# names become file and folder names: no leading dot, no separators
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"

# Upper bounds. Generous for any real scenario, small enough that a typo cannot exhaust the machine.
MAX_DURATION_S = 3600.0  # any one warm-up, measurement, window, probe or startup deadline
MAX_USERS = 1000  # concurrent users / in-flight requests of one load point (one thread each in-process)
MAX_RATE_RPS = 100_000.0  # open-loop request rate, and the highest rate a search may try
# Fastest rate any target could plausibly serve (10x the fastest measured here, TFLite in-process at
# ~106k calls/s): a `min_requests` that this rate cannot reach in the longest measurement is refused.
PLAUSIBLE_MAX_RPS = 1_000_000.0
MAX_BATCH = 1024  # examples in one request, or in one server-side batch
MAX_SWEEP_POINTS = 64  # entries of a users or rate_rps list
MAX_VARIANTS = 32
MAX_STEPS = 8  # compression steps of one variant
MAX_LOAD_WORKERS = 256  # local Locust worker processes, with force_workers; else os.cpu_count()
MAX_REMOTE_WORKERS = 1000
MAX_SEED = 2**32 - 1  # numpy and scikit-learn seeds are 32-bit

# Allowances of `Scenario.deadline_s` for the stages whose length the scenario does not state.
BASE_ALLOWANCE_S = 300.0  # build or train the reference model, export it, write the report
STEP_ALLOWANCE_S = 300.0  # one compression step, including its fine-tuning or distillation
VARIANT_ALLOWANCE_S = 120.0  # export, in-process and served accuracy, server-metric scrapes
POINT_ALLOWANCE_S = 30.0  # one load point: starting and stopping the load generator


class StrictModel(BaseModel):
    """Base of the scenario models: unknown keys are errors, numbers are finite and not booleans."""

    # strict: YAML `yes` is not the number 1, nor 2.0 a user count; ints are still accepted as floats
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


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
    seed: int = Field(
        default=0,
        ge=0,
        le=MAX_SEED,
        description=f"Seed for the train/test split and built-in model training (0 to {MAX_SEED}).",
    )

    @property
    def is_builtin(self) -> bool:
        return self.source.startswith("builtin:")


def resolve_source(source: str, scenario_dir: Path) -> Path:
    """User model paths are relative to the scenario file's folder, so scenarios run from anywhere."""
    path = Path(source).expanduser()
    return path if path.is_absolute() else (Path(scenario_dir) / path).resolve()


class RecipeStep(StrictModel):
    """One compression step: a recipe and its parameters.

    `params` stays the mapping written in the file (the variant's configuration id hashes it); the
    loader validates it against the recipe's params model. In the JSON Schema a step is a union
    discriminated by `recipe`, one branch per built-in recipe with its params model, so editors
    complete and check params. Recipes added by plugins (entry points) fall in a last branch whose
    params are any mapping: their params model is only known once their class is imported, which
    `harness validate` does, but the schema does not.
    """

    recipe: str = Field(
        description="Registered recipe name, e.g. torch.prune or torch.int8 (see `harness list`)."
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Parameters of the recipe.")

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        branches: list[JsonSchemaValue] = []
        for recipe, params_model in PARAMS.items():
            required = any(field.is_required() for field in params_model.model_fields.values())
            branches.append(
                {
                    "type": "object",
                    "title": recipe,
                    "description": (params_model.__doc__ or recipe).strip().splitlines()[0],
                    "properties": {
                        "recipe": {"const": recipe, "description": "Recipe name."},
                        "params": {
                            **handler(params_model.__pydantic_core_schema__),
                            "description": f"Parameters of {recipe}.",
                        },
                    },
                    "required": ["recipe", "params"] if required else ["recipe"],
                    "additionalProperties": False,
                }
            )
        branches.append(
            {
                "type": "object",
                "title": "plugin recipe",
                "description": "A recipe registered by a plugin (entry point group harness.recipes); "
                "its params are checked by `harness validate` against the recipe's params_model.",
                "properties": {
                    "recipe": {
                        "type": "string",
                        "not": {"enum": sorted(PARAMS)},
                        "description": "Registered recipe name (see `harness list`).",
                    },
                    "params": {"type": "object", "description": "Parameters of the recipe."},
                },
                "required": ["recipe"],
                "additionalProperties": False,
            }
        )
        return {
            "title": "RecipeStep",
            "description": "One compression step: a recipe and its parameters.",
            "oneOf": branches,
            "discriminator": {"propertyName": "recipe"},
        }


class VariantSpec(StrictModel):
    name: str = Field(description="Variant name, unique within the scenario.", pattern=NAME_PATTERN)
    steps: list[RecipeStep] = Field(
        default_factory=list,
        max_length=MAX_STEPS,
        description=f"Compression steps, applied in order (at most {MAX_STEPS}).",
    )


class ServingSpec(StrictModel):
    target: str = Field(
        description="Registered serving target (see `harness list`): "
        + "; ".join(f"{name}: {text}" for name, text in TARGET_DESCRIPTIONS.items())
    )
    workers: int = Field(
        default=1, ge=1, le=64, description="Model workers (TorchServe) or threads (inprocess), 1 to 64."
    )
    batch_size: int = Field(
        default=1, ge=1, le=MAX_BATCH, description=f"Server-side dynamic batch size, 1 to {MAX_BATCH}."
    )
    max_batch_delay_ms: int = Field(
        default=5, ge=0, le=60_000, description="Longest wait to fill a server-side batch, 0 to 60000 ms."
    )
    startup_timeout_s: float = Field(
        default=120.0,
        gt=0,
        le=MAX_DURATION_S,
        description=f"Deadline for the server to become ready, at most {MAX_DURATION_S:g} s.",
    )
    log_level: Literal["DEBUG", "INFO", "WARN", "ERROR"] = Field(
        default="WARN",
        description="Level of the server's own logs in the run folder. WARN keeps them small (INFO "
        "writes an access-log line per request); raise it to INFO or DEBUG to investigate a server.",
    )
    options: dict[str, Any] = Field(default_factory=dict, description="Target-specific options.")


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
    validity: ValiditySpec = Field(default_factory=ValiditySpec, description="Window validity rules.")
    search: SearchSpec | None = Field(
        default=None, description="Also search for max_rps_at_slo (after the regular measurement)."
    )

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
    bootstrap_resamples: int = Field(
        default=2000, ge=100, le=100_000, description="Resamples of the bootstrap test, 100 to 100000."
    )
    confirm_runs: int = Field(
        default=1,
        ge=0,
        le=10,
        description="Re-measurements of a variant whose gate failed; it fails only if every one fails too "
        "(0 to 10).",
    )


class Scenario(StrictModel):
    name: str = Field(description="Scenario name; also names its baseline file.", pattern=NAME_PATTERN)
    description: str = Field(default="", description="Free text shown in the report.")
    model: ModelSpec = Field(description="The model under test.")
    variants: list[VariantSpec] = Field(
        default_factory=list,
        max_length=MAX_VARIANTS,
        description="Compressed variants. An uncompressed 'reference' variant is always measured first "
        f"(at most {MAX_VARIANTS}).",
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

    def deadline_s(self) -> float:
        """A generous upper bound of the whole run's wall time, in seconds, for a run watchdog.

        Every variant, measured once and again for each confirmation run: the server's startup
        deadline, VARIANT_ALLOWANCE_S (export, accuracy, scrapes), then per load point the warm-up,
        the ramp-up of its users, the longest measurement (max_windows windows when never stable),
        one request timeout and POINT_ALLOWANCE_S; plus the search probes. Then STEP_ALLOWANCE_S
        per compression step and BASE_ALLOWANCE_S once. Finite, because every term is bounded.
        """
        load = self.load
        ramp_s = max(load.user_counts()) / load.spawn_rate
        point_s = load.warmup_s + ramp_s + load.longest_measure_s() + load.timeout_s + POINT_ALLOWANCE_S
        points = max(len(load.user_counts()), len(load.rates()), 1)
        search_s = 0.0
        if load.search is not None:
            search = load.search
            search_ramp_s = (search.high if search.over == "users" else MAX_USERS) / load.spawn_rate
            probe_s = load.warmup_s + search_ramp_s + search.probe_s + load.timeout_s + POINT_ALLOWANCE_S
            search_s = search.iterations * probe_s
        variant_s = self.serving.startup_timeout_s + VARIANT_ALLOWANCE_S + points * point_s + search_s
        measurements = len(self.all_variants()) * (1 + self.gate_policy.confirm_runs)
        steps = sum(len(v.steps) for v in self.variants)
        return BASE_ALLOWANCE_S + steps * STEP_ALLOWANCE_S + measurements * variant_s
