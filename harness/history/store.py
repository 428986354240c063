"""The history store: one JSON Lines file, appended to and never rewritten.

Each line is one `HistoryRecord` (one metric of one variant in one run on one testbed), so a user
opens the whole history in a notebook with `pandas.read_json(path, lines=True)` and a nightly job
adds a run with a plain append that git diffs as added lines only. Writers take an exclusive
`fcntl` lock on a separate lock file, so two runs appending at once never interleave; each append
is flushed and fsynced before the lock is released.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.baselines.fingerprint import fingerprint_id
from harness.errors import UserError
from harness.history.record import HISTORY_FORMAT_VERSION, HistoryRecord
from harness.metrics.catalog import is_load_metric
from harness.results import RunResult

HISTORY_FILE = "history.jsonl"
LOCK_FILE = ".history.jsonl.lock"

# (field, accepted types, what the message says is expected); `value` is checked on its own
_FIELDS: tuple[tuple[str, tuple[type, ...], str], ...] = (
    ("run_id", (str,), "a string"),
    ("time", (str,), "an ISO 8601 time string"),
    ("scenario", (str,), "a string"),
    ("variant", (str,), "a string"),
    ("metric", (str,), "a string"),
    ("testbed", (str,), "a string"),
)
_OPTIONAL: tuple[tuple[str, tuple[type, ...], str], ...] = (
    ("commit", (str, type(None)), "a string or null"),
    ("outcome", (str,), "a string"),
    ("valid", (bool,), "true or false"),
)


def history_path(history_dir: Path) -> Path:
    return Path(history_dir) / HISTORY_FILE


def append(history_dir: Path, records: Sequence[HistoryRecord]) -> None:
    """Append `records` as lines of the store (creating the folder), under an exclusive lock.

    Existing bytes are never touched. A file whose last line is incomplete (a writer killed
    mid-write) is refused rather than appended to, which would glue a record onto the broken line."""
    if not records:
        return
    history_dir = Path(history_dir)
    history_dir.mkdir(parents=True, exist_ok=True)
    data = "".join(_line(record) for record in records).encode("utf-8")
    path = history_path(history_dir)
    with _locked(history_dir):
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)  # read: the last byte
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                lines = path.read_bytes().count(b"\n") + 1
                raise UserError(
                    f"{path}: line {lines} is incomplete (a writer was interrupted); remove or complete "
                    "it before appending"
                )
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)


def _line(record: HistoryRecord) -> str:
    if not math.isfinite(record.value):
        raise ValueError(
            f"history record {record.key} of run {record.run_id}: value {record.value} is not finite"
        )
    return json.dumps(asdict(record), ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n"


@contextmanager
def _locked(history_dir: Path) -> Iterator[None]:
    fd = os.open(history_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def read(history_dir: Path) -> list[HistoryRecord]:
    """Every record of the store in file order; a missing folder or file is an empty history.

    A malformed line is a one-line UserError with its line number; a line written by a newer
    harness (format_version above this one's) is refused rather than guessed at."""
    path = history_path(history_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the history store: {exc}") from None
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            records.append(_record_from(path, number, line))
    return records


def _record_from(path: Path, number: int, line: str) -> HistoryRecord:
    where = f"{path}: line {number}"
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise UserError(
            f"{where}: not JSON ({exc.msg}); expected one history record object per line"
        ) from None
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a JSON object (one history record), got {type(data).__name__}")
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise UserError(f"{where}: format_version: expected an integer, got {version!r}")
    if version > HISTORY_FORMAT_VERSION:
        raise UserError(
            f"{where}: format_version {version} is newer than this harness reads "
            f"({HISTORY_FORMAT_VERSION}); upgrade harness"
        )
    # version 1 is the first: older lines would be migrated here, line by line
    for name, types, expected in _FIELDS:
        if name not in data:
            raise UserError(f"{where}: {name}: missing (expected {expected})")
        _check(where, name, data[name], types, expected)
    for name, types, expected in _OPTIONAL:
        if name in data:
            _check(where, name, data[name], types, expected)
    value = data.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UserError(f"{where}: value: expected a finite number, got {value!r}")
    annotations = data.get("annotations", {})
    if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
        raise UserError(f"{where}: annotations: expected an object of strings, got {annotations!r}")
    known = {k: v for k, v in data.items() if k in HistoryRecord.__dataclass_fields__}
    return HistoryRecord(**{**known, "value": float(value), "format_version": HISTORY_FORMAT_VERSION})


def _check(where: str, name: str, value: Any, types: tuple[type, ...], expected: str) -> None:
    if not isinstance(value, types):
        raise UserError(f"{where}: {name}: expected {expected}, got {value!r}")


def parse_time(text: str) -> datetime:
    """An ISO 8601 time; naive times count as UTC so rows from any writer order together, and an
    unreadable one sorts first instead of breaking the history."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def series(records: Sequence[HistoryRecord], key: tuple[str, str, str, str]) -> list[HistoryRecord]:
    """The records of one (scenario, variant, metric, testbed) in time order (stable for ties)."""
    return sorted((r for r in records if r.key == key), key=lambda r: parse_time(r.time))


def all_series(records: Sequence[HistoryRecord]) -> dict[tuple[str, str, str, str], list[HistoryRecord]]:
    """Every series, keyed in order of first appearance, each in time order (one pass over the store)."""
    grouped: dict[tuple[str, str, str, str], list[HistoryRecord]] = {}
    for r in records:
        grouped.setdefault(r.key, []).append(r)
    return {key: sorted(rows, key=lambda r: parse_time(r.time)) for key, rows in grouped.items()}


def records_from_run(result: RunResult, testbed: str, commit: str | None) -> list[HistoryRecord]:
    """One record per variant per finite metric of `result` (each variant's reported numbers).

    `valid` is False when the reported measurement was INVALID, for the metrics measured in its
    load window only: a model's size or its accuracy on the test split stand whatever the load did."""
    annotations = run_annotations(result.environment)
    rows = []
    for variant in result.variants:
        reported = variant.reported
        measured_valid = reported is None or reported.valid
        for metric, value in variant.metrics.items():
            if value is None or not math.isfinite(value):
                continue
            rows.append(
                HistoryRecord(
                    run_id=result.run_id,
                    time=result.started_at,
                    scenario=result.scenario_name,
                    variant=variant.name,
                    metric=metric,
                    value=float(value),
                    testbed=testbed,
                    commit=commit,
                    outcome=result.outcome.value,
                    valid=measured_valid or not is_load_metric(metric),
                    annotations=dict(annotations),
                )
            )
    return rows


def run_annotations(environment: dict[str, Any]) -> dict[str, str]:
    """What may explain a step without being part of the series key: package versions, Python,
    the CPU model (a testbed label can hide a machine change) and the fingerprint id."""
    out = {name: str(v) for name, v in sorted((environment.get("packages") or {}).items()) if v is not None}
    for name in ("python", "cpu_model"):
        if environment.get(name) is not None:
            out[name] = str(environment[name])
    if environment:
        out["fingerprint"] = fingerprint_id(environment)
    return out
