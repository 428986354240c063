"""Which recipe can compress which kind of model source: one table, checked by `harness validate`.

A recipe that cannot apply to a source must be refused before any work, with the kinds that can be
compressed named, never first at run time ten seconds in. The kind of a source is read from the
scenario and the file system only (a suffix, a marker file in a SavedModel folder), so this module
imports neither torch nor TensorFlow. Later steps see what the earlier ones produced: a distilled
student is a fresh in-memory model whatever the teacher was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.data.dataset import Dataset
from harness.errors import UserError
from harness.frameworks import framework
from harness.metrics.catalog import LABELLED_METRICS
from harness.scenario.data_spec import DataSpec, NpzSpec, PythonDataSpec, SyntheticSpec, TableSpec
from harness.scenario.schema import ModelSpec, Scenario, resolve_source

# a SavedModel written by tf_keras carries this next to saved_model.pb; without it there are no
# layers for tfmot to wrap
KERAS_METADATA = "keras_metadata.pb"

# what each source kind is called in messages
KIND_LABELS: dict[str, str] = {
    "builtin": "a built-in model",
    "python": "a python: factory",
    "torchscript": "a TorchScript file (.pt/.ts)",
    "torch.export": "a torch.export file (.pt2)",
    "keras": "a tf_keras .keras file",
    "h5": "a tf_keras .h5 file",
    "savedmodel-keras": "a SavedModel written by tf_keras",
    "savedmodel": "a SavedModel without Keras metadata",
}

_TORCH_MODULE = frozenset({"builtin", "python", "torch.export"})
_KERAS = frozenset({"builtin", "python", "keras", "h5", "savedmodel-keras"})
_ANY_TF = _KERAS | {"savedmodel"}

# recipe -> source kinds it compresses
ACCEPTS: dict[str, frozenset[str]] = {
    "torch.prune": _TORCH_MODULE,
    "torch.int8": _TORCH_MODULE,
    "torch.distill": _TORCH_MODULE,
    "torch.half": _TORCH_MODULE,
    "tf.prune": _KERAS,
    "tf.cluster": _KERAS,
    "tf.qat": _KERAS,
    "tf.ptq": _ANY_TF,
    "tf.distill": _ANY_TF,
}

# recipe -> the kind of model it hands to the next step, when that differs from its input
PRODUCES: dict[str, str] = {"torch.distill": "python", "tf.distill": "keras"}

# how to get a source a refused recipe accepts
_REMEDY: dict[str, str] = {
    "torchscript": "TorchScript is served as given; to compress, give a torch.export .pt2 or a "
    "python: factory (with weights:)",
    "savedmodel": "supply the model as .keras/.h5, a SavedModel saved by tf_keras, or a python: factory "
    "returning a tf_keras model",
}


# recipes that train on labelled examples: fine-tuning (tfmot) and distillation (the student is
# also trained on the labels alone, for comparison)
NEEDS_TRAIN = frozenset({"tf.prune", "tf.cluster", "tf.qat", "torch.distill", "tf.distill"})


def fine_tunes(recipe: str, params: Mapping[str, Any]) -> bool:
    """Whether the step trains on labelled examples because of its params (channel pruning)."""
    return (
        recipe == "torch.prune"
        and params.get("structure") == "channels"
        and params.get("fine_tune_epochs", 1) != 0
    )


def needs_calibration(recipe: str, params: Mapping[str, Any]) -> bool:
    """Whether the step calibrates activations on example inputs (static int8)."""
    return (recipe == "tf.ptq" and params.get("mode") == "int8") or (
        recipe == "torch.int8" and params.get("mode") == "static"
    )


def has_train(spec: DataSpec | None) -> bool:
    """Whether a train split will exist, known without loading: yes for digits, data.train or
    data.split; never for synthetic data. A python function may return one, which only calling it
    shows, so it is assumed to (`check_loaded_data` checks the loaded data)."""
    if spec is None or isinstance(spec, PythonDataSpec):
        return True
    if isinstance(spec, SyntheticSpec):
        return False
    return spec.train is not None or spec.split is not None


def labelled(spec: DataSpec | None) -> bool:
    """Whether the data will have labels, known without loading it (digits has them)."""
    if spec is None:
        return True
    if isinstance(spec, SyntheticSpec):
        return False
    return not (isinstance(spec, NpzSpec | TableSpec) and spec.labels is None)


def missing_data(recipe: str, params: Mapping[str, Any], spec: DataSpec | None) -> str:
    """Why the data cannot feed this step ('' when it can): no train split for a recipe that trains,
    no calibration or train examples for one that calibrates, no labels to train on."""
    if recipe in NEEDS_TRAIN:
        if not has_train(spec):
            return (
                f"{recipe} trains on the data's train split, and the data has none: give data.train "
                "or data.split"
            )
        if not labelled(spec):
            return f"{recipe} trains on labelled examples, and the data has no labels"
    if fine_tunes(recipe, params):
        if not has_train(spec):
            return (
                f"{recipe} structure channels fine-tunes on the data's train split, and the data has "
                "none: give data.train or data.split, or set fine_tune_epochs: 0"
            )
        if not labelled(spec):
            return f"{recipe} structure channels fine-tunes on labelled examples, and the data has no labels"
    if needs_calibration(recipe, params) and not has_train(spec):
        has_calibration = spec is not None and getattr(spec, "calibration", None) is not None
        if not has_calibration:
            return (
                f"{recipe} calibrates on example inputs, and the data has neither a calibration nor a "
                "train split: give data.calibration (or data.train / data.split)"
            )
    return ""


def check_loaded_data(scenario: Scenario, data: Dataset, path: Path) -> None:
    """The same rules on the loaded data, for what only loading shows (a python: function that
    returned no train split or no labels): UserError naming the step or gate."""
    for i, variant in enumerate(scenario.variants):
        for j, step in enumerate(variant.steps):
            where = f"{path}: variants[{i}].steps[{j}].recipe"
            trains = step.recipe in NEEDS_TRAIN or fine_tunes(step.recipe, step.params)
            if trains and (data.train is None or data.train.labels is None):
                raise UserError(
                    f"{where}: {step.recipe} trains on labelled examples, and the data has no "
                    "labelled train split"
                )
            if needs_calibration(step.recipe, step.params) and data.calibration_split() is None:
                raise UserError(
                    f"{where}: {step.recipe} calibrates on example inputs, and the data has "
                    "neither a calibration nor a train split"
                )
    if not data.labelled:
        for metric in scenario.gates:
            if metric in LABELLED_METRICS:
                raise UserError(
                    f"{path}: gates.{metric}: needs labelled data, but the test split has no labels"
                )


def source_kind(model: ModelSpec, scenario_dir: Path) -> str:
    """The kind of `model.source` (a key of KIND_LABELS), from its name and, for a SavedModel
    folder, whether tf_keras wrote it."""
    if model.is_builtin:
        return "builtin"
    if model.is_python:
        return "python"
    path = resolve_source(model.source, scenario_dir)
    if path.is_dir():
        return "savedmodel-keras" if (path / KERAS_METADATA).is_file() else "savedmodel"
    # the descriptor's format names ("torchscript", "torch.export", "keras", "h5") are the kinds
    return framework(model.framework).user_formats.get(path.suffix.lower(), "unknown")


def _mode_refusal(recipe: str, params: Mapping[str, Any], kind: str) -> str:
    # torchao's weight-only int8 swaps nn.Linear weights; a .pt2 program has no nn.Linear modules
    # left, only the PT2E flow (dynamic or static) quantizes its graph
    if (
        recipe == "torch.int8"
        and kind == "torch.export"
        and params.get("mode", "weight_only") == "weight_only"
    ):
        return (
            "torch.int8 mode 'weight_only' needs nn.Linear modules, which a torch.export file (.pt2) "
            "does not keep; use mode 'dynamic' or 'static' (PT2E on the exported graph)"
        )
    # channel pruning rebuilds nn.Conv/nn.Linear modules, which a torch.export program has no more
    if recipe == "torch.prune" and kind == "torch.export" and params.get("structure") == "channels":
        return (
            "torch.prune structure 'channels' rebuilds conv and linear modules, which a torch.export file "
            "(.pt2) does not keep; give a python: factory, or use structure 'unstructured'"
        )
    return ""


def refusal(
    recipes: Sequence[str], kind: str, params: Sequence[Mapping[str, Any]] | None = None
) -> tuple[int, str] | None:
    """(step index, reason) for the first step that cannot apply to what reaches it, else None."""
    for index, recipe in enumerate(recipes):
        by_mode = _mode_refusal(recipe, params[index] if params else {}, kind)
        if by_mode:
            return index, by_mode
        accepted = ACCEPTS.get(recipe)
        if accepted is None or kind not in KIND_LABELS:
            return None  # a plugin recipe or a plugin format: its own code checks the model
        if kind not in accepted:
            names = ", ".join(KIND_LABELS[k] for k in sorted(accepted) if k in KIND_LABELS)
            remedy = _REMEDY.get(kind, "")
            reason = f"{recipe} cannot compress {KIND_LABELS.get(kind, kind)}; it compresses {names}" + (
                f" ({remedy})" if remedy else ""
            )
            return index, reason
        kind = PRODUCES.get(recipe, kind)
    return None
