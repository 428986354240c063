"""The report is a function of the run record: the same record, in memory or read back from
results.json, renders to the same bytes (so `harness report RUN_DIR` reproduces the run's report)."""

from __future__ import annotations

from harness.report import write_reports
from harness.results import RunResult
from tests.unit.report_records import make_broken_run, make_run

FILES = ("index.html", "junit.xml", "summary.md")


def _write(result: RunResult, run_dir) -> RunResult:
    """results.json via the record's own writer, then the record as `harness report` reads it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    result.write(run_dir)
    return RunResult.load(run_dir)


def _render(result: RunResult, run_dir) -> dict[str, bytes]:
    write_reports(result, run_dir)
    return {name: (run_dir / name).read_bytes() for name in FILES}


def test_a_record_read_back_from_results_json_renders_byte_identical_reports(tmp_path):
    result = make_run()
    # the record holds what the roundtrip must keep: a re-measure, each kind of evidence, a sweep
    # and a search, floats with long fractions
    assert [len(v.measurements) for v in result.variants] == [1, 2, 2]
    assert {v.evidence.kind for v in result.verdicts} == {"threshold", "latency", "accuracy"}
    assert len(result.variants[0].measurements[0].points) == 2
    assert result.variants[0].measurements[0].search is not None

    first = _render(result, tmp_path / "memory")
    again = _render(result, tmp_path / "memory-again")
    from_disk = _render(_write(result, tmp_path / "run"), tmp_path / "run")
    for name in FILES:
        assert first[name] == again[name], f"{name} differs between two renders of one record"
        assert first[name] == from_disk[name], f"{name} differs after the results.json roundtrip"


def test_a_broken_run_read_back_renders_byte_identical_reports(tmp_path):
    result = make_broken_run()
    first = _render(result, tmp_path / "memory")
    from_disk = _render(_write(result, tmp_path / "run"), tmp_path / "run")
    assert first == from_disk


def test_non_finite_numbers_render_as_they_read_back(tmp_path):
    result = make_run()
    reported = result.variants[0].reported
    assert reported is not None
    reported.metrics["latency_p99_ms"] = float("nan")
    result.variants[1].verdicts[0].current = float("inf")
    first = _render(result, tmp_path / "memory")
    assert first == _render(_write(result, tmp_path / "run"), tmp_path / "run")
