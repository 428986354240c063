"""The evaluation data of a scenario: its `data:` block read into a `Dataset`, or digits without one.

Every kind ends in the same steps, in this order: read the parts (files, folders, a function's
return value) with their labels; encode labels over all parts at once; choose rows (data.split,
a calibration count drawn from train, max_examples of test); fetch the inputs of those rows only;
cast them to the declared dtypes and check them against model.inputs. Light to import: pandas and
Pillow are imported by the readers when they read.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from harness.data.dataset import Dataset, Split
from harness.data.images import read_images
from harness.data.labels import EncodedLabels, encode_labels
from harness.data.npz import input_key as npz_input_key
from harness.data.npz import read_npz
from harness.data.parts import ALL, PART_KEYS, DataProblem, Part, file_parts
from harness.data.python_data import python_parts
from harness.data.splits import sample_rows, split_rows
from harness.data.synthetic import synthetic_parts
from harness.data.tables import input_key as table_input_key
from harness.data.tables import read_table
from harness.data.tensors import DTYPES, TensorSpec
from harness.errors import UserError, first_line
from harness.models.digits import load_digits_split
from harness.models.digits_rgb import layout_of, load_digits_rgb_split
from harness.scenario.data_spec import (
    DataSpec,
    ImagesSpec,
    NpzSpec,
    PythonDataSpec,
    SyntheticSpec,
    TableSpec,
)
from harness.scenario.schema import ModelSpec, Scenario, resolve_source

Reader = Callable[[Any, ModelSpec, str, str, Path], Part]
READERS: dict[str, Reader] = {"npz": read_npz, "table": read_table, "images": read_images}
# separate streams of data.seed: drawing calibration rows does not move the max_examples draw
CALIBRATION_STREAM, EVALUATION_STREAM = 1, 2

Rows = dict[str, tuple[str, np.ndarray]]  # split name -> (part it comes from, rows of that part)


def load_data(scenario: Scenario, scenario_dir: Path, *, scenario_file: Path | None = None) -> Dataset:
    """The scenario's Dataset: model.dataset (`model.seed`'s split) without a data block, else the block's.
    UserError naming the scenario file (or folder), the data key and what was expected."""
    spec = scenario.data
    if spec is None:
        model = scenario.model
        if model.data_shorthand == "digits_rgb":
            size = model.builtin_options.image_size
            return load_digits_rgb_split(model.seed, size, layout_of(model.framework))
        return load_digits_split(model.seed)
    try:
        return _build(spec, scenario.model, Path(scenario_dir), str(scenario_file or scenario_dir))
    except DataProblem as exc:
        raise UserError(f"{scenario_file or scenario_dir}: {exc.key}: expected {exc}") from None


def _build(spec: DataSpec, model: ModelSpec, scenario_dir: Path, origin: str) -> Dataset:
    parts = _read_parts(spec, model, scenario_dir, origin)
    for name, part in parts.items():
        if part.size == 0:
            key = "data.function" if isinstance(spec, PythonDataSpec) else PART_KEYS[name]
            raise DataProblem(key, f"at least one example; {part.where} has none")
    if isinstance(spec, SyntheticSpec):
        encoded = encode_labels(parts, model.task, None, None)
    else:
        encoded = encode_labels(parts, model.task, spec.classes, spec.num_classes)
    rows, source = _choose_rows(spec, parts, encoded, model.task == "classification")
    fetched = {}
    for split, (part_name, picked) in rows.items():
        labels = encoded.labels[part_name]
        part = parts[part_name]
        fetched[split] = _Fetched(part.fetch(picked), None if labels is None else labels[picked], part.where)
    specs = _input_specs(spec, model, fetched["test"])
    made = {split: Split(_typed(spec, split, got, specs), got.labels) for split, got in fetched.items()}
    return Dataset(
        name=spec.kind,
        inputs=specs,
        task=model.task,
        test=made["test"],
        train=made.get("train"),
        calibration=made.get("calibration"),
        num_classes=encoded.num_classes if model.task == "classification" else None,
        seed=spec.seed,
        source={
            **_origin(spec, parts),
            **source,
            **({"classes": encoded.classes} if encoded.classes else {}),
        },
    )


def _read_parts(spec: DataSpec, model: ModelSpec, scenario_dir: Path, origin: str) -> dict[str, Part]:
    if isinstance(spec, SyntheticSpec):
        return synthetic_parts(spec, model)
    if isinstance(spec, PythonDataSpec):
        return python_parts(spec, model, scenario_dir, origin)
    read = READERS[spec.kind]
    return {
        name: read(spec, model, name, written, resolve_source(written, scenario_dir))
        for name, written in file_parts(spec).items()
    }


def _choose_rows(
    spec: DataSpec, parts: dict[str, Part], encoded: EncodedLabels, classification: bool
) -> tuple[Rows, dict[str, Any]]:
    """Which rows of which part make each split, and what the report says about the choice."""

    def classes(part_name: str, picked: np.ndarray) -> np.ndarray | None:
        labels = encoded.labels[part_name]
        return labels[picked] if classification and labels is not None else None

    source: dict[str, Any] = {}
    rows: Rows = {name: (name, np.arange(part.size)) for name, part in parts.items() if name != ALL}
    if ALL in parts:
        assert not isinstance(spec, SyntheticSpec)
        assert spec.split is not None  # a part 'all' exists only with data.split
        split, seed = spec.split, spec.split.seed if spec.split.seed is not None else spec.seed
        strata = classes(ALL, np.arange(parts[ALL].size)) if split.stratify else None
        try:
            train, test = split_rows(parts[ALL].size, split.test_size, strata, seed)
        except ValueError as exc:
            raise DataProblem("data.split.test_size", str(exc)) from None
        rows["test"], rows["train"] = (ALL, test), (ALL, train)
        source["split"] = {"test_size": split.test_size, "seed": seed, "stratified": strata is not None}
    count = None if isinstance(spec, SyntheticSpec) else spec.calibration
    if isinstance(count, int):
        if "train" not in rows:
            raise DataProblem("data.calibration", "a train split to draw the count from; the data has none")
        part_name, train = rows["train"]
        if count > len(train):
            raise DataProblem("data.calibration", f"at most the {len(train)} train examples, got {count}")
        rng = np.random.default_rng([spec.seed, CALIBRATION_STREAM])
        rows["calibration"] = (
            part_name,
            train[sample_rows(len(train), count, classes(part_name, train), rng)],
        )
        source["calibration_from_train"] = count
    limit = None if isinstance(spec, SyntheticSpec) else spec.max_examples
    part_name, test = rows["test"]
    if limit is not None and limit < len(test):
        rng = np.random.default_rng([spec.seed, EVALUATION_STREAM])
        rows["test"] = (part_name, test[sample_rows(len(test), limit, classes(part_name, test), rng)])
        source["max_examples"] = {
            "limit": limit,
            "of": len(test),
            "stratified": classes(part_name, test) is not None,
        }
    return rows, source


class _Fetched(NamedTuple):
    """One split's rows: inputs as read, encoded labels, and how messages name their source."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None
    where: str


