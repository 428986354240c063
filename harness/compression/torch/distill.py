"""torch.distill: train a small MLP student on a teacher's softened outputs (Hinton et al. 2015).

The teacher is any classifier with one float input (of any shape) returning class scores: the
built-in MLP, a python: factory's module, or a loaded TorchScript / torch.export module (only its
forward is used, so it needs no nn.Linear layers). The student is a plain float nn.Sequential of
nn.Linear + ReLU on the flattened input (behind nn.Flatten, and a cast for float64/float16 inputs,
so it takes what the teacher took), so torch.prune and torch.int8 can compress it in later steps.
Models with several inputs or integer inputs (token ids) are refused: flat float rows are all an
MLP student can take. The same student is also trained on the labels
alone, with the same initial weights and batch order, so the report shows what the teacher added.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import time
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from harness.compression.base import Recipe, RecipeContext, StepReport
from harness.compression.distillation import (
    DistillOutcome,
    distill_report,
    student_layers,
    teacher_logits,
)
from harness.compression.params import DistillParams
from harness.data.tensors import TensorSpec
from harness.errors import RunError, UserError
from harness.models.torch_io import model_outputs

if TYPE_CHECKING:
    from torch import nn


class TorchDistillRecipe(Recipe):
    """Replace the model by an MLP student trained on alpha * soft teacher targets + (1 - alpha) * labels."""

    name: ClassVar[str] = "torch.distill"
    framework: ClassVar[str] = "torch"
    params_model = DistillParams
    params: DistillParams

    def apply(self, model: Any, context: RecipeContext | None = None) -> tuple[Any, StepReport]:
        import torch

        if context is None:
            raise RunError(f"{self.name} needs the training data: call it with a RecipeContext")
        if not callable(model):
            raise UserError(f"{self.name} needs a teacher module to call, got {type(model).__name__}")
        start = time.perf_counter()
        data, p = context.data, self.params
        spec = _student_input(self.name, context)
        if isinstance(model, torch.nn.Module):
            # the teacher's inference outputs: no dropout, batch-norm running statistics. A module
            # loaded from .pt2 refuses eval(); it was exported in the mode it is meant to run in.
            with contextlib.suppress(NotImplementedError):
                model.eval()
        x_train, x_test = data.x_train, data.x_test
        y_train = torch.from_numpy(data.y_train.copy())
        y_test = data.test.labels

        teacher = teacher_logits(_outputs(model, spec, x_train, self.name), data.num_classes or 0)
        teacher_test = _outputs(model, spec, x_test, self.name)

        # the student takes the teacher's input as it comes: flattened and cast to float32 first
        flat_train = torch.tensor(np.asarray(x_train, dtype=np.float32).reshape(len(x_train), -1))
        layers = student_layers(int(flat_train.shape[1]), list(p.student_hidden), data.num_classes or 0)
        t0 = time.perf_counter()
        student = train_student(
            layers, flat_train, y_train, torch.from_numpy(teacher.logits), p, context.seed
        )
        train_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        alone = train_student(layers, flat_train, y_train, None, p, context.seed)
        alone_seconds = time.perf_counter() - t0

        student = _with_input_adapter(student, spec)
        alone = _with_input_adapter(alone, spec)
        if teacher.output_kind == "probabilities":
            # keep the teacher's output convention, so clients of the served model see no change
            student.append(torch.nn.Softmax(dim=1))
        outcome = DistillOutcome(
            layers=layers,
            teacher_accuracy=_accuracy(teacher_test, y_test),
            student_accuracy=_accuracy(_outputs(student, spec, x_test, self.name), y_test),
            student_alone_accuracy=_accuracy(_outputs(alone, spec, x_test, self.name), y_test),
            teacher_param_count=_param_count(model),
            student_param_count=_param_count(student),
            teacher_output=teacher.output_kind,
            train_seconds=train_seconds,
            alone_seconds=alone_seconds,
        )
        return student, distill_report(self.name, p, outcome, time.perf_counter() - start)


def _student_input(recipe: str, context: RecipeContext) -> TensorSpec:
    """The teacher's one float input; UserError for what an MLP student cannot take or learn."""
    data = context.data
    inputs = context.signature.inputs if context.signature is not None else data.inputs
    task = context.signature.task if context.signature is not None else data.task
    expected = ", ".join(s.describe() for s in inputs)
    if len(inputs) != 1:
        raise UserError(
            f"{recipe} trains an MLP student on one float input; the model takes {len(inputs)} ({expected})"
        )
    if np.dtype(inputs[0].dtype).kind != "f":
        raise UserError(f"{recipe} trains an MLP student on float inputs; the model takes {expected}")
    if task != "classification" or data.num_classes is None:
        raise UserError(f"{recipe} distils class scores; it needs a classification model and labelled data")
    if data.train is None or data.train.labels is None:
        raise UserError(f"{recipe} trains on the data's labelled train split, which this data does not have")
    return inputs[0]


