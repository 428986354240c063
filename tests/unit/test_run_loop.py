"""run_scenario with the serving and load stages faked: the loop, the outcome, and what lands on disk.

The fakes stand in for the server and the load generator only; scenario loading, the decision
rule, the baseline store and every output file are the real ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import api
from harness.baselines.store import FileBaselineStore
from harness.errors import RunError, UserError
from harness.results import Outcome, RunResult
from harness.run import variants as loop
from harness.scenario.schema import Scenario
from tests.conftest import scenario_dict
from tests.unit.records import measurement

DATA = Path(__file__).parent / "data"


class FakeServing:
    """Each call measures the next planned kind ("valid", "invalid", "dead", "slow", "boom")."""

    def __init__(self, plan: dict[str, list[str]]) -> None:
        self.plan = plan
        self.calls: list[tuple[str, int]] = []

    def __call__(self, scenario, name, prepared, data, run_dir, timings, progress, *, number, **_):
        self.calls.append((name, number))
        kinds = self.plan.get(name, ["valid"])
        kind = kinds[min(number - 1, len(kinds) - 1)]
        if kind == "boom":
            raise RunError("torchserve died while loading", log=run_dir / "variants" / name / "ts.log",
                           log_tail="line 1\nline 2\njava.lang.OutOfMemoryError")  # fmt: skip
        latencies = {"valid": (1.0, 1.1, 1.2), "invalid": (1.0, 1.1, 1.2), "slow": (50.0, 51.0, 52.0)}
        m = measurement(number, valid=kind != "invalid", latencies=latencies.get(kind, ()))
        m.metrics.update(prepared.metrics)
        m.predictions = [int(y) for y in data.y_test]
        return m


class FakePrepared:
    def __init__(self, run_dir: Path, name: str) -> None:
        path = run_dir / "variants" / name / "model.pt2"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
        self.artifact = type("A", (), {"path": path})()
        self.metrics = {"model_size_bytes": 1000.0, "accuracy_inprocess": 0.97}
        self.compression: list = []
        self.base: dict = {}
        self.stage_seconds: dict = {}
        self.details: dict = {}
        self.warnings: list = []


@pytest.fixture
def fake(monkeypatch):
    def install(plan: dict[str, list[str]]) -> FakeServing:
        serving = FakeServing(plan)
        monkeypatch.setattr(loop, "measure_variant", serving)
        monkeypatch.setattr(
            loop, "prepare_variant", lambda model, spec, d, out, data: FakePrepared(out.parents[1], spec.name)
        )
        return serving

    return install


@pytest.fixture
def run(write_scenario, tmp_path):
    def go(*, gates=None, confirm_runs=1, update=False, **overrides) -> RunResult:
        data = scenario_dict(
            gates=gates or {"latency_p95_ms": "+10%", "error_rate": 0},
            gate_policy={"confirm_runs": confirm_runs, "latency_test": "none"},
            **overrides,
        )
        return api.run_scenario(
            write_scenario(data),
            reports_dir=tmp_path / "reports",
            baselines_dir=tmp_path / "baselines",
            update_baselines=update,
        )

    return go


def test_first_invalid_then_valid_passes_with_exit_0(fake, run):
    serving = fake({"pruned-int8": ["invalid", "valid"]})
    result = run()
    assert serving.calls.count(("pruned-int8", 2)) == 1
    assert result.outcome is Outcome.PASS
    assert result.baseline.status == "recorded"
    assert [m.valid for m in result.variant("pruned-int8").measurements] == [False, True]


def test_still_invalid_after_remeasuring_exits_3_and_records_nothing(fake, run, tmp_path):
    fake({"pruned-int8": ["invalid"]})
    result = run()
    assert result.outcome is Outcome.INCONCLUSIVE
    assert result.outcome.exit_code == 3
    assert result.baseline.status == "not_written"
    assert not (tmp_path / "baselines" / "tiny.json").exists()
    on_disk = json.loads((Path(result.run_dir) / "results.json").read_text())
    assert on_disk["outcome"] == "inconclusive"
    assert on_disk["exit_code"] == 3


def test_a_dead_measurement_is_a_broken_run_not_a_regression(fake, run):
    fake({"pruned-int8": ["dead"]})
    result = run()
    assert result.outcome is Outcome.ERROR
    assert result.variant("pruned-int8").outcome is Outcome.ERROR
    assert "no request succeeded" in result.variant("pruned-int8").error


def test_confirm_runs_bounds_the_remeasures(fake, run):
    serving = fake({"reference": ["invalid"]})
    run(confirm_runs=2)
    assert [n for name, n in serving.calls if name == "reference"] == [1, 2, 3]


def test_update_baselines_rewrites_even_when_gates_fail(fake, run, tmp_path):
    fake({})
    run()
    fake({"reference": ["slow"]})
    regressed = run()
    assert regressed.outcome is Outcome.REGRESSION
    assert regressed.baseline.status == "compared"
    updated = run(update=True, gates={"latency_p95_ms": 10, "error_rate": 0})  # bare limit: 52 ms fails
    assert updated.outcome is Outcome.REGRESSION
    assert updated.baseline.status == "updated"
    stored = json.loads((tmp_path / "baselines" / "tiny.json").read_text())
    (entry,) = stored["environments"].values()
    assert entry["run_id"] == updated.run_id
    assert entry["variants"]["reference"]["metrics"]["latency_p95_ms"] == pytest.approx(52.0)


def test_a_failed_baseline_write_is_an_error_and_claims_nothing(fake, run, monkeypatch):
    fake({})

    def read_only(*args, **kwargs):
        raise UserError("cannot write baseline baselines/tiny.json: Read-only file system")

    monkeypatch.setattr(FileBaselineStore, "record", read_only)
    result = run()
    assert result.outcome is Outcome.ERROR
    assert result.failure is not None
    assert "Read-only" in result.failure.message
    assert result.baseline.status == "not_written"
    on_disk = json.loads((Path(result.run_dir) / "results.json").read_text())
    assert on_disk["baseline"]["status"] == "not_written"
    assert "Read-only" in on_disk["baseline"]["message"]
    assert (Path(result.run_dir) / "index.html").exists()
    assert (Path(result.run_dir) / "junit.xml").exists()


def test_a_corrupt_existing_baseline_stops_before_measuring(fake, run, tmp_path):
    serving = fake({})
    (tmp_path / "baselines").mkdir()
    (tmp_path / "baselines" / "tiny.json").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(Exception, match=r"tiny\.json"):
        run()
    assert serving.calls == []
    assert not (tmp_path / "reports").exists()


def test_a_run_error_keeps_what_was_measured_and_names_stage_variant_and_log(fake, run, tmp_path):
    fake({"pruned-int8": ["boom"]})
    result = run()
    assert result.outcome is Outcome.ERROR
    failure = result.failure
    assert failure is not None
    assert failure.variant == "pruned-int8"
    assert "pruned-int8" in failure.stage or failure.stage.startswith(("load", "starting", "serv"))
    assert failure.log == "variants/pruned-int8/ts.log"
    assert "OutOfMemoryError" in failure.log_tail
    (line,) = result.causes()
    assert "\n" not in line
    assert "pruned-int8" in line
    assert "ts.log" in line
    on_disk = RunResult.load(result.run_dir)
    assert [v.name for v in on_disk.variants] == ["reference", "pruned-int8"]
    assert len(on_disk.variant("reference").measurements) == 1
    assert on_disk.variant("pruned-int8").outcome is None
    assert on_disk.baseline.status == "not_written"
    assert not (tmp_path / "baselines" / "tiny.json").exists()


def test_results_json_reads_back_into_the_same_record(fake, run):
    fake({"pruned-int8": ["invalid", "valid"]})
    result = run()
    again = RunResult.load(result.run_dir)
    assert again.to_json() == result.to_json()
    assert "latencies_ms" not in (Path(result.run_dir) / "results.json").read_text()


def test_a_baseline_from_other_load_settings_is_not_compared(fake, run):
    fake({})
    run()
    fake({"reference": ["slow"]})  # 50x slower, but measured under other settings
    result = run(load={"users": 8, "warmup_s": 0.5, "measure_s": 1.5, "validity": {"max_spread": 5.0}})
    assert result.baseline.status == "compared"
    assert not [v for v in result.verdicts if v.metric == "latency_p95_ms"]
    assert "--update-baselines" in result.baseline.message
    assert result.outcome is Outcome.PASS


def test_a_run_past_its_deadline_stops_with_a_run_error(fake, run, monkeypatch):
    fake({})
    monkeypatch.setattr(Scenario, "deadline_s", lambda self: -1.0)  # already past at the first stage
    result = run()
    assert result.outcome is Outcome.ERROR
    assert result.failure is not None
    assert "deadline" in result.failure.message
    assert result.baseline.status == "not_written"


def test_a_format_1_results_file_reads_back_and_renders(tmp_path):
    """results.json as the previous harness wrote it (untyped details, raw latencies)."""
    run_dir = tmp_path / "old-run"
    run_dir.mkdir()
    (run_dir / "results.json").write_text((DATA / "results-format1.json").read_text())
    result = RunResult.load(run_dir)
    assert result.format_version == 2
    assert [v.name for v in result.variants] == ["reference", "pruned"]
    pruned = result.variant("pruned")
    assert pruned.outcome is Outcome.REGRESSION
    assert result.outcome.exit_code == 1
    (failed,) = [v for v in pruned.verdicts if v.failed]
    assert failed.evidence.kind == "latency"
    assert failed.evidence.test == "windows"
    gated = pruned.measurements[0].gated
    assert gated is not None
    assert len(gated.latencies_ms()) == 50
    assert result.baseline.status == "recorded"
    assert api.render_run(run_dir).is_file()


def test_a_results_file_from_a_newer_harness_is_refused_in_one_line(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(UserError, match=r"format_version 99 is newer than this harness reads \(2\)"):
        RunResult.load(tmp_path)