def _input_specs(spec: DataSpec, model: ModelSpec, fetched: _Fetched) -> tuple[TensorSpec, ...]:
    """One TensorSpec per input, from the test split: model.inputs' where declared, else the data's."""
    test = fetched.inputs
    declared = {decl.name: decl for decl in model.inputs or []}
    if declared and set(test) != set(declared):
        raise DataProblem(
            _input_key(spec, ""),
            f"the inputs model.inputs declares ({', '.join(declared)}); {fetched.where} gives "
            f"{', '.join(test)}",
        )
    specs = []
    for name in declared or test:
        shape = tuple(int(d) for d in test[name].shape[1:])
        decl = declared.get(name)
        if decl is not None and tuple(decl.shape) != shape:
            raise DataProblem(
                _input_key(spec, name),
                f"examples of shape {list(decl.shape)} for input {name!r}, as model.inputs declares; "
                f"those of {fetched.where} are {list(shape)}",
            )
        block_dtype = spec.dtype if isinstance(spec, TableSpec) else None
        key = _input_key(spec, name)
        dtype = decl.dtype if decl is not None else block_dtype or _file_dtype(test[name], key, fetched.where)
        specs.append(TensorSpec(name, shape, dtype))
    return tuple(specs)


def _typed(
    spec: DataSpec, split: str, fetched: _Fetched, specs: tuple[TensorSpec, ...]
) -> dict[str, np.ndarray]:
    """The inputs cast to the specs' dtypes; DataProblem when a split's inputs differ from the test data's."""
    inputs = fetched.inputs
    if set(inputs) != {s.name for s in specs}:
        raise DataProblem(
            _input_key(spec, ""),
            f"the {split} data with the test data's inputs ({', '.join(s.name for s in specs)}); "
            f"{fetched.where} has {', '.join(inputs)}",
        )
    out = {}
    for s in specs:
        array = inputs[s.name]
        if tuple(array.shape[1:]) != s.shape:
            raise DataProblem(
                _input_key(spec, s.name),
                f"{split} examples of input {s.name!r} shaped as the test data's {list(s.shape)}; "
                f"those of {fetched.where} are {list(array.shape[1:])}",
            )
        try:
            out[s.name] = np.ascontiguousarray(array, dtype=np.dtype(s.dtype))
        except (TypeError, ValueError) as exc:
            raise DataProblem(
                _input_key(spec, s.name),
                f"{s.dtype} values for input {s.name!r}; {fetched.where}: {first_line(exc)}",
            ) from None
    return out


def _file_dtype(array: np.ndarray, key: str, where: str) -> str:
    """The dtype the data keeps when nothing is declared: its own, float64 narrowed to float32 (what
    models take; a float64 model declares it in model.inputs)."""
    if array.dtype == np.float64:
        return "float32"
    if array.dtype.name not in DTYPES:
        raise DataProblem(
            key, f"one of {', '.join(DTYPES)} (declare model.inputs to cast); {where} holds {array.dtype}"
        )
    return array.dtype.name


def _input_key(spec: DataSpec, name: str) -> str:
    if isinstance(spec, NpzSpec):
        return npz_input_key(spec, name)
    if isinstance(spec, TableSpec):
        return table_input_key(spec, name)
    if isinstance(spec, ImagesSpec):
        return "data.input"
    return "data.function" if isinstance(spec, PythonDataSpec) else "data.inputs"


def _origin(spec: DataSpec, parts: dict[str, Part]) -> dict[str, Any]:
    """Where the data came from, for the report: files with their hashes, the function, or the ranges."""
    first = next(iter(parts.values())).record
    if isinstance(spec, SyntheticSpec | PythonDataSpec):
        return {"kind": spec.kind, "seed": spec.seed, **first}
    return {
        "kind": spec.kind,
        "seed": spec.seed,
        "files": {name: part.record for name, part in parts.items()},
    }