def _with_input_adapter(student: nn.Sequential, spec: TensorSpec) -> nn.Sequential:
    """The student behind a flatten (inputs of several dimensions) and a cast to float32 (float64
    or float16 inputs), so the served student takes exactly what the teacher took."""
    from torch import nn

    front: list[nn.Module] = []
    if spec.dtype != "float32":
        front.append(_float32_module()())
    if len(spec.shape) != 1:
        front.append(nn.Flatten())
    return nn.Sequential(*front, *student).eval() if front else student


@functools.cache
def _float32_module() -> type:
    """nn.Module casting its input to float32 (defined on first use: torch is imported lazily)."""
    from torch import nn

    class Float32(nn.Module):
        def forward(self, x: Any) -> Any:
            return x.float()

    return Float32


def build_student(layers: list[int]) -> nn.Sequential:
    """An untrained MLP student: nn.Linear between consecutive sizes, ReLU between the Linears."""
    from torch import nn

    parts: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(layers)):
        if i:
            parts.append(nn.ReLU())
        parts.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*parts)


def train_student(
    layers: list[int],
    x: Any,
    y: Any,
    teacher_logits: Any | None,
    params: DistillParams,
    seed: int,
) -> nn.Sequential:
    """Train a fresh student; with `teacher_logits` None it learns from the labels alone.

    Loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(labels);
    the T^2 keeps the soft term's gradients on the scale of the hard term's as T grows. Weights
    are a function of the seed alone: the initialisation and the batch order come from it, and the
    training runs on one thread with deterministic algorithms (a split reduction can sum in a
    different order from run to run); both global settings are restored afterwards.
    """
    import torch
    from torch.nn import functional

    temperature = params.temperature
    alpha = params.alpha if teacher_logits is not None else 0.0
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(seed)
        student = build_student(layers)
        optimizer = torch.optim.Adam(student.parameters(), lr=params.learning_rate)
        order = torch.Generator().manual_seed(seed)
        soft_targets = (
            functional.log_softmax(teacher_logits / temperature, dim=1)
            if teacher_logits is not None
            else None
        )
        student.train()
        for _ in range(params.epochs):
            permutation = torch.randperm(len(x), generator=order)
            for i in range(0, len(x), params.batch_size):
                batch = permutation[i : i + params.batch_size]
                logits = student(x[batch])
                loss = functional.cross_entropy(logits, y[batch]) * (1.0 - alpha)
                if soft_targets is not None and alpha > 0.0:
                    soft = functional.kl_div(
                        functional.log_softmax(logits / temperature, dim=1),
                        soft_targets[batch],
                        reduction="batchmean",
                        log_target=True,
                    )
                    loss = loss + alpha * temperature**2 * soft
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    student.eval()
    student.requires_grad_(False)
    return student


def _outputs(module: Any, spec: TensorSpec, x: np.ndarray, recipe: str) -> np.ndarray:
    """The module's (n, classes) outputs for `x`; UserError if calling it fails."""
    try:
        return model_outputs(module, {spec.name: x}, (spec,))
    except Exception as exc:  # a user's module with another input contract
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"{recipe}: the teacher could not be run on {spec.describe()} inputs: {detail}"
        ) from None


def _accuracy(outputs: np.ndarray, truth: np.ndarray | None) -> float:
    if truth is None:  # an unlabelled test split: the report shows no accuracy
        return float("nan")
    return float(np.mean(outputs.argmax(axis=1) == truth))


def _param_count(module: Any) -> int:
    """Parameters of a module, counting also what a loaded TorchScript/.pt2 module keeps as buffers
    (torch.export lifts weights into parameters or constants depending on how it was saved)."""
    params = {id(t): t.numel() for t in module.parameters()} if hasattr(module, "parameters") else {}
    if not params and hasattr(module, "buffers"):
        params = {id(t): t.numel() for t in module.buffers()}
    return int(sum(params.values()))
