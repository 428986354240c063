"""How tf.prune places its PolynomialDecay schedule on the fine-tuning steps, and how its m:n
structured sparsity is validated and checked (no TensorFlow needed)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from pydantic import ValidationError

from harness.compression.params import TfPruneParams
from harness.compression.tensorflow.prune import m_by_n_groups, m_by_n_violations, plan_schedule
from harness.errors import UserError


def params(**values) -> TfPruneParams:
    return TfPruneParams.model_validate({"target_sparsity": 0.8, **values})


def test_default_end_step_is_last_mask_update_so_target_is_reached() -> None:
    # 43 batches a epoch, 2 epochs: masks are recomputed at steps 10, 20, ..., 80
    plan = plan_schedule(params(frequency=10), total_steps=86)
    assert plan.end_step == 80
    assert plan.last_update_step == 80
    assert not plan.stops_short
    assert plan.sparsity_at_last_update == pytest.approx(0.8)


def test_default_end_step_is_last_step_when_frequency_divides_it() -> None:
    plan = plan_schedule(params(frequency=1), total_steps=86)
    assert plan.end_step == 86
    assert not plan.stops_short


def test_end_step_beyond_fine_tuning_stops_short_at_the_scheduled_sparsity() -> None:
    plan = plan_schedule(params(frequency=10, end_step=200), total_steps=86)
    assert plan.stops_short
    assert plan.last_update_step == 80
    # cubic PolynomialDecay from 0 at step 0 to 0.8 at step 200, read at step 80
    assert plan.sparsity_at_last_update == pytest.approx(0.8 * (1 - (1 - 80 / 200) ** 3))


def test_end_step_between_mask_updates_stops_slightly_short() -> None:
    plan = plan_schedule(params(frequency=10, end_step=86), total_steps=86)
    assert plan.stops_short
    assert 0.79 < plan.sparsity_at_last_update < 0.8


def test_schedule_counts_from_begin_step() -> None:
    plan = plan_schedule(params(frequency=10, begin_step=5), total_steps=86)
    assert plan.end_step == 85
    assert plan.last_update_step == 85


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"begin_step": 100}, "begin_step 100 with frequency 10 leaves no mask update"),
        ({"begin_step": 80, "frequency": 10}, "begin_step 80 with frequency 10 leaves no mask update"),
        ({"frequency": 100}, "begin_step 0 with frequency 100 leaves no mask update"),
        ({"begin_step": 20, "end_step": 20}, r"end_step \(20\) must be above begin_step \(20\)"),
        ({"initial_sparsity": 0.9}, r"initial_sparsity \(0.9\) must be below target_sparsity"),
    ],
)
def test_schedules_that_cannot_prune_are_user_errors(values: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        plan_schedule(params(frequency=values.pop("frequency", 10), **values), total_steps=86)


def test_planning_imports_no_tensorflow() -> None:
    # a fresh interpreter, so TensorFlow imported by other tests in this process does not count
    code = (
        "import sys; from harness.compression.tensorflow.prune import plan_schedule; "
        "print('tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- m:n structured sparsity: params and the pattern check (numpy only) ---------------------------


def test_sparsity_m_by_n_fixes_the_target_at_m_over_n() -> None:
    p = TfPruneParams.model_validate({"sparsity_m_by_n": [2, 4]})
    assert (p.target_sparsity, p.final_sparsity) == (None, 0.5)
    assert (
        TfPruneParams.model_validate({"sparsity_m_by_n": [2, 4], "target_sparsity": 0.5}).final_sparsity
        == 0.5
    )
    assert plan_schedule(p, total_steps=86).sparsity_at_last_update == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "target_sparsity is required"),
        ({"sparsity_m_by_n": [4, 4]}, r"m \(zeros per group\) must be below n"),
        ({"sparsity_m_by_n": [2, 4], "target_sparsity": 0.8}, "prunes 0.5 of the weights"),
        ({"sparsity_m_by_n": [2]}, "at least 2 items"),
        ({"sparsity_m_by_n": [2, 40]}, "less than or equal to 16"),
        ({"sparsity_m_by_n": [0, 4]}, "greater than or equal to 1"),
    ],
)
def test_bad_m_by_n_params_are_refused_when_validated(values: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TfPruneParams.model_validate(values)


def test_the_2_4_check_groups_input_channels_as_tfmot_and_tflite_do() -> None:
    # Conv2D kernel [h, w, in, out]: groups run along the input channels of each (out, h, w)
    kernel = np.zeros((1, 1, 8, 2), np.float32)
    kernel[0, 0, [0, 1, 6, 7], 0] = 1.0  # 2 non-zeros in each group of 4 input channels
    kernel[0, 0, [2, 3], 1] = 1.0
    assert m_by_n_groups(kernel, 4).shape == (4, 4)
    assert m_by_n_violations(kernel, 2, 4) == (0, 4)
    kernel[0, 0, 5, 0] = 1.0  # a third non-zero in the second group of output 0
    assert m_by_n_violations(kernel, 2, 4) == (1, 4)
    # Dense [in, out]: 3 inputs pad to one group of 4 per output
    dense = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 3.0]], np.float32)
    assert m_by_n_violations(dense, 2, 4) == (0, 2)
    assert m_by_n_violations(np.ones((3, 2), np.float32), 2, 4) == (2, 2)
    with pytest.raises(ValueError, match="rank-2 or rank-4"):
        m_by_n_groups(np.ones((3, 3, 3)), 4)
