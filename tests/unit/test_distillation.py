"""The framework-neutral half of distillation: teacher outputs read as logits, and the step report."""

from __future__ import annotations

import numpy as np
import pytest

from harness.compression.distillation import DistillOutcome, distill_report, teacher_logits
from harness.compression.params import DistillParams
from harness.errors import UserError


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture
def logits() -> np.ndarray:
    return np.random.default_rng(0).normal(scale=3.0, size=(50, 10)).astype(np.float32)


def test_logits_pass_through_unchanged(logits: np.ndarray) -> None:
    out = teacher_logits(logits, classes=10)
    assert out.output_kind == "logits"
    assert np.array_equal(out.logits, logits)


@pytest.mark.parametrize("temperature", [1.0, 4.0, 10.0])
def test_probabilities_give_the_same_softened_targets_as_the_logits_they_came_from(
    logits: np.ndarray, temperature: float
) -> None:
    out = teacher_logits(softmax(logits), classes=10)
    assert out.output_kind == "probabilities"
    soft_from_probabilities = softmax(out.logits.astype(np.float64) / temperature)
    soft_from_logits = softmax(logits.astype(np.float64) / temperature)
    assert np.allclose(soft_from_probabilities, soft_from_logits, atol=1e-5)


def test_non_negative_scores_that_do_not_sum_to_one_are_logits(logits: np.ndarray) -> None:
    assert teacher_logits(np.abs(logits), classes=10).output_kind == "logits"


@pytest.mark.parametrize("shape", [(50, 9), (50,), (5, 10, 1)])
def test_teacher_outputs_of_the_wrong_shape_are_a_user_error(shape: tuple[int, ...]) -> None:
    with pytest.raises(UserError, match=r"\[n, 10\] class scores"):
        teacher_logits(np.zeros(shape), classes=10)


def test_non_finite_teacher_outputs_are_a_user_error(logits: np.ndarray) -> None:
    logits[3, 2] = np.nan
    with pytest.raises(UserError, match="NaN"):
        teacher_logits(logits, classes=10)


def test_report_names_architecture_sizes_and_both_accuracies() -> None:
    outcome = DistillOutcome(
        layers=[64, 32, 10],
        teacher_accuracy=0.9711,
        student_accuracy=0.9533,
        student_alone_accuracy=0.9311,
        teacher_param_count=17226,
        student_param_count=2410,
        teacher_output="logits",
        train_seconds=0.5,
        alone_seconds=0.4,
    )
    report = distill_report("torch.distill", DistillParams(), outcome, seconds=1.0)
    assert report.notes == [
        "student 64-32-10 (2,410 params) distilled from teacher (17,226 params): "
        "0.953 vs 0.931 trained alone, teacher 0.971"
    ]
    assert report.details["student_alone_accuracy"] == 0.9311
    assert report.details["temperature"] == DistillParams().temperature
    assert report.params == DistillParams().model_dump()
