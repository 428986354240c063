"""The history store is append-only JSON Lines: appends never touch earlier bytes, concurrent
writers lose nothing, bad lines are one-line errors, and pandas opens it as it is. Also the rows a
run becomes, the testbed id, the commit, and `record_run` returning the run's trends."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from harness.errors import UserError

# the testbed module, not its functions: pytest would collect `testbed_id` as a test
from harness.history import store, testbed
from harness.history.record import HistoryRecord
from harness.history.recording import record_run
from tests.conftest import ROOT
from tests.unit.report_records import make_run


def record(i: int, value: float = 10.0, **fields: object) -> HistoryRecord:
    base: dict[str, object] = {
        "run_id": f"run{i:03d}",
        "time": f"2025-02-01T{i % 24:02d}:00:00+00:00",
        "scenario": "digits",
        "variant": "int8",
        "metric": "latency_p95_ms",
        "value": value,
        "testbed": "ci",
        "annotations": {"torch": "2.13.0"},
    }
    return HistoryRecord(**{**base, **fields})  # type: ignore[arg-type]


def test_missing_folder_is_an_empty_history(tmp_path: Path) -> None:
    assert store.read(tmp_path / "nope") == []


def test_records_round_trip_and_appending_never_changes_earlier_bytes(tmp_path: Path) -> None:
    history = tmp_path / "hist" / "nested"
    first = [record(0), record(1, commit="abc", valid=False)]
    store.append(history, first)
    path = history / store.HISTORY_FILE
    before = path.read_bytes()
    store.append(history, [record(2, 11.5, annotations={"torch": "2.14.0", "python": "3.11"})])
    after = path.read_bytes()
    assert after.startswith(before)
    assert after.count(b"\n") == 3
    assert store.read(history) == [*first, record(2, 11.5, annotations={"torch": "2.14.0", "python": "3.11"})]


def test_concurrent_appends_from_several_processes_lose_no_line(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from harness.history import store
        from harness.history.record import HistoryRecord
        writer = int(sys.argv[2])
        for i in range(40):
            rows = [HistoryRecord(run_id=f"w{writer}-{i}", time="2025-01-01T00:00:00+00:00", scenario="s",
                                  variant="v", metric=f"m{k}", value=float(i), testbed="t") for k in range(3)]
            store.append(Path(sys.argv[1]), rows)
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path), str(w)], cwd=ROOT) for w in range(4)
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    records = store.read(tmp_path)
    assert len(records) == 4 * 40 * 3
    # each append's rows stay together: no writer's lines were interleaved with another's
    for start in range(0, len(records), 3):
        assert len({r.run_id for r in records[start : start + 3]}) == 1


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("{not json", "line 2: not JSON"),
        ("[1, 2]", "line 2: expected a JSON object"),
        ('{"format_version": 1, "run_id": "r"}', "line 2: time: missing (expected an ISO 8601 time string)"),
        ('{"format_version": "1"}', "line 2: format_version: expected an integer"),
    ],
)
def test_a_malformed_line_is_a_one_line_error_with_its_number(
    tmp_path: Path, line: str, expected: str
) -> None:
    store.append(tmp_path, [record(0)])
    with (tmp_path / store.HISTORY_FILE).open("a") as fh:
        fh.write(line + "\n")
    with pytest.raises(UserError, match=re.escape(expected)) as info:
        store.read(tmp_path)
    assert "\n" not in str(info.value)
    assert str(tmp_path / store.HISTORY_FILE) in str(info.value)


def test_a_bad_value_names_the_field(tmp_path: Path) -> None:
    data = dataclasses.asdict(record(0))
    data["value"] = "fast"
    (tmp_path / store.HISTORY_FILE).write_text(json.dumps(data) + "\n")
    with pytest.raises(UserError, match="line 1: value: expected a finite number, got 'fast'"):
        store.read(tmp_path)


def test_a_newer_format_is_refused(tmp_path: Path) -> None:
    data = {**dataclasses.asdict(record(0)), "format_version": 99}
    (tmp_path / store.HISTORY_FILE).write_text(json.dumps(data) + "\n")
    with pytest.raises(UserError, match="format_version 99 is newer than this harness reads"):
        store.read(tmp_path)


def test_appending_after_an_interrupted_write_is_refused(tmp_path: Path) -> None:
    store.append(tmp_path, [record(0)])
    path = tmp_path / store.HISTORY_FILE
    with path.open("a") as fh:
        fh.write('{"run_id": "half')
    size = path.stat().st_size
    with pytest.raises(UserError, match="line 2 is incomplete"):
        store.append(tmp_path, [record(1)])
    assert path.stat().st_size == size


def test_pandas_opens_the_store_as_a_table(tmp_path: Path) -> None:
    store.append(tmp_path, [record(i, 10.0 + i) for i in range(5)])
    frame = pd.read_json(tmp_path / store.HISTORY_FILE, lines=True)
    assert len(frame) == 5
    assert {"run_id", "time", "scenario", "variant", "metric", "value", "testbed", "valid"} <= set(
        frame.columns
    )
    assert frame["value"].tolist() == [10.0, 11.0, 12.0, 13.0, 14.0]
    assert frame["annotations"][0] == {"torch": "2.13.0"}


def test_series_is_in_time_order_whatever_the_file_order() -> None:
    rows = [record(3), record(1), record(2, metric="throughput_rps"), record(0)]
    assert [r.run_id for r in store.series(rows, rows[0].key)] == ["run000", "run001", "run003"]


def test_a_run_becomes_one_row_per_variant_and_finite_metric() -> None:
    result = make_run()
    result.variants[0].measurements[-1].metrics["latency_p99_ms"] = float("nan")
    result.environment["python"] = "3.11"
    rows = store.records_from_run(result, "ci", "abc123")
    reference = [r for r in rows if r.variant == "reference"]
    assert "latency_p99_ms" not in {r.metric for r in reference}
    assert len(rows) == sum(len(v.metrics) for v in result.variants) - 1
    first = rows[0]
    assert (first.run_id, first.time, first.scenario, first.testbed, first.commit) == (
        result.run_id,
        result.started_at,
        "digits",
        "ci",
        "abc123",
    )
    assert first.outcome == "regression"
    assert first.annotations["torch"] == "2.5.1"
    assert first.annotations["python"] == "3.11"
    assert first.annotations["cpu_model"] == "Test CPU"
    assert len(first.annotations["fingerprint"]) == 12
    pruned = {r.metric: r.valid for r in rows if r.variant == "pruned"}  # its measurement was INVALID
    assert pruned["latency_p95_ms"] is False
    assert pruned["model_size_bytes"] is True  # the artifact's size stands whatever the load did
    assert all(r.valid for r in reference)


def test_testbed_is_the_label_or_cpu_model_and_cores() -> None:
    env = {"cpu_model": "AMD EPYC  7763 64-Core Processor", "logical_cores": 4}
    assert testbed.testbed_id(env, None) == "AMD EPYC 7763 64-Core Processor x4"
    assert testbed.testbed_id(env, "  ubuntu-latest ") == "ubuntu-latest"
    assert testbed.testbed_id(env, " ") == "AMD EPYC 7763 64-Core Processor x4"
    assert testbed.testbed_id({}, None) == "unknown cpu"


def test_commit_comes_from_github_sha_then_git_else_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_SHA", "f" * 40)
    assert testbed.current_commit(tmp_path) == "f" * 40
    monkeypatch.delenv("GITHUB_SHA")
    assert testbed.current_commit(tmp_path) is None  # not a repository
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert testbed.current_commit(tmp_path) is None  # no commit yet
    assert testbed.current_commit(tmp_path / "missing") is None


def _nightly(i: int, p95: float, *, valid: bool = True):  # type: ignore[no-untyped-def]
    result = make_run()
    result.run_id = f"night{i:02d}"
    result.started_at = f"2025-03-{1 + i:02d}T02:00:00+00:00"
    result.variants = result.variants[:1]
    metrics = result.variants[0].measurements[-1].metrics
    metrics["latency_p95_ms"] = p95
    result.variants[0].measurements[-1].points[-1].validity.valid = valid
    return result


def test_record_run_appends_and_returns_a_trend_per_gated_metric(tmp_path: Path) -> None:
    history = tmp_path / "history"
    for i in range(12):
        trends = record_run(history, _nightly(i, 10.0 if i < 9 else 13.0), testbed_label="ci", commit=f"c{i}")
    metrics = [t.metric for t in trends]
    assert metrics == ["latency_p95_ms", "accuracy", "error_rate", "throughput_rps"]
    p95 = trends[0]
    assert (p95.variant, p95.testbed, len(p95.values), p95.own_index) == ("reference", "ci", 12, 11)
    assert [c.run_id for c in p95.change_points] == ["night09"]
    assert p95.note == ""
    assert len(store.read(history)) == 12 * len(make_run().variants[0].metrics)


def test_record_run_notes_too_few_points_and_an_invalid_own_point(tmp_path: Path) -> None:
    trends = record_run(tmp_path, _nightly(0, 10.0, valid=False), testbed_label="ci", commit=None)
    assert trends[0].valid == [False]
    assert "10 valid points are needed before change points are looked for (have 0)" in trends[0].note
    assert "INVALID" in trends[0].note


def test_record_run_reads_the_store_before_appending(tmp_path: Path) -> None:
    (tmp_path / store.HISTORY_FILE).write_text("garbage\n")
    with pytest.raises(UserError, match="line 1: not JSON"):
        record_run(tmp_path, _nightly(0, 10.0), testbed_label="ci", commit=None)
    assert (tmp_path / store.HISTORY_FILE).read_text() == "garbage\n"
