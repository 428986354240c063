"""torch.distill: train a small MLP student on a teacher's softened outputs (Hinton et al. 2015).

The teacher is anything that maps [n, 64] float32 to [n, 10] class scores: the built-in MLP, or
a user's loaded TorchScript / torch.export module (only its forward is used, so it needs no
nn.Linear layers). The student is a plain float nn.Sequential of nn.Linear + ReLU, so torch.prune
and torch.int8 can compress it in later steps. The same student is also trained on the labels
alone, with the same initial weights and batch order, so the report shows what the teacher added.
"""

from __future__ import annotations

import contextlib
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
from harness.errors import RunError, UserError

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
        if isinstance(model, torch.nn.Module):
            # the teacher's inference outputs: no dropout, batch-norm running statistics. A module
            # loaded from .pt2 refuses eval(); it was exported in the mode it is meant to run in.
            with contextlib.suppress(NotImplementedError):
                model.eval()
        x_train, x_test = torch.from_numpy(data.x_train.copy()), torch.from_numpy(data.x_test.copy())
        y_train = torch.from_numpy(data.y_train.copy())

        teacher_train = _outputs(model, x_train, self.name)
        teacher = teacher_logits(teacher_train, data.num_classes)
        teacher_accuracy = _accuracy(_outputs(model, x_test, self.name).argmax(axis=1), data.y_test)

        layers = student_layers(data.input_shape[0], list(p.student_hidden), data.num_classes)
        t0 = time.perf_counter()
        student = train_student(layers, x_train, y_train, torch.from_numpy(teacher.logits), p, context.seed)
        train_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        alone = train_student(layers, x_train, y_train, None, p, context.seed)
        alone_seconds = time.perf_counter() - t0

        if teacher.output_kind == "probabilities":
            # keep the teacher's output convention, so clients of the served model see no change
            student.append(torch.nn.Softmax(dim=1))
        outcome = DistillOutcome(
            layers=layers,
            teacher_accuracy=teacher_accuracy,
            student_accuracy=_accuracy(_outputs(student, x_test, self.name).argmax(axis=1), data.y_test),
            student_alone_accuracy=_accuracy(_outputs(alone, x_test, self.name).argmax(axis=1), data.y_test),
            teacher_param_count=_param_count(model),
            student_param_count=_param_count(student),
            teacher_output=teacher.output_kind,
            train_seconds=train_seconds,
            alone_seconds=alone_seconds,
        )
        return student, distill_report(self.name, p, outcome, time.perf_counter() - start)


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


def _outputs(module: Any, x: Any, recipe: str) -> np.ndarray:
    """The module's [n, classes] outputs for `x` as numpy; UserError if calling it fails."""
    import torch

    try:
        with torch.inference_mode():
            out = module(x)
    except Exception as exc:  # a user's module with another input contract
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"{recipe}: the teacher could not be run on [n, 64] float32 inputs: {detail}"
        ) from None
    if not isinstance(out, torch.Tensor):
        raise UserError(
            f"{recipe}: the teacher must return one tensor of class scores, got {type(out).__name__}"
        )
    return np.asarray(out.detach().float().numpy())


def _accuracy(labels: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(labels == truth))


def _param_count(module: Any) -> int:
    """Parameters of a module, counting also what a loaded TorchScript/.pt2 module keeps as buffers
    (torch.export lifts weights into parameters or constants depending on how it was saved)."""
    params = {id(t): t.numel() for t in module.parameters()} if hasattr(module, "parameters") else {}
    if not params and hasattr(module, "buffers"):
        params = {id(t): t.numel() for t in module.buffers()}
    return int(sum(params.values()))
