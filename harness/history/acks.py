"""Acknowledged changes: `perf-acks.yaml` entries that start a new segment of a series.

A change point found in the nightly history keeps being reported until someone says it is
expected (a new library version, a deliberate trade-off). An entry names the series and the run
from which the new level holds; points before that run are then left out of change-point
detection, so the acknowledged step is not reported again while a later step still is:

    - scenario: digits-quickstart
      variant: int8          # or "*": every variant
      metric: latency_p95_ms # or "*": every metric
      from_run: 20250301-020000-digits-quickstart-1a2b   # "from-run" is accepted too
      reason: torch 2.13 is slower on int8 linear layers; accepted in #123

An entry applies on every testbed. Run ids are per testbed (each machine runs its own runs), so on
a testbed that never ran `from_run` the segment starts at the first run at or after its time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.errors import UserError
from harness.history.record import HistoryRecord
from harness.history.store import parse_time

ACKS_FILE = "perf-acks.yaml"
WILDCARD = "*"
_KEYS = ("scenario", "variant", "metric", "from_run", "reason")
_ALIASES = {"from-run": "from_run"}  # the issue spells it with a dash; YAML users write both


@dataclass(frozen=True)
class Ack:
    """One acknowledged change: from `from_run` on, the series of (scenario, variant, metric) has a
    new level. `variant` and `metric` may be "*" (all)."""

    scenario: str
    variant: str
    metric: str
    from_run: str
    reason: str

    def matches(self, scenario: str, variant: str, metric: str) -> bool:
        return (
            self.scenario == scenario
            and self.variant in (WILDCARD, variant)
            and self.metric in (WILDCARD, metric)
        )


def load_acks(path: Path | None) -> list[Ack]:
    """The entries of `path`; with None, `perf-acks.yaml` in the working directory if it exists.

    A file named explicitly must exist: a typo in `--acks` would otherwise silently re-report
    every acknowledged change. Bad entries are a one-line UserError naming the entry and the key."""
    if path is None:
        path = Path(ACKS_FILE)
        if not path.is_file():
            return []
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such acknowledgements file (expected a YAML list of entries)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the acknowledgements file: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise UserError(f"{path}: not valid YAML{line}: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return []  # an empty file: nothing acknowledged yet
    if not isinstance(data, list):
        raise UserError(
            f"{path}: expected a YAML list of entries ({', '.join(_KEYS)}), got {type(data).__name__}"
        )
    return [_ack_from(path, i, len(data), entry) for i, entry in enumerate(data)]


def _ack_from(path: Path, index: int, total: int, entry: Any) -> Ack:
    where = f"{path}: entry {index + 1} of {total}"
    if not isinstance(entry, Mapping):
        raise UserError(f"{where}: expected a mapping with keys {', '.join(_KEYS)}, got {entry!r}")
    values: dict[str, str] = {}
    for raw_key, value in entry.items():
        key = _ALIASES.get(str(raw_key), str(raw_key))
        if key not in _KEYS:
            raise UserError(f"{where}: unknown key {raw_key!r} (expected {', '.join(_KEYS)})")
        if key in values:
            raise UserError(f"{where}: {key}: given twice (from_run and from-run are the same key)")
        if not isinstance(value, str) or not value.strip():
            raise UserError(
                f"{where}: {raw_key}: expected a non-empty string, got {value!r} "
                "(quote values YAML would read as numbers or dates)"
            )
        values[key] = value.strip()
    for key in _KEYS:
        if key not in values:
            raise UserError(f"{where}: {key}: required (every entry has {', '.join(_KEYS)})")
    for key in ("scenario", "from_run"):
        if values[key] == WILDCARD:
            raise UserError(f"{where}: {key}: '*' is only allowed for variant and metric")
    return Ack(**values)


def segment_start(series: Sequence[HistoryRecord], acks: Sequence[Ack], run_times: Mapping[str, str]) -> int:
    """Where the current segment of `series` (one key, in time order) starts: the position of the
    latest matching ack's run, 0 without one."""
    return max(segment_starts(series, acks, run_times), default=0)


def segment_starts(
    series: Sequence[HistoryRecord], acks: Sequence[Ack], run_times: Mapping[str, str]
) -> list[int]:
    """The positions in `series` where a matching ack starts a segment, ascending.

    An ack's run is found by its id in the series, else (another testbed) by its time in
    `run_times` (run id -> time over the whole store); an ack whose run is unknown starts nothing."""
    if not series:
        return []
    first = series[0]
    starts = {
        _position(series, ack.from_run, run_times)
        for ack in acks
        if ack.matches(first.scenario, first.variant, first.metric)
    }
    return sorted(s for s in starts if s is not None)


def _position(series: Sequence[HistoryRecord], run_id: str, run_times: Mapping[str, str]) -> int | None:
    for i, record in enumerate(series):
        if record.run_id == run_id:
            return i
    when = run_times.get(run_id)
    if when is None:
        return None
    moment = parse_time(when)
    return next((i for i, r in enumerate(series) if parse_time(r.time) >= moment), len(series))


def unknown_acks(acks: Sequence[Ack], run_times: Mapping[str, str]) -> list[Ack]:
    """Acks whose run is not in the history at all: most likely a mistyped run id."""
    return [ack for ack in acks if ack.from_run not in run_times]
