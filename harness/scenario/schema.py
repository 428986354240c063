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
    framework: Literal["torch"] = Field(description="Framework of the model: torch (tensorflow comes next).")
    source: str = Field(
        description="'builtin:mlp' for the built-in reference MLP, or a path (relative to the scenario "
        "file) to a TorchScript (.pt/.ts) or torch.export (.pt2) file."
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
        description="Registered serving target: torchserve or inprocess (see `harness list`)."
    )
    workers: int = Field(default=1, ge=1, description="Model workers (TorchServe) or threads (inprocess).")
    batch_size: int = Field(default=1, ge=1, description="Server-side dynamic batch size.")
    max_batch_delay_ms: int = Field(default=5, ge=0, description="Longest wait to fill a server-side batch.")
    startup_timeout_s: float = Field(
        default=120.0, gt=0, description="Deadline for the server to become ready."
    )
    options: dict[str, Any] = Field(default_factory=dict, description="Target-specific options.")


class LoadSpec(StrictModel):
    users: int = Field(
        default=2, ge=1, description="Concurrent users, each sending back to back (closed loop)."
    )
    spawn_rate: float = Field(default=10.0, gt=0, description="Users started per second.")
    warmup_s: float = Field(default=2.0, ge=0, description="Seconds of load excluded from the statistics.")
    measure_s: float = Field(default=10.0, gt=0, description="Seconds of load that are measured.")
    request_batch_size: int = Field(default=1, ge=1, description="Examples per request.")
    timeout_s: float = Field(
        default=10.0, gt=0, description="Per-request timeout; slower requests are failures."
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
