"""Recording baselines: concurrent runs under the lock, and clean one-line errors when writing fails."""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest

from harness.baselines import store as store_module
from harness.baselines.store import BaselineConflictError, FileBaselineStore
from harness.errors import RunError, UserError

ENV = {"cpu_model": "Test CPU", "logical_cores": 2}
METRICS = {"reference": {"accuracy": 0.97, "latency_p95_ms": 2.0}}
# spawn, not fork: forking the multi-threaded pytest process is deprecated and can deadlock
CONTEXT = multiprocessing.get_context("spawn")


def _checked_then_record(directory: str, run_id: str, barrier: Any, results: Any) -> None:
    """One `--update-baselines` run: check before measuring, "measure", record what it saw."""
    store = FileBaselineStore(directory)
    seen = store.check("d")
    barrier.wait(timeout=60)  # both runs have read the file before either records
    try:
        store.record("d", "fp", ENV, run_id, {"reference": {"accuracy": 0.5}}, seen=seen)
        results.put((run_id, "recorded"))
    except BaselineConflictError as exc:
        results.put((run_id, str(exc)))


def _record_many(directory: str, prefix: str, count: int, barrier: Any) -> None:
    store = FileBaselineStore(directory)
    barrier.wait(timeout=60)
    for i in range(count):
        store.record("d", f"{prefix}-{i}", ENV, f"{prefix}-run-{i}", METRICS)


def _run(target: Any, *argsets: tuple[Any, ...]) -> None:
    processes = [CONTEXT.Process(target=target, args=args) for args in argsets]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0, f"{process.name} exited with {process.exitcode}"


def test_two_runs_of_one_environment_racing_the_second_is_refused_not_lost(tmp_path):
    directory = tmp_path / "baselines"
    FileBaselineStore(directory).record("d", "fp", ENV, "old", METRICS)
    barrier, results = CONTEXT.Barrier(2), CONTEXT.Queue()
    _run(_checked_then_record, *[(str(directory), run, barrier, results) for run in ("run-a", "run-b")])
    outcomes = dict(results.get(timeout=10) for _ in range(2))
    winners = [run for run, outcome in outcomes.items() if outcome == "recorded"]
    assert len(winners) == 1, outcomes
    (loser,) = set(outcomes) - set(winners)
    message = outcomes[loser]
    assert message.startswith(f"baseline file {directory / 'd.json'}: environment fp was recorded by run ")
    assert f"run {winners[0]} at " in message
    assert "not overwritten" in message
    doc = json.loads((directory / "d.json").read_text())
    assert doc["environments"]["fp"]["run_id"] == winners[0]


def test_runs_of_different_environments_racing_all_land(tmp_path):
    directory = tmp_path / "baselines"
    barrier = CONTEXT.Barrier(2)
    _run(_record_many, (str(directory), "laptop", 30, barrier), (str(directory), "ci", 30, barrier))
    fingerprints = FileBaselineStore(directory).fingerprints("d")
    assert len(fingerprints) == 60, "a read-modify-write outside the lock loses entries"


def test_an_entry_of_another_environment_written_meanwhile_is_merged(tmp_path):
    store = FileBaselineStore(tmp_path)
    store.record("d", "fp", ENV, "old", METRICS)
    seen = store.check("d")
    store.record("d", "ci", ENV, "ci-run", METRICS)  # another machine, while this run measured
    store.record("d", "fp", ENV, "mine", METRICS, seen=seen)
    doc = store.read("d")
    assert doc is not None
    assert {fid: e["run_id"] for fid, e in doc["environments"].items()} == {"fp": "mine", "ci": "ci-run"}


def test_a_first_recording_that_meets_another_first_recording_is_refused(tmp_path):
    store = FileBaselineStore(tmp_path)
    seen = store.check("d")  # no file yet
    store.record("d", "fp", ENV, "other", METRICS)
    with pytest.raises(BaselineConflictError, match=r"environment fp was recorded by run other at "):
        store.record("d", "fp", ENV, "mine", METRICS, seen=seen)
    assert store.load("d", "fp")["run_id"] == "other"


def test_an_unchanged_file_is_replaced_as_asked(tmp_path):
    store = FileBaselineStore(tmp_path)
    store.record("d", "fp", ENV, "old", METRICS)
    store.record("d", "fp", ENV, "new", METRICS, seen=store.check("d"))
    assert store.load("d", "fp")["run_id"] == "new"


# --- failures to write: one line naming the file, and the old file stays whole --------------------


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders anyway")
def test_read_only_folder_is_a_user_error_naming_the_file(tmp_path):
    store = FileBaselineStore(tmp_path / "baselines")
    path = store.record("d", "fp", ENV, "old", METRICS)
    before = path.read_bytes()
    store.directory.chmod(0o555)
    try:
        with pytest.raises(UserError, match=r"^cannot record baseline .*d\.json: Permission denied"):
            store.record("d", "fp", ENV, "new", METRICS)
    finally:
        store.directory.chmod(0o755)
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("code", "error", "message"),
    [
        (errno.EROFS, UserError, r"Read-only file system \(folder .* is not writable\)$"),
        (errno.EACCES, UserError, r"Permission denied \(folder .* is not writable\)$"),
        (errno.ENOSPC, RunError, r"No space left on device"),
    ],
)
def test_failing_write_is_a_one_line_harness_error_and_leaves_the_old_file(
    tmp_path, monkeypatch, code, error, message
):
    store = FileBaselineStore(tmp_path)
    path = store.record("d", "fp", ENV, "old", METRICS)
    before = path.read_bytes()
    real_open = os.open

    def refusing_open(file: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if str(file).endswith(".tmp"):  # the atomic write's temporary file, as a full or RO disk does
            raise OSError(code, os.strerror(code), str(file))
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    with pytest.raises(error, match=rf"^cannot record baseline {path}: {message}") as caught:
        store.record("d", "fp", ENV, "new", METRICS)
    assert type(caught.value) is error
    assert path.read_bytes() == before
    assert _files(tmp_path) == ["d.json", "d.json.lock"]


def test_failure_mid_write_leaves_no_half_written_file(tmp_path, monkeypatch):
    store = FileBaselineStore(tmp_path)
    path = store.record("d", "fp", ENV, "old", METRICS)
    before = path.read_bytes()

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(RunError, match=rf"^cannot record baseline {path}: Input/output error$"):
        store.record("d", "fp", ENV, "new", {"reference": {"accuracy": 0.1}})
    assert path.read_bytes() == before
    assert _files(tmp_path) == ["d.json", "d.json.lock"]


def test_baselines_folder_that_is_a_file_is_a_clean_error(tmp_path):
    (tmp_path / "baselines").write_text("not a folder")
    store = FileBaselineStore(tmp_path / "baselines")
    with pytest.raises(RunError, match=r"^cannot record baseline .*baselines/d\.json: "):
        store.record("d", "fp", ENV, "r", METRICS)


def test_corrupt_existing_file_is_refused_by_record_and_kept(tmp_path):
    store = FileBaselineStore(tmp_path)
    path = tmp_path / "d.json"
    path.write_bytes(b"\xff\xfe garbage")
    with pytest.raises(UserError, match=rf"^baseline file {path} is not UTF-8 text"):
        store.record("d", "fp", ENV, "r", METRICS)
    assert path.read_bytes() == b"\xff\xfe garbage"


def test_lock_file_sits_next_to_the_baseline(tmp_path):
    store = FileBaselineStore(tmp_path)
    assert store.lock_path_for("d") == tmp_path / "d.json.lock"
    assert store_module.FileBaselineStore is FileBaselineStore
