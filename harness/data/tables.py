"""The table kind: a CSV or Parquet file read with pandas, feature columns and label columns.

pandas is imported only to load; `check_table` reads the header alone (the csv module, or the
Parquet schema), so `harness validate` neither imports pandas nor reads the rows.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from harness.data.parts import PART_KEYS, DataProblem, Part, default_input_name, file_record
from harness.errors import first_line
from harness.scenario.data_spec import TableSpec
from harness.scenario.schema import ModelSpec

PARQUET_SUFFIXES = (".parquet", ".pq")
_SHOWN_COLUMNS = 12  # columns listed in a message


def table_format(spec: TableSpec, file: Path) -> str:
    if spec.format != "auto":
        return spec.format
    return "parquet" if file.suffix.lower() in PARQUET_SUFFIXES else "csv"


def label_columns(spec: TableSpec) -> list[str]:
    if spec.labels is None:
        return []
    return [spec.labels] if isinstance(spec.labels, str) else list(spec.labels)


def feature_columns(
    spec: TableSpec, model: ModelSpec, columns: list[str], file: Path
) -> dict[str, list[str]]:
    """Model input name -> its columns; default every column but the labels, as one input."""
    if spec.inputs is None:
        features = [c for c in columns if c not in label_columns(spec)]
        if not features:
            raise DataProblem("data.inputs", f"feature columns in {file}; it has only {_listed(columns)}")
        return {default_input_name(model): features}
    if isinstance(spec.inputs, list):
        return {default_input_name(model): list(spec.inputs)}
    return {name: list(cols) for name, cols in spec.inputs.items()}


def input_key(spec: TableSpec, name: str) -> str:
    return f"data.inputs.{name}" if isinstance(spec.inputs, dict) and name else "data.inputs"


def read_table(spec: TableSpec, model: ModelSpec, part: str, written: str, file: Path) -> Part:
    """The table's rows as a Part; the label columns may be missing from a calibration file."""
    frame = _read_frame(spec, part, file)
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    groups = feature_columns(spec, model, columns, file)
    _check_columns(spec, part, groups, columns, file)
    inputs = {name: _numeric(frame, cols, input_key(spec, name), file) for name, cols in groups.items()}
    wanted = label_columns(spec)
    labels = None
    if wanted and all(c in columns for c in wanted):
        labels = frame[wanted[0]].to_numpy() if isinstance(spec.labels, str) else frame[wanted].to_numpy()
    return Part.from_arrays(
        inputs,
        labels,
        record=file_record(written, file),
        label_key="data.labels",
        input_key=lambda name: input_key(spec, name),
        where=str(file),
    )


def check_table(spec: TableSpec, model: ModelSpec, part: str, file: Path) -> None:
    """DataProblem unless `file` exists and its header has the label and feature columns."""
    _need_file(part, file)
    columns = _header(spec, part, file)
    _check_columns(spec, part, feature_columns(spec, model, columns, file), columns, file)


def _check_columns(
    spec: TableSpec, part: str, groups: dict[str, list[str]], columns: list[str], file: Path
) -> None:
    present = set(columns)
    for name, cols in groups.items():
        for column in cols:
            if column not in present:
                raise DataProblem(
                    input_key(spec, name), f"a column {column!r} in {file}; it has {_listed(columns)}"
                )
    if part == "calibration":
        return  # calibration data needs no labels
    for column in label_columns(spec):
        if column not in present:
            raise DataProblem("data.labels", f"a column {column!r} in {file}; it has {_listed(columns)}")


def _read_frame(spec: TableSpec, part: str, file: Path) -> Any:
    import pandas as pd

    _need_file(part, file)
    try:
        if table_format(spec, file) == "parquet":
            return pd.read_parquet(file)
        return pd.read_csv(file, sep=spec.separator)
    except (OSError, ValueError, ImportError) as exc:
        what = table_format(spec, file)
        raise DataProblem(
            PART_KEYS[part], f"a {what} file pandas can read; {file}: {first_line(exc)}"
        ) from None


def _header(spec: TableSpec, part: str, file: Path) -> list[str]:
    try:
        if table_format(spec, file) == "parquet":
            import pyarrow.parquet as pq

            return [str(name) for name in pq.read_schema(file).names]
        with file.open(newline="", encoding="utf-8-sig") as fh:
            return next(csv.reader(fh, delimiter=spec.separator), [])
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        what = table_format(spec, file)
        raise DataProblem(
            PART_KEYS[part], f"a {what} file with a header row; {file}: {first_line(exc)}"
        ) from None


def _numeric(frame: Any, columns: list[str], key: str, file: Path) -> np.ndarray:
    import pandas as pd

    for column in columns:
        series = frame[column]
        if not pd.api.types.is_numeric_dtype(series):
            raise DataProblem(
                key, f"numeric feature columns; column {column!r} of {file} holds {series.dtype}"
            )
        missing = int(series.isna().sum())
        if missing:
            raise DataProblem(key, f"a value in every row; column {column!r} of {file} has {missing} empty")
    return frame[columns].to_numpy()


def _need_file(part: str, file: Path) -> None:
    if not file.is_file():
        raise DataProblem(PART_KEYS[part], f"a CSV or Parquet file; {file} does not exist")


def _listed(columns: list[str]) -> str:
    shown = ", ".join(repr(c) for c in columns[:_SHOWN_COLUMNS])
    return (
        shown + (f" and {len(columns) - _SHOWN_COLUMNS} more" if len(columns) > _SHOWN_COLUMNS else "")
        or "no columns"
    )
