"""`harness history DIR`: every series' change points, on the terminal and as JSON for CI.

The JSON is what the nightly workflow turns into GitHub issues, one per change point, so each entry
carries a stable `id` (the series key and the run where the change starts): the workflow finds the
issue it opened the night before by that id and updates it instead of opening another.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness.atomic import atomic_write_json
from harness.errors import UserError
from harness.history import store
from harness.history.acks import load_acks, unknown_acks
from harness.history.changepoints import run_times, series_change_points
from harness.history.record import ChangePoint
from harness.metrics.catalog import format_value


def history_command(
    history_dir: Path,
    *,
    acks_path: Path | None,
    scenario: str | None,
    json_out: Path | None,
    min_points: int = 10,
) -> int:
    """Print each series with at least `min_points` points and its change points (or that there are
    none); with `json_out`, also write the change points as a JSON list. Returns the exit code, 0."""
    if min_points < 2:
        raise UserError(f"--min-points: expected an integer of at least 2, got {min_points}")
    records = store.read(history_dir)
    acks = load_acks(acks_path)
    path = store.history_path(history_dir)
    if scenario is not None:
        known = sorted({r.scenario for r in records})
        records = [r for r in records if r.scenario == scenario]
        if not records and known:
            raise UserError(f"--scenario {scenario!r}: not in {path} (it holds {', '.join(known)})")
    times = run_times(records)
    every = store.all_series(records)
    print(f"{path}: {len(records)} records, {len(every)} series, {len(times)} runs")
    for ack in unknown_acks(acks, times):
        print(f"warning: acknowledged run {ack.from_run!r} ({ack.scenario}) is not in the history")
    found: list[ChangePoint] = []
    checked = 0
    for key, points in every.items():
        if len(points) < min_points:
            continue
        checked += 1
        changes = series_change_points(points, acks, times, min_history=min_points)
        counted = f"{len(changes)} change point(s)" if changes else "no change point"
        print(f"{' / '.join(key)}: {len(points)} points, {counted}")
        for change in changes:
            print("  " + describe(change))
        found += changes
    skipped = len(every) - checked
    short = f" ({skipped} with fewer than {min_points} points not checked)" if skipped else ""
    if not found:
        print(f"no change points in {checked} series{short}")
    else:
        print(f"{len(found)} change point(s) in {checked} series{short}")
    if json_out is not None:
        atomic_write_json(json_out, [change_point_json(c) for c in found])
    return 0


def describe(change: ChangePoint) -> str:
    """One line: where the change starts, its size and significance, and what changed with it."""
    before = format_value(change.metric, change.before)
    after = format_value(change.metric, change.after)
    text = (
        f"from run {change.run_id} ({change.time}): {change.magnitude:+.1%} "
        f"(p={change.p_value:.4f}), {before} → {after} "
        f"[{change.points_before} points before, {change.points_after} after]"
    )
    changed = suspects(change)
    if change.commit_before or change.commit_after:
        changed.append(f"commit {_short(change.commit_before)} → {_short(change.commit_after)}")
    return text + ("; " + ", ".join(changed) if changed else "")


def suspects(change: ChangePoint) -> list[str]:
    """The annotations that differ across the change ("torch 2.12.0 → 2.13.0"): the first suspects."""
    return [f"{name} {old or '-'} → {new or '-'}" for name, (old, new) in change.annotations_changed.items()]


def _short(commit: str | None) -> str:
    return commit[:12] if commit else "-"


def change_point_id(change: ChangePoint) -> str:
    """Stable across nights: the series key and the run where the change starts, hashed."""
    canonical = json.dumps([*change.key, change.run_id], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def change_point_json(change: ChangePoint) -> dict[str, Any]:
    """The change point's fields, its `id` and a `title` fit for an issue."""
    return {
        "id": change_point_id(change),
        "title": (
            f"{change.metric} of {change.scenario}/{change.variant} on {change.testbed}: "
            f"{change.magnitude:+.1%} from run {change.run_id}"
        ),
        "summary": describe(change),
        **asdict(change),
    }
