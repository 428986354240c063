"""Validate-time checks of the data block that need the file system or the model block.

Cheap by design, as `harness validate` must be: files and folders exist, an npz has the named
arrays (read from the zip directory and .npy headers), a table has the columns (its header only),
an image folder has class subfolders; the data's inputs match model.inputs. A python function's
module is not imported here: that runs user code, which validating should not do.
"""

from __future__ import annotations

from pathlib import Path

from harness.data.images import check_images
from harness.data.npz import array_names, check_npz
from harness.data.npz import input_key as npz_input_key
from harness.data.parts import DataProblem, default_input_name, file_parts
from harness.data.synthetic import check_synthetic
from harness.data.tables import check_table
from harness.errors import UserError
from harness.scenario.data_spec import (
    DataSpec,
    FileDataSpec,
    ImagesSpec,
    NpzSpec,
    PythonDataSpec,
    SyntheticSpec,
    TableSpec,
)
from harness.scenario.schema import ModelSpec, Scenario, resolve_source


def check_data(scenario: Scenario, path: Path) -> None:
    """UserError (one line: the scenario file, the data key, what was expected) for the first problem
    of the data block that the schema cannot see. Nothing to check without a data block."""
    if scenario.data is None:
        return
    try:
        _check(scenario.data, scenario.model, path.parent)
    except DataProblem as exc:
        raise UserError(f"{path}: {exc.key}: expected {exc}") from None


def _check(spec: DataSpec, model: ModelSpec, folder: Path) -> None:
    if isinstance(spec, SyntheticSpec):
        _check_synthetic(spec, model)
        return
    if model.task == "regression":
        if isinstance(spec, ImagesSpec):
            raise DataProblem("data.kind", "model.task classification for images (their folders are classes)")
        for key in ("classes", "num_classes"):
            if getattr(spec, key) is not None:
                raise DataProblem(f"data.{key}", "no classes with model.task regression")
    if isinstance(spec, PythonDataSpec):
        return  # its module is imported when the data is loaded, not when the scenario is validated
    _check_names(spec, model)
    for part, written in file_parts(spec).items():
        file = resolve_source(written, folder)
        if isinstance(spec, NpzSpec):
            _check_shapes(spec, model, check_npz(spec, model, part, file))
        elif isinstance(spec, TableSpec):
            check_table(spec, model, part, file)
        else:
            check_images(spec, model, part, file)


def _check_names(spec: FileDataSpec, model: ModelSpec) -> None:
    """The data's input names (where the block shows them) are the model's declared inputs."""
    if not model.inputs:
        return
    if isinstance(spec, NpzSpec):
        names, key = list(array_names(spec, model, "test")), "data.inputs"
    elif isinstance(spec, TableSpec):
        names = list(spec.inputs) if isinstance(spec.inputs, dict) else [default_input_name(model)]
        key = "data.inputs"
    else:
        names, key = [spec.input or default_input_name(model)], "data.input"
    declared = [decl.name for decl in model.inputs]
    if set(names) != set(declared):
        raise DataProblem(
            key,
            f"the inputs model.inputs declares ({', '.join(declared)}), as a mapping of input name to "
            f"data for several; the data gives {', '.join(names)}",
        )


def _check_shapes(spec: NpzSpec, model: ModelSpec, shapes: dict[str, tuple[int, ...]]) -> None:
    for decl in model.inputs or []:
        shape = shapes.get(decl.name)
        if shape is not None and tuple(decl.shape) != shape:
            raise DataProblem(
                npz_input_key(spec, decl.name),
                f"examples of shape {list(decl.shape)} for input {decl.name!r}, as model.inputs declares; "
                f"the array's are {list(shape)}",
            )


def _check_synthetic(spec: SyntheticSpec, model: ModelSpec) -> None:
    check_synthetic(spec, model)
    if not (spec.inputs and model.inputs):
        return
    declared = {decl.name: decl for decl in model.inputs}
    if {d.name for d in spec.inputs} != set(declared):
        raise DataProblem(
            "data.inputs",
            f"the inputs model.inputs declares ({', '.join(declared)}); the block generates "
            f"{', '.join(d.name for d in spec.inputs)}",
        )
    for i, generated in enumerate(spec.inputs):
        if list(generated.shape) != list(declared[generated.name].shape):
            raise DataProblem(
                f"data.inputs[{i}].shape", f"{list(declared[generated.name].shape)} as model.inputs declares"
            )
