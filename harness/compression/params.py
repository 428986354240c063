"""Parameter models of every built-in recipe: pydantic, extra="forbid", every field described.

Importable without torch, so `harness validate` checks recipe params in milliseconds. These
models are the one source of the params' documentation: `harness schema` (JSON Schema) and
`harness list` both print their docstrings and Field descriptions. Every number is bounded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from harness.compression import RECIPES
from harness.errors import UserError

MAX_BATCH_SIZE = 4096  # training batch: the digits training split has about 1,400 rows
MAX_STEP = 1_000_000  # pruning schedule steps


class RecipeParams(BaseModel):
    """Base of all recipe parameter models: unknown keys are errors, values are immutable.

    Strict, with finite floats: YAML `yes` is not the number 1 and `.inf` is not a value.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class TorchPruneParams(RecipeParams):
    """torch.prune: L1-magnitude unstructured pruning of linear and conv weights, or channel pruning.

    structure 'unstructured' zeroes weights (made permanent, the shapes stay); 'channels' removes
    whole channels with torch-pruning, so the model gets smaller and faster, then fine-tunes it.
    """

    amount: float = Field(
        gt=0.0,
        lt=1.0,
        description="unstructured: fraction of the linear and conv weights (nn.Linear/nn.Conv*, or a "
        ".pt2 program's linear/conv weight operands) set to zero; channels: fraction of the output "
        "channels of the conv/linear layers removed. Strictly between 0 and 1.",
    )
    scope: Literal["layer", "global"] = Field(
        default="layer",
        description="'layer': prune `amount` of each layer's weights (channels: of each group of "
        "coupled layers); 'global': prune the `amount` smallest weights (channels: lowest-ranked "
        "channels) across all those layers together (layers end up unevenly pruned).",
    )
    structure: Literal["unstructured", "channels"] = Field(
        default="unstructured",
        description="'unstructured': zero single weights (sparse, same shapes); 'channels': remove whole "
        "channels with torch-pruning's dependency graph (residual adds, depthwise convs and batch norms "
        "pruned together, the output layers kept whole), then fine-tune; needs an nn.Module (built-in or "
        "python: factory), not a .pt2 program.",
    )
    fine_tune_epochs: int = Field(
        default=2,
        ge=0,
        le=200,
        description="structure channels only: epochs of fine-tuning on the labelled train split after "
        "pruning (0 to 200; 0: none).",
    )
    learning_rate: float = Field(
        default=1e-3, gt=0, lt=1, description="structure channels only: Adam learning rate, cosine-decayed."
    )
    batch_size: int = Field(
        default=32,
        ge=1,
        le=MAX_BATCH_SIZE,
        description=f"structure channels only: fine-tuning batch size, 1 to {MAX_BATCH_SIZE}.",
    )

    @model_validator(mode="after")
    def _fine_tuning_needs_channels(self) -> TorchPruneParams:
        tuning = sorted({"fine_tune_epochs", "learning_rate", "batch_size"} & self.model_fields_set)
        if self.structure == "unstructured" and tuning:
            raise ValueError(f"{', '.join(tuning)}: only structure 'channels' fine-tunes")
        return self


class TorchHalfParams(RecipeParams):
    """torch.half: weights and activations in bfloat16 or float16; float32 inputs and outputs."""

    dtype: Literal["bfloat16", "float16"] = Field(
        default="bfloat16",
        description="'bfloat16' (default: float32's exponent range, so activations and logits cannot "
        "overflow, and native on x86 CPUs with avx512_bf16 or amx_bf16) or 'float16' (more mantissa "
        "bits, a 65504 maximum; native only with avx512_fp16 or amx_fp16). The report says whether "
        "this CPU has a fast path for it.",
    )


