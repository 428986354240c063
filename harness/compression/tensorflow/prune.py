"""tf.prune: tfmot magnitude pruning of Dense/convolution kernels on a PolynomialDecay schedule.

Each kernel layer of a private clone is wrapped in `prune_low_magnitude`; layers without kernels
(Reshape, Flatten, pooling) stay as they are. The model is fine-tuned on the training split with
`UpdatePruningStep`, which advances the schedule one step per batch, and `strip_pruning` removes
the wrappers, leaving plain layers whose kernels hold the zeros.

With `sparsity_m_by_n: [m, n]` (e.g. [2, 4]) the masks are structured instead: at each mask update
every run of n consecutive input-channel weights of a Dense or Conv2D kernel keeps its n - m largest
magnitudes (tfmot's `sparsity_m_by_n`). Depthwise and other convolutions stay dense and are listed
in the report, which also checks the pattern in the stripped kernels, group by group.

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
from harness.compression.tensorflow.tf_import import import_tf, import_tfmot
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
    if p.initial_sparsity >= p.final_sparsity:
        raise UserError(
            f"tf.prune: initial_sparsity ({p.initial_sparsity}) must be below target_sparsity "
            f"({p.final_sparsity})"
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
    scheduled = p.final_sparsity + (p.initial_sparsity - p.final_sparsity) * (1.0 - progress) ** _POWER
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
        m_by_n = (p.sparsity_m_by_n[0], p.sparsity_m_by_n[1]) if p.sparsity_m_by_n else None
        types = kernel_layer_types()
        targets = [layer.name for layer in work.layers if isinstance(layer, types)]
        not_m_by_n: dict[str, str] = {}
        if m_by_n is not None:
            not_m_by_n = {layer.name: why for layer in work.layers if (why := m_by_n_refusal(layer))}
            targets = [name for name in targets if name not in not_m_by_n]
        if not targets:
            kinds = "Dense or Conv2D" if m_by_n else "Dense or convolution"
            raise UserError(f"{self.name} needs {kinds} layers to prune; the model has none")
        schedule = tfmot.sparsity.keras.PolynomialDecay(
            initial_sparsity=p.initial_sparsity,
            final_sparsity=p.final_sparsity,
            begin_step=plan.begin_step,
            end_step=plan.end_step,
            power=_POWER,
            frequency=p.frequency,
        )
        with seeded(context.seed):
            pruned = wrap_layers(
                work,
                lambda layer: tfmot.sparsity.keras.prune_low_magnitude(
                    layer, pruning_schedule=schedule, sparsity_m_by_n=m_by_n
                ),
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

        structure: dict[str, Any] = {}
        if m_by_n is None:
            how = f"PolynomialDecay pruning {p.initial_sparsity:g} -> {p.final_sparsity:g}"
        else:
            how = f"{m_by_n[0]}:{m_by_n[1]} structured pruning"
            structure = m_by_n_report(result, targets, not_m_by_n, m_by_n)
        note = (
            f"{how} over steps {plan.begin_step}..{plan.end_step} (masks every {p.frequency}) of "
            f"{len(targets)} kernel layers during {plan.total_steps} fine-tuning steps; reached "
            f"{reached:.4f} of kernel weights{quality_note(before, after)}"
        )
        if m_by_n is not None:
            note += (
                f"; the {m_by_n[0]}:{m_by_n[1]} pattern "
                f"{'holds' if structure['pattern_holds'] else 'does NOT hold'} in the stripped kernels "
                f"({structure['groups_violating']} of {structure['groups_checked']} groups violate it)"
            )
            if not_m_by_n:
                note += f"; {len(not_m_by_n)} layers with weights left dense ({_kinds(not_m_by_n)})"
        elif plan.stops_short:
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
                **({"structured": structure} if structure else {}),
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


def m_by_n_refusal(layer: Any) -> str | None:
    """Why m:n structured sparsity is not applied to `layer` (None: it is, or the layer has no weights
    to prune at all). tfmot groups runs of n input channels of a Dense [in, out] or Conv2D
    [h, w, in, out] kernel; a depthwise kernel has one input channel per filter, nothing to group."""
    _, keras = import_tf()
    L = keras.layers
    if type(layer) in (L.Dense, L.Conv2D) and len(layer.kernel.shape) in (2, 4):
        return None
    if isinstance(layer, L.DepthwiseConv2D):
        return "DepthwiseConv2D: one input channel per filter, no run of input channels to group"
    if isinstance(layer, L.SeparableConv2D):
        return "SeparableConv2D: tfmot m:n masks take Dense and Conv2D kernels only"
    if isinstance(layer, kernel_layer_types()):
        return f"{type(layer).__name__}: tfmot m:n masks take Dense and Conv2D kernels only"
    return None


def m_by_n_groups(kernel: np.ndarray, n: int) -> np.ndarray:
    """[groups, n]: runs of n consecutive input channels of a Dense [in, out] or Conv2D [h, w, in, out]
    kernel, as tfmot groups them (TFLite's layout, input channels last; zero-padded to a multiple of n)."""
    if kernel.ndim == 2:
        rows = kernel.T
    elif kernel.ndim == 4:
        rows = kernel.transpose(3, 0, 1, 2).reshape(-1, kernel.shape[2])
    else:
        raise ValueError(f"m:n groups need a rank-2 or rank-4 kernel, got shape {list(kernel.shape)}")
    rows = np.pad(rows, ((0, 0), (0, -rows.shape[1] % n)))
    return rows.reshape(-1, n)


def m_by_n_violations(kernel: np.ndarray, m: int, n: int) -> tuple[int, int]:
    """(groups with more than n - m non-zeros, groups) of `kernel`: (0, g) when m:n holds."""
    groups = m_by_n_groups(np.asarray(kernel), n)
    return int(np.count_nonzero(np.count_nonzero(groups, axis=1) > n - m)), len(groups)


def m_by_n_report(
    model: Any, targets: list[str], not_pruned: dict[str, str], m_by_n: tuple[int, int]
) -> dict[str, Any]:
    """The pattern checked in every pruned kernel of the stripped model, and what stayed dense."""
    m, n = m_by_n
    per_layer: dict[str, bool] = {}
    bad_total = groups_total = 0
    for layer in model.layers:
        if layer.name in targets:
            bad, groups = m_by_n_violations(layer.kernel.numpy(), m, n)
            per_layer[layer.name] = bad == 0
            bad_total, groups_total = bad_total + bad, groups_total + groups
    return {
        "pattern": f"{m}:{n}",
        "pattern_holds": bad_total == 0,
        "groups_checked": groups_total,
        "groups_violating": bad_total,
        "pruned_layers": sorted(per_layer),
        "holds_per_layer": per_layer,
        "not_pruned": dict(sorted(not_pruned.items())),
    }


def _kinds(reasons: dict[str, str]) -> str:
    counts: dict[str, int] = {}
    for why in reasons.values():
        kind = why.split(":", 1)[0]
        counts[kind] = counts.get(kind, 0) + 1
    return ", ".join(f"{count} {kind}" for kind, count in sorted(counts.items()))
