"""Settle a model's signature from what the model records, what the scenario declares and the data.

One rule for every framework: the model's own record (a SavedModel signature, an ExportedProgram's
input specs) wins; `model.inputs` must agree with it where both exist and stands in where the
model records nothing (TorchScript, a python: factory); the data must hold exactly those inputs.
A mismatch is one line listing what the model expects. numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from harness.data.dataset import Dataset
from harness.data.tensors import OutputKind, OutputSpec, Signature, Task, TensorSpec
from harness.errors import UserError
from harness.metrics.quality import detect_output_kind
from harness.scenario.schema import InputDecl, ModelSpec


def declared_inputs(declared: Sequence[InputDecl] | None) -> tuple[TensorSpec, ...] | None:
    if declared is None:
        return None
    return tuple(TensorSpec(d.name, tuple(d.shape), d.dtype) for d in declared)


def settle_inputs(
    where: str, recorded: tuple[TensorSpec, ...] | None, model: ModelSpec, data: Dataset
) -> tuple[TensorSpec, ...]:
    """The model's inputs; UserError (prefixed by `where`, e.g. the model file) on any disagreement.

    `recorded` are the model's own specs; a recorded dimension of -1 (dynamic) takes the declared
    or the data's size. Names are matched exactly; a one-input model takes a one-input dataset
    whatever the two names are (the data's array is renamed to the model's input)."""
    declared = declared_inputs(model.inputs)
    expected = recorded or declared or data.inputs
    if recorded is not None and declared is not None:
        _agree(where, recorded, declared, "model.inputs declares")
    if recorded is not None:
        expected = tuple(_fill_dynamic(spec, declared, data) for spec in recorded)
    _agree(where, expected, data.inputs, "the data has", data_side=True)
    return expected


def _fill_dynamic(spec: TensorSpec, declared: tuple[TensorSpec, ...] | None, data: Dataset) -> TensorSpec:
    if all(d >= 0 for d in spec.shape):
        return spec
    for source in (declared or (), data.inputs):
        for other in source:
            if other.name == spec.name or len(source) == 1:
                return TensorSpec(spec.name, other.shape, spec.dtype)
    return spec


def _agree(
    where: str,
    expected: tuple[TensorSpec, ...],
    actual: tuple[TensorSpec, ...],
    what: str,
    *,
    data_side: bool = False,
) -> None:
    wanted = ", ".join(s.describe() for s in expected)
    got = ", ".join(s.describe() for s in actual)
    if len(expected) == 1 and len(actual) == 1:
        pairs = [(expected[0], actual[0])]
    else:
        by_name = {s.name: s for s in actual}
        if sorted(by_name) != sorted(s.name for s in expected):
            raise UserError(f"{where}: the model expects inputs {wanted}; {what} {got}")
        pairs = [(s, by_name[s.name]) for s in expected]
    for want, have in pairs:
        shape_ok = len(want.shape) == len(have.shape) and all(
            w < 0 or w == h for w, h in zip(want.shape, have.shape, strict=True)
        )
        # data may be cast to the model's dtype (float64 features, int32 ids); a kind change may not
        dtype_ok = want.dtype == have.dtype or (
            data_side and np.dtype(want.dtype).kind == np.dtype(have.dtype).kind
        )
        if not shape_ok or not dtype_ok:
            raise UserError(f"{where}: the model expects inputs {wanted}; {what} {got}")


def settle_output(
    where: str, task: Task, declared: str, outputs: np.ndarray, num_classes: int | None
) -> OutputSpec:
    """The output's kind and width from a sample of the model's outputs on the test data."""
    outputs = np.asarray(outputs)
    if outputs.ndim == 1:
        outputs = outputs[:, None]
    if outputs.ndim != 2:
        raise UserError(
            f"{where}: the model returns shape {list(outputs.shape)}; expected one row per example "
            "(class scores, or values for regression)"
        )
    width = int(outputs.shape[1])
    if task == "classification" and num_classes is not None and width != num_classes:
        raise UserError(
            f"{where}: the model returns {width} scores per example; the data has {num_classes} classes"
        )
    if not np.all(np.isfinite(outputs)):
        bad = int(np.sum(~np.all(np.isfinite(outputs), axis=1)))
        raise UserError(
            f"{where}: the model returns non-finite outputs for {bad} of {len(outputs)} test examples"
        )
    kind: OutputKind
    if task == "classification" and declared in ("logits", "probabilities"):
        kind = declared  # type: ignore[assignment]
    else:
        # decided once, on the base model, and kept by every variant's artifact
        kind = detect_output_kind(outputs, task)
    return OutputSpec(kind=kind, width=width)


def make_signature(inputs: tuple[TensorSpec, ...], output: OutputSpec, task: Task) -> Signature:
    return Signature(inputs=inputs, output=output, task=task)
