"""`harness run --history DIR`: append this run to the store and draw each gated metric's trend.

The order matters: the store and the acks are read first, so a corrupt store or a bad
`perf-acks.yaml` stops the command before anything is appended (a re-run then appends once).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness.history import store
from harness.history.acks import Ack, load_acks, segment_starts
from harness.history.changepoints import MIN_HISTORY, run_times, series_change_points, usable
from harness.history.record import HistoryRecord, Trend
from harness.history.testbed import current_commit, testbed_id
from harness.results import RunResult

ALWAYS_TRENDED = ("latency_p95_ms", "throughput_rps")  # drawn when measured, gated or not
TREND_POINTS = 250  # the points a Trend keeps (the latest): about eight months of nightly runs


def record_run(
    history_dir: Path,
    result: RunResult,
    *,
    testbed_label: str | None = None,
    acks_path: Path | None = None,
    commit: str | None = None,
) -> list[Trend]:
    """Append `result` to the store in `history_dir` and return one Trend per variant and gated
    metric of this run (the scenario's gates, plus p95 latency and throughput when measured).

    `commit` defaults to $GITHUB_SHA or the working directory's HEAD."""
    history_dir = Path(history_dir)
    before = store.read(history_dir)
    acks = load_acks(acks_path)
    testbed = testbed_id(result.environment, testbed_label)
    rows = store.records_from_run(
        result, testbed, commit if commit is not None else current_commit(Path.cwd())
    )
    store.append(history_dir, rows)
    return trends_for_run(result, [*before, *rows], rows, acks)


def trended_metrics(result: RunResult) -> list[str]:
    """The metrics a run's report draws a trend for: its gated metrics, then p95 and throughput."""
    gates = result.scenario.get("gates") or {}
    return list(dict.fromkeys([*gates, *ALWAYS_TRENDED]))


def trends_for_run(
    result: RunResult,
    records: Sequence[HistoryRecord],
    own: Sequence[HistoryRecord],
    acks: Sequence[Ack],
    *,
    min_history: int = MIN_HISTORY,
) -> list[Trend]:
    """One Trend per row of `own` (this run's rows) whose metric is trended, in variant order."""
    wanted = trended_metrics(result)
    times = run_times(records)
    trends = []
    for variant in result.variants:
        mine = {r.metric: r for r in own if r.variant == variant.name}
        for metric in wanted:
            row = mine.get(metric)
            if row is not None:
                trends.append(_trend(store.series(records, row.key), row, acks, times, min_history))
    return trends


def _trend(
    points: list[HistoryRecord],
    own: HistoryRecord,
    acks: Sequence[Ack],
    times: dict[str, str],
    min_history: int,
) -> Trend:
    changes = series_change_points(points, acks, times, min_history=min_history)
    starts = segment_starts(points, acks, times)
    used = len(usable(points, acks, times))
    shown = points[-TREND_POINTS:]
    ids = [p.run_id for p in shown]
    own_index = next((i for i in range(len(shown) - 1, -1, -1) if shown[i] is own), None)
    # an ack starting at the first point, or after the last, changes nothing that can be drawn
    acknowledged = [points[s].run_id for s in starts if 0 < s < len(points) and points[s].run_id in ids]
    return Trend(
        variant=own.variant,
        metric=own.metric,
        testbed=own.testbed,
        run_ids=ids,
        times=[p.time for p in shown],
        values=[p.value for p in shown],
        valid=[p.valid for p in shown],
        own_index=own_index,
        change_points=changes,
        acknowledged_from=acknowledged,
        note=_note(used, bool(starts), own, min_history),
    )


def _note(used: int, acknowledged: bool, own: HistoryRecord, min_history: int) -> str:
    notes = []
    if used < min_history:
        since = " since the latest acknowledged change" if acknowledged else ""
        notes.append(
            f"{min_history} valid points are needed before change points are looked for (have {used}{since})"
        )
    if not own.valid:
        notes.append("this run's measurement was INVALID: drawn hollow and not used to find changes")
    return "; ".join(notes)
