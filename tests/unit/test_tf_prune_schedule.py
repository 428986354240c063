"""How tf.prune places its PolynomialDecay schedule on the fine-tuning steps (no TensorFlow needed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.compression.params import TfPruneParams
from harness.compression.tensorflow.prune import plan_schedule
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
