"""tf.prune: tfmot magnitude pruning of Dense/convolution kernels on a PolynomialDecay schedule.

Each kernel layer of a private clone is wrapped in `prune_low_magnitude`; layers without kernels
(Reshape, Flatten, pooling) stay as they are. The model is fine-tuned on the training split with
`UpdatePruningStep`, which advances the schedule one step per batch, and `strip_pruning` removes
the wrappers, leaving plain layers whose kernels hold the zeros.

The schedule only updates the masks every `frequency` steps and only while training runs, so the
sparsity reached depends on where the last update falls. With the default end_step (the last
mask update inside the fine-tuning) the target is reached; an end_step beyond the fine-tuning
leaves the model short of it, and the report says by how much.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from harness.compression.base import Recipe, RecipeContext, StepReport
from harness.compression.params import TfPruneParams
from harness.compression.tensorflow.finetune import (
    clone_with_weights,
    fine_tune,
    fine_tune_steps,
    kernel_layer_types,
    kernel_layers,
    quality_details,
    quality_note,
    quality_on_test,
    require_context,
    seeded,
    train_split,
    wrap_layers,
)
from harness.compression.tensorflow.stats import keras_stats, require_keras_model
from harness.compression.tensorflow.tf_import import import_tfmot
from harness.errors import UserError

_POWER = 3  # PolynomialDecay's default exponent: prunes fast early, slowly near the target


@dataclass(frozen=True)
class PruneSchedulePlan:
    """Where the PolynomialDecay schedule sits relative to the fine-tuning steps (1..total_steps)."""

    begin_step: int
    end_step: int
    total_steps: int
    last_update_step: int  # the last step at which the masks are recomputed
    sparsity_at_last_update: float  # what the schedule asks for at that step

    @property
    def stops_short(self) -> bool:
        return self.last_update_step < self.end_step


def plan_schedule(p: TfPruneParams, total_steps: int) -> PruneSchedulePlan:
    """Resolve the default end_step and check that the masks get updated during the fine-tuning.

    tfmot counts steps from 1 and recomputes the masks at steps s with (s - begin_step) % frequency
    == 0 and begin_step <= s <= end_step. Raises UserError for schedules that cannot prune.
    """
    if p.initial_sparsity >= p.target_sparsity:
        raise UserError(
            f"tf.prune: initial_sparsity ({p.initial_sparsity}) must be below target_sparsity "
            f"({p.target_sparsity})"
        )
    begin, freq = p.begin_step, p.frequency
    last_in_training = begin + freq * ((total_steps - begin) // freq) if begin <= total_steps else -1
    if last_in_training <= begin:
        raise UserError(
            f"tf.prune: begin_step {begin} with frequency {freq} leaves no mask update inside the "
            f"{total_steps} fine-tuning steps ({p.fine_tune_epochs} epochs of batch {p.batch_size}); "
            "lower begin_step or frequency, or raise fine_tune_epochs"
        )
    end = p.end_step if p.end_step is not None else last_in_training
    if end <= begin:
        raise UserError(f"tf.prune: end_step ({end}) must be above begin_step ({begin})")
    last_update = begin + freq * ((min(end, total_steps) - begin) // freq)
    progress = min(1.0, (last_update - begin) / (end - begin))
    scheduled = p.target_sparsity + (p.initial_sparsity - p.target_sparsity) * (1.0 - progress) ** _POWER
    return PruneSchedulePlan(begin, end, total_steps, last_update, scheduled)


class TfPruneRecipe(Recipe):
    """Zero the smallest-magnitude kernel weights while fine-tuning, up to `target_sparsity`."""

    name: ClassVar[str] = "tf.prune"
    framework: ClassVar[str] = "tensorflow"
    params_model = TfPruneParams
    params: TfPruneParams

    def apply(self, model: Any, context: RecipeContext | None = None) -> tuple[Any, StepReport]:
        context = require_context(context, self.name)
        model = require_keras_model(model, self.name)
        tfmot = import_tfmot()
        start = time.perf_counter()
        data, p = context.data, self.params
        train = train_split(data, self.name)
        plan = plan_schedule(p, fine_tune_steps(len(train), p.batch_size, p.fine_tune_epochs))
        before = quality_on_test(model, data)

        work = clone_with_weights(model, self.name)
        types = kernel_layer_types()
        targets = [layer.name for layer in work.layers if isinstance(layer, types)]
        if not targets:
            raise UserError(f"{self.name} needs Dense or convolution layers to prune; the model has none")
        schedule = tfmot.sparsity.keras.PolynomialDecay(
            initial_sparsity=p.initial_sparsity,
            final_sparsity=p.target_sparsity,
            begin_step=plan.begin_step,
            end_step=plan.end_step,
            power=_POWER,
            frequency=p.frequency,
        )
        with seeded(context.seed):
            pruned = wrap_layers(
                work,
                lambda layer: tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule),
                lambda layer: layer.name in targets,
            )
        fit_seconds = fine_tune(pruned, data, p, context.seed, [tfmot.sparsity.keras.UpdatePruningStep()])
        result = tfmot.sparsity.keras.strip_pruning(pruned)
        seconds = time.perf_counter() - start

        per_layer, zeros, total = {}, 0, 0
        for layer in kernel_layers(result):
            if layer.name in targets:
                kernel = layer.kernel.numpy()
                per_layer[layer.name] = round(float(np.mean(kernel == 0)), 6)
                zeros, total = zeros + int(np.count_nonzero(kernel == 0)), total + kernel.size
        reached = zeros / total if total else 0.0
        after = quality_on_test(result, data)
        left_alone = [layer.name for layer in result.layers if layer.weights and layer.name not in targets]

        note = (
            f"PolynomialDecay pruning {p.initial_sparsity:g} -> {p.target_sparsity:g} over steps "
            f"{plan.begin_step}..{plan.end_step} (masks every {p.frequency}) of {len(targets)} kernel "
            f"layers during {plan.total_steps} fine-tuning steps; reached {reached:.4f} of kernel weights"
            f"{quality_note(before, after)}"
        )
        if plan.stops_short:
            note += (
                f"; stopped short of the target: the last mask update (step {plan.last_update_step}) "
                f"came before end_step {plan.end_step}, where the schedule was at "
                f"{plan.sparsity_at_last_update:.4f}"
            )
        return result, StepReport(
            recipe=self.name,
            params=p.model_dump(),
            seconds=seconds,
            sparsity=reached,
            sparsity_all_params=keras_stats(result)["sparsity_all_params"],
            notes=[note],
            details={
                "layer_sparsity": per_layer,
                "left_alone": left_alone,
                "schedule": {
                    "begin_step": plan.begin_step,
                    "end_step": plan.end_step,
                    "frequency": p.frequency,
                    "fine_tune_steps": plan.total_steps,
                    "last_mask_update_step": plan.last_update_step,
                    "scheduled_sparsity_at_last_update": round(plan.sparsity_at_last_update, 6),
                    "stopped_short": plan.stops_short,
                },
                **quality_details(before, after),
                "fine_tune_seconds": round(fit_seconds, 3),
            },
        )
