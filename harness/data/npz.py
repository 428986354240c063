"""The npz kind: arrays in .npz files (numpy.savez), one per model input and one of labels.

`check_npz` reads only the zip directory and each array's .npy header (names, shapes), so
`harness validate` stays fast on large files; `read_npz` loads the arrays (never pickles).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from harness.data.parts import PART_KEYS, DataProblem, Part, default_input_name, file_record
from harness.errors import first_line
from harness.scenario.data_spec import SPLIT_PLACEHOLDER, NpzSpec
from harness.scenario.schema import ModelSpec


def array_names(spec: NpzSpec, model: ModelSpec, part: str) -> dict[str, str]:
    """Model input name -> array name in the file of `part` ({split} filled in)."""
    mapping = {default_input_name(model): spec.inputs} if isinstance(spec.inputs, str) else dict(spec.inputs)
    return {name: array.replace(SPLIT_PLACEHOLDER, part) for name, array in mapping.items()}


def input_key(spec: NpzSpec, name: str) -> str:
    return "data.inputs" if isinstance(spec.inputs, str) or not name else f"data.inputs.{name}"


def labels_name(spec: NpzSpec, part: str) -> str | None:
    return None if spec.labels is None else spec.labels.replace(SPLIT_PLACEHOLDER, part)


def read_npz(spec: NpzSpec, model: ModelSpec, part: str, written: str, file: Path) -> Part:
    """One file's arrays as a Part. The labels array may be missing from a calibration file."""
    _need_file(part, file)
    try:
        with np.load(file, allow_pickle=False) as archive:
            present = set(archive.files)
            inputs = {}
            for name, array in array_names(spec, model, part).items():
                _need_array(present, array, input_key(spec, name), file)
                inputs[name] = archive[array]
            labels = _labels(spec, part, present, file)
            label_array = archive[labels] if labels is not None else None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataProblem(
            PART_KEYS[part], f"an .npz file numpy can read; {file}: {first_line(exc)}"
        ) from None
    return Part.from_arrays(
        inputs,
        label_array,
        record=file_record(written, file),
        label_key="data.labels",
        input_key=lambda name: input_key(spec, name),
        where=str(file),
    )


def check_npz(spec: NpzSpec, model: ModelSpec, part: str, file: Path) -> dict[str, tuple[int, ...]]:
    """DataProblem unless `file` holds the named arrays with one length; the example shape of each input."""
    _need_file(part, file)
    try:
        with zipfile.ZipFile(file) as archive:
            shapes = {
                member.removesuffix(".npy"): _header_shape(archive, member)
                for member in archive.namelist()
                if member.endswith(".npy")
            }
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataProblem(
            PART_KEYS[part], f"an .npz file numpy can read; {file}: {first_line(exc)}"
        ) from None
    present = set(shapes)
    wanted = {}
    for name, array in array_names(spec, model, part).items():
        _need_array(present, array, input_key(spec, name), file)
        wanted[name] = (input_key(spec, name), array)
    labels = _labels(spec, part, present, file)
    if labels is not None:
        wanted["\0labels"] = ("data.labels", labels)
    rows = {array: shapes[array][0] if shapes[array] else 1 for _, array in wanted.values()}
    if len(set(rows.values())) > 1:
        described = ", ".join(f"{array}: {count}" for array, count in rows.items())
        raise DataProblem(
            next(iter(wanted.values()))[0], f"arrays of one length in {file}; their rows are {described}"
        )
    return {name: shapes[array][1:] for name, (_, array) in wanted.items() if name != "\0labels"}


def _need_file(part: str, file: Path) -> None:
    if not file.is_file():
        raise DataProblem(PART_KEYS[part], f"an .npz file; {file} does not exist")


def _need_array(present: set[str], array: str, key: str, file: Path) -> None:
    if array not in present:
        raise DataProblem(
            key, f"an array {array!r} in {file}; it holds {', '.join(sorted(present)) or 'none'}"
        )


def _labels(spec: NpzSpec, part: str, present: set[str], file: Path) -> str | None:
    name = labels_name(spec, part)
    if name is None or (part == "calibration" and name not in present):
        return None  # calibration data needs no labels
    _need_array(present, name, "data.labels", file)
    return name


def _header_shape(archive: zipfile.ZipFile, member: str) -> tuple[int, ...]:
    with archive.open(member) as fh:
        version = np.lib.format.read_magic(fh)
        read = (
            np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        )
        shape, _, _ = read(fh)
    return tuple(shape)