class TorchInt8Params(RecipeParams):
    """torch.int8: torchao int8 quantization on CPU: quantize_ on nn.Linear layers, or PT2E on a graph."""

    mode: Literal["weight_only", "dynamic", "static"] = Field(
        default="weight_only",
        description="'weight_only': int8 weights, float activations (torchao Int8WeightOnlyConfig on the "
        "nn.Linear layers; not for .pt2 sources); 'dynamic': int8 weights, activations quantized per "
        "batch at run time (Int8DynamicActivationInt8WeightConfig on an nn.Module, PT2E with the x86 "
        "quantizer's dynamic config on a .pt2 program); 'static': int8 weights and activations, "
        "activation scales calibrated on the calibration data (torchao PT2E, X86InductorQuantizer; an "
        "nn.Module is torch.exported first).",
    )
    calibration_samples: int = Field(
        default=256,
        ge=1,
        le=10_000,
        description="mode static: calibration examples run through the observers (1 to 10000); the "
        "calibration split, else the train split.",
    )


class _FineTune(RecipeParams):
    """Fine-tuning settings shared by the tfmot recipes (training split of the digits data)."""

    fine_tune_epochs: int = Field(default=4, ge=1, le=200, description="Epochs of fine-tuning.")
    learning_rate: float = Field(default=1e-3, gt=0, lt=1, description="Adam learning rate.")
    batch_size: int = Field(
        default=32, ge=1, le=MAX_BATCH_SIZE, description=f"Training batch size, 1 to {MAX_BATCH_SIZE}."
    )


class TfPruneParams(_FineTune):
    """tf.prune: tfmot prune_low_magnitude with a PolynomialDecay schedule, fine-tuned, stripped."""

    target_sparsity: float | None = Field(
        default=None,
        gt=0.0,
        lt=1.0,
        description="Final sparsity of the schedule (0..1); required unless sparsity_m_by_n is given, "
        "which fixes it at m/n.",
    )
    sparsity_m_by_n: list[Annotated[int, Field(ge=1, le=16)]] | None = Field(
        default=None,
        min_length=2,
        max_length=2,
        description="[m, n] for structured sparsity: m zeros in every n consecutive weights along the "
        "input channels (tfmot sparsity_m_by_n; [2, 4] is the 2:4 pattern of sparse tensor cores). "
        "Applied to Dense and Conv2D kernels only: depthwise and other convolutions stay dense (the "
        "report lists both, and checks the pattern in the stripped kernels). 1 <= m < n <= 16.",
    )
    initial_sparsity: float = Field(default=0.0, ge=0.0, lt=1.0, description="Sparsity at begin_step.")
    begin_step: int = Field(
        default=0, ge=0, le=MAX_STEP, description=f"Training step where pruning starts, 0 to {MAX_STEP:,}."
    )
    end_step: int | None = Field(
        default=None,
        ge=1,
        le=MAX_STEP,
        description="Step where target_sparsity is reached; default: the last fine-tuning step at which "
        "the masks are updated (a multiple of frequency after begin_step). If it lies beyond that, the "
        f"sparsity reached stops short of the target (reported). At most {MAX_STEP:,}.",
    )
    frequency: int = Field(
        default=10, ge=1, le=MAX_STEP, description=f"Steps between mask updates, 1 to {MAX_STEP:,}."
    )

    @model_validator(mode="after")
    def _one_sparsity(self) -> TfPruneParams:
        m_by_n = self.sparsity_m_by_n
        if m_by_n is None:
            if self.target_sparsity is None:
                raise ValueError(
                    "target_sparsity is required (or sparsity_m_by_n for m:n structured sparsity)"
                )
            return self
        m, n = m_by_n
        if m >= n:
            raise ValueError(f"sparsity_m_by_n [{m}, {n}]: m (zeros per group) must be below n (group size)")
        if self.target_sparsity is not None and abs(self.target_sparsity - m / n) > 1e-9:
            raise ValueError(
                f"sparsity_m_by_n [{m}, {n}] prunes {m / n:g} of the weights it applies to; "
                f"leave out target_sparsity ({self.target_sparsity:g}) or set it to {m / n:g}"
            )
        return self

    @property
    def final_sparsity(self) -> float:
        """Where the schedule ends: target_sparsity, or m/n for m:n structured sparsity."""
        if self.sparsity_m_by_n is not None:
            m, n = self.sparsity_m_by_n
            return m / n
        assert self.target_sparsity is not None  # the validator requires one of them
        return self.target_sparsity


