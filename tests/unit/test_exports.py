"""Exports of a run for other tools: pytest-benchmark's JSON and github-action-benchmark's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pytest_benchmark.logger import Logger
from pytest_benchmark.stats import Stats
from pytest_benchmark.storage.file import FileStorage

from harness.baselines import histogram
from harness.report import write_reports
from harness.report.exports import (
    ACTION_BENCHMARK_FILE,
    BENCHMARK_FILE,
    action_benchmark_json,
    pytest_benchmark_json,
    write_exports,
)
from harness.results import RunResult
from tests.unit.report_records import make_broken_run, make_run

# known latencies (ms): a skewed spread with a slow tail, as a served model gives
KNOWN_MS = np.concatenate([np.linspace(1.5, 3.0, 900), np.linspace(3.0, 12.0, 100)])


def _with_known_latencies(result: RunResult) -> RunResult:
    reported = result.variants[0].reported
    assert reported is not None
    assert reported.gated is not None
    reported.gated.latency_histogram = histogram.encode(KNOWN_MS)
    return result


@pytest.fixture(scope="module")
def document() -> dict:
    return pytest_benchmark_json(_with_known_latencies(make_run()))


def test_write_exports_writes_both_files(tmp_path):
    paths = write_exports(make_run(), tmp_path / "run")
    assert paths == [tmp_path / "run" / BENCHMARK_FILE, tmp_path / "run" / ACTION_BENCHMARK_FILE]
    for path in paths:
        json.loads(path.read_text(encoding="utf-8"))


def test_every_run_folder_gets_the_exports(tmp_path):
    write_reports(make_run(), tmp_path)
    assert (tmp_path / BENCHMARK_FILE).is_file()
    assert (tmp_path / ACTION_BENCHMARK_FILE).is_file()


def test_benchmark_json_has_pytest_benchmarks_schema(document):
    assert {"machine_info", "commit_info", "benchmarks", "datetime", "version"} <= set(document)
    assert {"node", "machine", "python_version", "system", "cpu"} <= set(document["machine_info"])
    assert {"id", "dirty", "project", "branch"} <= set(document["commit_info"])
    assert document["datetime"] == make_run().started_at  # the run's, so a re-render keeps it
    assert document["machine_info"]["harness"]["fingerprint_id"]
    names = [b["name"] for b in document["benchmarks"]]
    assert names == [v.name for v in make_run().variants]
    for bench in document["benchmarks"]:
        assert {"name", "fullname", "group", "params", "stats", "options", "extra_info"} <= set(bench)
        assert set(Stats.fields) <= set(bench["stats"])
        assert bench["fullname"] == f"digits::{bench['name']}"
        assert bench["group"] == "digits"
        assert bench["params"]["variant"] == bench["name"]
        assert "data" not in bench["stats"]  # per-request data would grow with the run


def test_stats_are_seconds_per_request_and_match_numpy(document):
    stats = document["benchmarks"][0]["stats"]
    # what the record keeps: the histogram's buckets, within 0.05% of what was measured
    kept = make_run()
    kept = _with_known_latencies(kept)
    reported = kept.variants[0].reported
    assert reported is not None
    assert reported.gated is not None
    seconds = reported.gated.latencies_ms() / 1000.0
    assert stats["rounds"] == len(KNOWN_MS) == seconds.size
    assert stats["min"] == pytest.approx(seconds.min(), rel=1e-12)
    assert stats["max"] == pytest.approx(seconds.max(), rel=1e-12)
    assert stats["mean"] == pytest.approx(seconds.mean(), rel=1e-12)
    assert stats["median"] == pytest.approx(np.median(seconds), rel=1e-12)
    assert stats["stddev"] == pytest.approx(seconds.std(ddof=1), rel=1e-9)
    assert stats["total"] == pytest.approx(seconds.sum(), rel=1e-12)
    assert stats["ops"] == pytest.approx(1 / seconds.mean(), rel=1e-12)
    assert stats["iqr"] == pytest.approx(stats["q3"] - stats["q1"])
    assert stats["q1"] <= stats["median"] <= stats["q3"]
    # and the measured latencies, in seconds
    assert stats["mean"] == pytest.approx(KNOWN_MS.mean() / 1000, rel=5e-4)
    assert stats["median"] == pytest.approx(np.median(KNOWN_MS) / 1000, rel=5e-4)
    assert stats["max"] == pytest.approx(KNOWN_MS.max() / 1000, rel=5e-4)


def test_extra_info_carries_the_reviewers_figures(document):
    extra = document["benchmarks"][0]["extra_info"]
    metrics = make_run().variants[0].metrics
    assert extra["latency_p95_ms"] == metrics["latency_p95_ms"]
    assert extra["throughput_rps"] == metrics["throughput_rps"]
    assert extra["error_rate"] == metrics["error_rate"]
    assert extra["accuracy"] == metrics["accuracy"]
    assert extra["valid"] is True
    assert extra["outcome"] == "pass"


def test_pytest_benchmark_reads_the_file(tmp_path):
    write_exports(_with_known_latencies(make_run()), tmp_path)
    storage = FileStorage(tmp_path / "storage", logger=Logger(Logger.QUIET))
    loaded = list(storage.load_benchmarks(str(tmp_path / BENCHMARK_FILE)))
    assert [b["name"] for b in loaded] == ["reference", "int8", "pruned"]
    assert loaded[0]["mean"] == pytest.approx(KNOWN_MS.mean() / 1000, rel=5e-4)
    # and its own command line compares it
    cli = Path(sys.executable).with_name("pytest-benchmark")
    done = subprocess.run(
        [str(cli), "compare", str(tmp_path / BENCHMARK_FILE), "--columns", "min,mean,median,max,rounds"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "benchmark 'digits': 3 tests" in done.stdout
    assert "reference" in done.stdout
    assert "int8" in done.stdout


def test_a_variant_that_served_nothing_has_no_benchmark():
    result = make_run()
    reported = result.variants[1].reported
    assert reported is not None
    assert reported.gated is not None
    reported.gated.latency_histogram = ""
    names = [b["name"] for b in pytest_benchmark_json(result)["benchmarks"]]
    assert names == ["reference", "pruned"]
    assert isinstance(pytest_benchmark_json(make_broken_run())["benchmarks"], list)


def test_benchmark_action_json_is_custom_smaller_is_better():
    result = make_run()
    entries = action_benchmark_json(result)
    assert isinstance(entries, list)
    assert len(entries) == 2 * len(result.variants)
    for entry in entries:
        assert set(entry) <= {"name", "unit", "value", "range", "extra"}
        assert isinstance(entry["name"], str)
        assert isinstance(entry["value"], float | int)
        assert isinstance(entry.get("extra", ""), str)
    assert len({e["name"] for e in entries}) == len(entries)
    p95 = next(e for e in entries if e["name"] == "digits / int8 / latency p95")
    assert p95["unit"] == "ms"
    assert p95["value"] == result.variant("int8").metrics["latency_p95_ms"]
    errors = next(e for e in entries if e["name"] == "digits / int8 / error rate")
    assert errors["unit"] == "%"
    assert errors["value"] == pytest.approx(result.variant("int8").metrics["error_rate"] * 100)


def test_a_missing_or_non_finite_figure_gets_no_entry(tmp_path):
    result = make_run()
    reported = result.variants[0].reported
    assert reported is not None
    reported.metrics["latency_p95_ms"] = float("nan")
    del reported.metrics["error_rate"]
    names = [e["name"] for e in action_benchmark_json(result)]
    assert not any(n.startswith("digits / reference /") for n in names)
    write_exports(result, tmp_path)  # strict JSON: no NaN reaches the files
    text = (tmp_path / ACTION_BENCHMARK_FILE).read_text(encoding="utf-8")
    assert "NaN" not in text
    json.loads(text)
