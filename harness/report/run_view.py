"""The report's view of the run as a whole: its outcome and what it means, why it broke (when it
did), and where the time went stage by stage.

Stage timings nest: the re-measures of a failed gate ("serve_start:int8-confirm1",
"load:int8-confirm1:users=4", ...) run inside the "gate" stage, so they are shown under it and not
added to the total a second time. The total is the run's wall time (finished_at - started_at).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from harness.report.evidence import OUTCOME_MEANING
from harness.report.serving_view import relative_path
from harness.results import RunResult

# stage keys of a re-measure: "<what>:<variant>-confirm<N>[:<load point>]"
_REMEASURE = re.compile(r"^[a-z_]+:[^:]+-confirm\d+(:|$)")
REMEASURE_PARENT = "gate"  # the stage the re-measures run inside
_TOLERANCE_S = 1.0  # clock rounding: stages are timed to the ms, timestamps may be to the second


def outcome_view(result: RunResult) -> dict[str, Any]:
    outcome = result.outcome
    return {
        "value": outcome.value,
        "label": outcome.value.upper(),
        "meaning": OUTCOME_MEANING[outcome],
        "exit_code": outcome.exit_code,
    }


def failure_view(result: RunResult) -> dict[str, Any] | None:
    """Why the run broke: stage, variant, message, the log to read (relative to the run folder)
    and its last lines."""
    failure = result.failure
    if failure is None:
        return None
    return {
        "stage": failure.stage,
        "variant": failure.variant,
        "message": failure.message,
        "log": relative_path(failure.log, result.run_dir) if failure.log else "",
        "log_tail": failure.log_tail.rstrip("\n"),
        "interrupted": failure.interrupted,
        "judged": [v.name for v in result.variants if v.outcome is not None],
    }


def wall_seconds(result: RunResult) -> float | None:
    """finished_at - started_at, or None when either is missing or unreadable."""
    try:
        started = datetime.fromisoformat(result.started_at)
        finished = datetime.fromisoformat(result.finished_at)
        seconds = (finished - started).total_seconds()
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None


def nested_stages(stage_seconds: dict[str, float]) -> dict[str, list[str]]:
    """{parent: [child, ...]}: the re-measure stages inside the "gate" stage, when its time covers
    theirs (a runner that times re-measures on their own gets them at the top level)."""
    children = [k for k in stage_seconds if _REMEASURE.match(k)]
    parent = stage_seconds.get(REMEASURE_PARENT)
    if not children or parent is None:
        return {}
    if sum(stage_seconds[k] for k in children) > parent + _TOLERANCE_S:
        return {}
    return {REMEASURE_PARENT: children}


def stage_rows(result: RunResult) -> list[dict[str, Any]]:
    """Rows in run order with a bar scaled to the slowest top-level stage, stages timed inside
    another indented under it, then the total (the wall time when known, else the sum of the
    top-level stages) and the time spent between stages."""
    stages = result.stage_seconds
    if not stages:
        return []
    nested = nested_stages(stages)
    inner = {k for children in nested.values() for k in children}
    top = [k for k in stages if k not in inner]
    longest = max((stages[k] for k in top), default=0.0) or 1.0
    rows: list[dict[str, Any]] = []
    for key in top:
        children = nested.get(key, [])
        note = " (includes the re-measures below)" if children else ""
        rows.append(_row(key + note, stages[key], longest, level=0))
        rows += [_row(child, stages[child], longest, level=1) for child in children]
    summed = sum(stages[k] for k in top)
    wall = wall_seconds(result)
    if wall is not None and wall + _TOLERANCE_S >= summed:
        if wall - summed >= 0.05:
            rows.append(_row("between stages", wall - summed, longest, level=0))
        text = f"{wall:.0f} s" if wall == int(wall) else f"{wall:.1f} s"  # timestamps to the second
        rows.append({"name": "total (wall clock, start to finish)", "seconds": text, "total": True})
    else:
        rows.append({"name": "total (sum of the stages above)", "seconds": f"{summed:.1f} s", "total": True})
    return rows


def _row(name: str, seconds: float, longest: float, *, level: int) -> dict[str, Any]:
    return {
        "name": name,
        "seconds": f"{seconds:.2f} s",
        "share": f"{max(0.5, 100 * seconds / longest):.1f}",
        "level": level,
        "total": False,
    }