class TfClusterParams(_FineTune):
    """tf.cluster: tfmot cluster_weights (weight sharing), fine-tuned, then strip_clustering."""

    clusters: int = Field(default=16, ge=2, le=256, description="Distinct weight values per kernel.")
    centroid_init: Literal["kmeans_plus_plus", "linear", "random", "density_based"] = Field(
        default="kmeans_plus_plus",
        description="How the cluster centroids start (tfmot CentroidInitialization).",
    )
    learning_rate: float = Field(default=1e-4, gt=0, lt=1, description="Adam learning rate.")
    fine_tune_epochs: int = Field(default=2, ge=1, le=200, description="Epochs of fine-tuning.")


class TfQatParams(_FineTune):
    """tf.qat: tfmot quantize_model (quantization-aware training), converted to an int8 TFLite model."""

    learning_rate: float = Field(default=1e-4, gt=0, lt=1, description="Adam learning rate.")
    fine_tune_epochs: int = Field(default=2, ge=1, le=200, description="Epochs of fine-tuning.")
    io: Literal["float", "int8", "uint8"] = Field(
        default="float",
        description="Input/output tensor type of the TFLite model: 'int8'/'uint8' take the inputs and "
        "return the scores quantized (clients convert with the scale and zero point the artifact records).",
    )


class TfPtqParams(RecipeParams):
    """tf.ptq: TFLite converter post-training quantization."""

    mode: Literal["dynamic", "float16", "int8"] = Field(
        description="'dynamic': int8 weights, float activations; 'float16': float16 weights; 'int8': full "
        "integer, activations calibrated on a representative dataset from the calibration split (else "
        "the train split)."
    )
    io: Literal["float", "int8", "uint8"] = Field(
        default="float",
        description="mode int8 only: input/output tensor type of the TFLite model. 'uint8' (or 'int8') "
        "takes the float inputs quantized, e.g. raw uint8 pixels, and returns quantized scores; clients "
        "convert with the scale and zero point the artifact records. Integer inputs stay as they are.",
    )
    calibration_samples: int = Field(
        default=200,
        ge=1,
        le=10_000,
        description="mode int8: examples of the calibration split (else the train split) used as the "
        "representative dataset, all of them if fewer (1 to 10000).",
    )

    @model_validator(mode="after")
    def _int8_io_needs_int8_mode(self) -> TfPtqParams:
        if self.io != "float" and self.mode != "int8":
            raise ValueError(f"io {self.io!r} needs mode 'int8' (full integer quantization)")
        return self


class DistillParams(RecipeParams):
    """torch.distill / tf.distill: train a smaller MLP student on the teacher's softened outputs."""

    student_hidden: list[Annotated[int, Field(ge=1, le=4096)]] = Field(
        default_factory=lambda: [32],
        min_length=1,
        max_length=8,
        description="Hidden layer sizes of the MLP student: 1 to 8 layers of 1 to 4096 units.",
    )
    temperature: float = Field(
        default=4.0, gt=0, le=100, description="Softmax temperature of the soft targets, at most 100."
    )
    alpha: float = Field(
        default=0.7,
        ge=0,
        le=1,
        description="Weight of the soft (teacher) loss; 1 - alpha weights the labels.",
    )
    epochs: int = Field(default=60, ge=1, le=1000, description="Training epochs of the student.")
    learning_rate: float = Field(default=1e-2, gt=0, lt=1, description="Adam learning rate.")
    batch_size: int = Field(
        default=64, ge=1, le=MAX_BATCH_SIZE, description=f"Training batch size, 1 to {MAX_BATCH_SIZE}."
    )


PARAMS: dict[str, type[RecipeParams]] = {
    "torch.prune": TorchPruneParams,
    "torch.int8": TorchInt8Params,
    "torch.distill": DistillParams,
    "torch.half": TorchHalfParams,
    "tf.prune": TfPruneParams,
    "tf.cluster": TfClusterParams,
    "tf.qat": TfQatParams,
    "tf.ptq": TfPtqParams,
    "tf.distill": DistillParams,
}

