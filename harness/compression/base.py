"""The recipe interface and the report each applied step returns.

A recipe takes a model and validated params and returns the (possibly new) model plus a
StepReport; recipes may modify the model in place, so the pipeline hands each variant its own copy.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

from harness.data.dataset import Dataset
from harness.data.tensors import Signature


@dataclass
class StepReport:
    """What one applied step did, measured on the model it produced (written into results.json)."""

    recipe: str
    params: dict[str, Any]
    seconds: float
    sparsity: float | None = None  # zero fraction of the weight matrices (what pruning targets)
    sparsity_all_params: float | None = None  # zero fraction over every parameter, biases included
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # e.g. per-layer sparsity, quantized layers

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RecipeContext:
    """What a recipe may need beyond the model: training data for fine-tuning, calibration or
    distillation, the scenario's seed, and a scratch folder inside the variant's run folder."""

    data: Dataset
    seed: int = 0
    work_dir: Path | None = None
    signature: Signature | None = None  # the base model's inputs, output and task


class Recipe(ABC):
    """One compression technique for one framework, registered by `name` in RECIPES."""

    name: ClassVar[str]
    framework: ClassVar[str]
    params_model: ClassVar[type[BaseModel]]

    def __init__(self, params: BaseModel | dict[str, Any] | None = None) -> None:
        if params is None or isinstance(params, dict):
            params = self.params_model.model_validate(params or {})
        elif not isinstance(params, self.params_model):
            raise TypeError(f"{self.name} expects {self.params_model.__name__}, got {type(params).__name__}")
        self.params = params

    @abstractmethod
    def apply(self, model: Any, context: RecipeContext | None = None) -> tuple[Any, StepReport]:
        """Compress `model` (it may be modified in place) and return the result and its report.

        Recipes that train or calibrate need `context` and raise RunError without it. Raises
        UserError when the recipe cannot apply to this model (e.g. no nn.Linear layers).
        """
