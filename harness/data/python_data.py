"""The python kind: `pkg.module:function` returns the data.

Importing the module runs the user's code, as pytest does with a conftest.py; so it happens at load
time only, never in `harness validate`. It is imported as model.source's python: factories are
(`harness.models.python_source`): the scenario's folder first on sys.path, restored afterwards.

The function is called without arguments and returns one of
  (inputs, labels)  labelled examples;
  inputs            unlabelled examples (latency and fidelity only);
  {"test": ..., "train": ..., "calibration": ...}  named splits, each in one of the forms above;
where inputs is an array (for a one-input model) or a dict of model input name to array.
A dict whose keys are all split names is read as named splits.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from harness.data.parts import ALL, DataProblem, Part, default_input_name, sha256_file
from harness.errors import first_line
from harness.models.python_source import call_target, import_target, parse_target
from harness.scenario.data_spec import PythonDataSpec
from harness.scenario.schema import ModelSpec

SPLIT_NAMES = ("test", "train", "calibration")
KEY = "data.function"


def call_function(target: str, scenario_dir: Path, where: str) -> tuple[Any, dict[str, Any]]:
    """The function's return value, and the record of where it came from (module file and hash).
    Importing and calling follow model.source's python: rules (harness.models.python_source); its
    UserErrors are prefixed by `where` (the scenario file and data.function)."""
    module_name, _ = parse_target(target, where)
    value = call_target(import_target(target, scenario_dir, where), target, where)
    record: dict[str, Any] = {"function": target}
    module_file = getattr(sys.modules.get(module_name), "__file__", None)
    if module_file:
        record.update(module=str(module_file), sha256=sha256_file(Path(module_file)))
    return value, record


def python_parts(spec: PythonDataSpec, model: ModelSpec, scenario_dir: Path, origin: str) -> dict[str, Part]:
    """The returned data as parts: 'all' (to be split by data.split), or the named splits. `origin`
    names the scenario in the messages of import and call failures."""
    value, record = call_function(spec.function, scenario_dir, f"{origin}: {KEY}")
    if _is_split_dict(value):
        if "test" not in value:
            raise DataProblem(
                KEY, f"a 'test' entry among the returned splits; {spec.function} returned {sorted(value)}"
            )
        if spec.split is not None:
            raise DataProblem("data.split", f"no data.split when {spec.function} returns named splits")
        if spec.calibration is not None and "calibration" in value:
            raise DataProblem(
                "data.calibration", f"no count when {spec.function} returns a 'calibration' split"
            )
        return {name: _part(value[name], model, record, f"{spec.function}()[{name!r}]") for name in value}
    return {ALL if spec.split is not None else "test": _part(value, model, record, f"{spec.function}()")}


def _is_split_dict(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(key in SPLIT_NAMES for key in value)


def _part(value: Any, model: ModelSpec, record: dict[str, Any], where: str) -> Part:
    labels = None
    if isinstance(value, tuple | list) and len(value) == 2:
        value, labels = value
        labels = _array(labels, where, "labels")
    if isinstance(value, Mapping):
        inputs = {str(name): _array(array, where, f"input {name!r}") for name, array in value.items()}
    else:
        inputs = {default_input_name(model): _array(value, where, "inputs")}
    return Part.from_arrays(
        inputs, labels, record=record, label_key=KEY, input_key=lambda _name: KEY, where=where
    )


def _array(value: Any, where: str, what: str) -> np.ndarray:
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise DataProblem(KEY, f"arrays; the {what} of {where} is not one ({first_line(exc)})") from None
    if array.ndim == 0 or (array.dtype.kind == "O" and what != "labels"):
        raise DataProblem(
            KEY, f"arrays with one row per example; the {what} of {where} is {type(value).__name__}"
        )
    return array