# Recipes that cannot run after another one in the same variant, and why.
_NOT_AFTER: dict[tuple[str, str], str] = {
    ("torch.prune", "torch.int8"): "prune first: pruning needs float weights, not quantized ones",
    ("torch.int8", "torch.int8"): "the weights are already quantized",
    ("torch.int8", "torch.half"): "int8 quantizes float32 weights: use one of torch.int8, torch.half",
    ("torch.half", "torch.int8"): "the weights are already quantized",
    ("torch.half", "torch.half"): "the weights are already half precision",
    ("torch.prune", "torch.half"): "prune first: pruning and fine-tuning need float32 weights",
}
# Recipes whose output is a TFLite model: no Keras recipe can follow them.
_TFLITE_OUTPUT = {"tf.qat", "tf.ptq"}
# Recipes that train a new model from scratch: anything before them would be thrown away.
_FIRST_ONLY = {"torch.distill", "tf.distill"}


def params_model(recipe: str) -> type[BaseModel]:
    """The parameter model of `recipe`; UserError naming the known recipes if there is none."""
    try:
        return PARAMS[recipe]
    except KeyError:
        pass
    if recipe in RECIPES:  # a plugin recipe: its class carries its own params model
        model = getattr(RECIPES.resolve(recipe), "params_model", None)
        if isinstance(model, type) and issubclass(model, BaseModel):
            return model
        raise UserError(f"recipe {recipe!r} ({RECIPES.target(recipe)}) declares no params_model")
    raise UserError(f"unknown recipe {recipe!r}; expected one of: {', '.join(RECIPES.names())}")


def describe_recipe(recipe: str) -> str:
    """One line about `recipe`: its params model's docstring, without importing a plugin's class."""
    model = PARAMS.get(recipe)
    if model is None:
        return f"plugin recipe ({RECIPES.target(recipe)}); params checked by its params_model"
    # docstrings read "torch.prune: what it does"; a shared model names every recipe it serves
    summary = (model.__doc__ or recipe).strip().splitlines()[0]
    return summary.split(": ", 1)[1] if ": " in summary else summary


def describe_params(model: type[BaseModel]) -> list[tuple[str, str, str]]:
    """(name, default, description) of each field of a params model: what `harness list` prints,
    the same Field descriptions as the JSON Schema. The default is 'required' when there is none."""
    rows = []
    for name, field in model.model_fields.items():
        if field.is_required():
            default = "required"
        elif field.default_factory is not None:
            default = repr(field.default_factory())  # type: ignore[call-arg]
        else:
            default = "null" if field.default is None else repr(field.default)
        rows.append((name, default, field.description or ""))
    return rows


def validate_step_params(recipe: str, params: Mapping[str, Any]) -> BaseModel:
    """Validated params of one step. Raises pydantic ValidationError for bad values or unknown keys
    (the caller names the file and key) and UserError for an unknown recipe."""
    return params_model(recipe).model_validate(dict(params))


def check_step_order(recipes: list[str]) -> None:
    """UserError if a step cannot follow an earlier one of the same variant (e.g. prune after int8)."""
    for j, later in enumerate(recipes):
        if later in _FIRST_ONLY and j > 0:
            raise UserError(
                f"steps[{j}] {later} must be the first step: it trains a new student model, so earlier "
                "steps would be discarded (compress the student with steps after it)"
            )
        for i, earlier in enumerate(recipes[:j]):
            if earlier in _TFLITE_OUTPUT:
                raise UserError(
                    f"steps[{j}] {later} cannot come after steps[{i}] {earlier}: {earlier} produces a "
                    "TFLite model, so it must be the last step"
                )
            reason = _NOT_AFTER.get((later, earlier))
            if reason:
                raise UserError(f"steps[{j}] {later} cannot come after steps[{i}] {earlier}: {reason}")
