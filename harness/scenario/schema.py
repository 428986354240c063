"""The scenario file schema. Every field is described; unknown keys are errors.

Every number has a finite upper bound, stated in its description: a scenario must not be able to
exhaust the machine (memory, processes, wall time) by a typo. NaN and infinities are refused, and
so are YAML booleans where a number is expected (`users: yes` is not 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic.json_schema import GetJsonSchemaHandler, JsonSchemaValue
from pydantic_core import CoreSchema

from harness.compression.params import PARAMS
from harness.data.tensors import DTYPES, Dtype
from harness.placement import AUTO
from harness.scenario.bounds import (
    BASE_ALLOWANCE_S,
    MAX_BATCH,
    MAX_DIM,
    MAX_DURATION_S,
    MAX_SEED,
    MAX_STEPS,
    MAX_USERS,
    MAX_VARIANTS,
    NAME_PATTERN,
    POINT_ALLOWANCE_S,
    PYTHON_PREFIX,
    REFERENCE_VARIANT,
    STEP_ALLOWANCE_S,
    VARIANT_ALLOWANCE_S,
    StrictModel,
)
from harness.scenario.data_spec import DataSpec
from harness.scenario.load_spec import CpuNumber, LoadSpec, checked_cpus
from harness.serving.registry import TARGET_DESCRIPTIONS


class InputDecl(StrictModel):
    """One named model input, declared when the model file cannot say it (TorchScript, a factory)."""

    name: str = Field(description="Input name: the keyword a SavedModel signature or a server expects.")
    shape: list[Annotated[int, Field(ge=1, le=MAX_DIM)]] = Field(
        max_length=8, description=f"Shape of one example, without the batch dimension (each 1 to {MAX_DIM})."
    )
    dtype: Dtype = Field(default="float32", description="Element type: " + ", ".join(DTYPES) + ".")


BUILTIN_MOBILENET = "builtin:mobilenet_v2"
DEFAULT_IMAGE_SIZE = 96  # the largest that trains in about 3 minutes per framework on 2 cores


class BuiltinOptions(StrictModel):
    """Size of the built-in MobileNetV2 and its training; all of it goes into its cache key."""

    width: float = Field(
        default=1.0,
        ge=0.1,
        le=1.4,
        description="Width multiplier: scales every layer's channels (0.1 to 1.4).",
    )
    image_size: int = Field(
        default=DEFAULT_IMAGE_SIZE,
        ge=32,
        le=224,
        description="Height and width of the digits_rgb images, in pixels "
        f"(32 to 224, default {DEFAULT_IMAGE_SIZE}).",
    )
    epochs: int | None = Field(
        default=None,
        ge=1,
        le=200,
        description="Training epochs (1 to 200); default: the built-in's own, chosen to reach its "
        "published accuracy.",
    )


class ModelSpec(StrictModel):
    framework: Literal["torch", "tensorflow"] = Field(
        description="Framework of the model; its recipes are named torch.* or tf.*."
    )
    source: str = Field(
        description="'builtin:mlp' (both frameworks) or 'builtin:cnn' (tensorflow) for a built-in "
        "reference model trained on digits, 'builtin:mobilenet_v2' (both frameworks) for a MobileNetV2 "
        "trained on digits_rgb; 'python:pkg.module:function' for a factory returning an "
        "nn.Module or a tf_keras model (its module is imported, running its code, like a conftest.py); "
        "or a path relative to the scenario file: TorchScript (.pt/.ts) or torch.export (.pt2) for "
        "torch; a SavedModel folder or a .keras/.h5 file for tensorflow."
    )
    weights: str | None = Field(
        default=None,
        description="python: sources only: weights loaded into the factory's model, a path relative to "
        "the scenario file: a torch state_dict (torch.save, .pt/.pth/.bin) or .safetensors for torch; "
        "a tf_keras .weights.h5/.h5 file for tensorflow.",
    )
    task: Literal["classification", "regression"] = Field(
        default="classification",
        description="classification: the output is a row of class scores; regression: a row of values.",
    )
    output: Literal["auto", "logits", "probabilities", "values"] = Field(
        default="auto",
        description="What the model's output holds. auto: 'values' for regression; for classification "
        "'probabilities' when every row on the test set is non-negative and sums to 1, else 'logits'.",
    )
    inputs: list[InputDecl] | None = Field(
        default=None,
        min_length=1,
        max_length=16,
        description="The model's inputs in call order. Read from the model where it records them "
        "(SavedModel signature, torch.export input specs) and checked against this when both exist; "
        "otherwise taken from the data.",
    )
    dataset: Literal["digits", "digits_rgb"] | None = Field(
        default=None,
        description="Shorthand for the evaluation data, with the harness's own seeded split of "
        "scikit-learn's bundled digits (10 classes): 'digits' is the 8x8 pixels as 64 floats; "
        "'digits_rgb' is each digit scaled up to builtin.image_size square RGB images (floats 0 to 1, "
        "NCHW for torch, NHWC for tensorflow). The default when there is no `data:` block: digits_rgb "
        "for builtin:mobilenet_v2, else digits.",
    )
    builtin: BuiltinOptions | None = Field(
        default=None,
        description="builtin:mobilenet_v2 only: its width multiplier, image size and training epochs.",
    )
    seed: int = Field(
        default=0,
        ge=0,
        le=MAX_SEED,
        description=f"Seed for the digits split and built-in model training (0 to {MAX_SEED}).",
    )

    @property
    def is_builtin(self) -> bool:
        return self.source.startswith("builtin:")

    @property
    def data_shorthand(self) -> str:
        """The dataset used without a data block: model.dataset, else the built-in's own."""
        if self.dataset is not None:
            return self.dataset
        return "digits_rgb" if self.source == BUILTIN_MOBILENET else "digits"

    @property
    def builtin_options(self) -> BuiltinOptions:
        return self.builtin if self.builtin is not None else BuiltinOptions()

    @property
    def is_python(self) -> bool:
        return self.source.startswith(PYTHON_PREFIX)

    @property
    def python_target(self) -> str:
        """'pkg.module:function' of a python: source."""
        return self.source[len(PYTHON_PREFIX) :]

    @model_validator(mode="after")
    def _builtin_options_need_a_mobilenet(self) -> ModelSpec:
        if self.builtin is not None and self.source != BUILTIN_MOBILENET:
            raise ValueError(f"builtin: only source {BUILTIN_MOBILENET} takes builtin options")
        return self

    @model_validator(mode="after")
    def _weights_need_a_factory(self) -> ModelSpec:
        if self.weights is not None and not self.is_python:
            raise ValueError("weights: only a python: source takes weights (a model file carries its own)")
        if self.task == "regression" and self.output in ("logits", "probabilities"):
            raise ValueError(
                f"output {self.output!r} is a classification output; a regression model's is 'values'"
            )
        if self.task == "classification" and self.output == "values":
            raise ValueError("output 'values' is a regression output; use task: regression")
        return self


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
    cpus: str | CpuNumber | list[CpuNumber] = Field(
        default=AUTO,
        description="CPUs the server's whole process tree may run on (its workers included): 'auto' "
        "(default: on 2 or more CPUs the server and the load generator get disjoint sets), 'any' (not "
        "placed), or a CPU list such as '0', '0-2,5' or [0, 1]. Not applied to remote or in-process "
        "targets.",
    )
    options: dict[str, Any] = Field(default_factory=dict, description="Target-specific options.")

    @field_validator("cpus", mode="before")
    @classmethod
    def _cpus(cls, value: object) -> object:
        return checked_cpus(value)


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
    data: DataSpec | None = Field(
        default=None,
        description="The evaluation data (and the train/calibration subsets recipes use). Without it, "
        "model.dataset (digits, or digits_rgb for builtin:mobilenet_v2) is used.",
    )
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

    @model_validator(mode="after")
    def _one_data_source(self) -> Scenario:
        if self.data is not None and self.model.dataset is not None:
            raise ValueError(
                "model.dataset and a data: block both name the evaluation data; keep one of them"
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
