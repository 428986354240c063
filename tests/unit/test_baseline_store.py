"""The baseline store (versioned JSON, atomic writes) and the environment fingerprint."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import harness
from harness.baselines import fingerprint, store
from harness.baselines.fingerprint import environment_fingerprint, fingerprint_id
from harness.baselines.store import FileBaselineStore, variant_metrics
from harness.errors import RunError, UserError

ENV = {"cpu_model": "Test CPU", "logical_cores": 2, "machine": "x86_64", "os": "Linux", "python": "3.11"}
METRICS = {
    "reference": {"latency_p95_ms": 2.0, "accuracy": 0.97},
    "int8": {"latency_p95_ms": 1.5, "accuracy": 0.96},
}


@pytest.fixture
def baselines(tmp_path: Path) -> FileBaselineStore:
    return FileBaselineStore(tmp_path / "baselines")


def test_recorded_baseline_loads_back(baselines):
    path = baselines.record("digits", "fp1", ENV, "run-1", METRICS, recorded_at="2025-01-01T00:00:00+00:00")
    assert path == baselines.directory / "digits.json"
    entry = baselines.load("digits", "fp1")
    assert entry == {
        "environment": ENV,
        "recorded_at": "2025-01-01T00:00:00+00:00",
        "run_id": "run-1",
        "variants": {name: {"metrics": m} for name, m in METRICS.items()},
    }
    assert variant_metrics(entry) == METRICS
    doc = json.loads(path.read_text())
    assert doc["format_version"] == store.FORMAT_VERSION == 2
    assert doc["scenario"] == "digits"


def test_load_without_file_or_fingerprint_is_none(baselines):
    assert baselines.load("digits", "fp1") is None
    baselines.record("digits", "fp1", ENV, "run-1", METRICS)
    assert baselines.load("digits", "other") is None
    assert variant_metrics(None) is None


def test_record_keeps_other_fingerprints_and_replaces_its_own(baselines):
    baselines.record("digits", "laptop", ENV, "run-1", METRICS)
    baselines.record("digits", "ci", ENV, "run-2", {"reference": {"accuracy": 0.5}})
    baselines.record("digits", "ci", ENV, "run-3", {"reference": {"accuracy": 0.6}})
    assert baselines.fingerprints("digits") == ["ci", "laptop"]
    assert variant_metrics(baselines.load("digits", "laptop")) == METRICS
    ci = baselines.load("digits", "ci")
    assert ci["run_id"] == "run-3"
    assert variant_metrics(ci) == {"reference": {"accuracy": 0.6}}


def test_record_drops_non_finite_values_and_converts_numpy_scalars(baselines):
    import numpy as np

    baselines.record(
        "d", "fp", ENV, "r", {"a": {"accuracy": np.float32(0.5), "latency_p95_ms": float("nan")}}
    )
    assert variant_metrics(baselines.load("d", "fp")) == {"a": {"accuracy": 0.5}}


def test_reader_refuses_a_newer_format_version(baselines):
    baselines.directory.mkdir()
    path = baselines.directory / "x.json"
    path.write_text(json.dumps({"format_version": 3, "scenario": "x", "environments": {}}))
    with pytest.raises(
        UserError, match=r"x\.json has format_version 3; this harness reads up to 2: upgrade harness"
    ):
        baselines.load("x", "fp")
    with pytest.raises(UserError, match="format_version 3"):
        baselines.record("x", "fp", ENV, "r", METRICS)
    assert json.loads(path.read_text())["format_version"] == 3


def test_corrupt_file_is_an_error_naming_the_file_and_is_never_overwritten(baselines):
    baselines.directory.mkdir()
    path = baselines.directory / "x.json"
    path.write_text('{"format_version": 1, "environments": {')
    with pytest.raises(UserError, match=r"x\.json is not valid JSON"):
        baselines.load("x", "fp")
    with pytest.raises(UserError, match=r"x\.json"):
        baselines.record("x", "fp", ENV, "r", METRICS)
    assert path.read_text() == '{"format_version": 1, "environments": {'


@pytest.mark.parametrize(
    "doc",
    [
        [],
        {"environments": {}},
        {"format_version": "1"},
        {"format_version": 0},
        {"format_version": 1},
        {"format_version": 1, "environments": {"fp": {"variants": []}}},
    ],
)
def test_malformed_documents_are_user_errors(baselines, doc):
    baselines.directory.mkdir()
    (baselines.directory / "x.json").write_text(json.dumps(doc))
    with pytest.raises(UserError, match=r"x\.json"):
        baselines.load("x", "fp")


def test_older_format_is_migrated_through_update_functions(baselines, monkeypatch):
    baselines.record("x", "fp", ENV, "r", METRICS)

    def update_to_3(doc):
        for entry in doc["environments"].values():
            entry["notes"] = "migrated"
        return doc

    monkeypatch.setattr(store, "FORMAT_VERSION", 3)
    monkeypatch.setitem(store._UPDATES, 3, update_to_3)
    assert baselines.load("x", "fp")["notes"] == "migrated"
    baselines.record("x", "other", ENV, "r2", METRICS)
    doc = json.loads((baselines.directory / "x.json").read_text())
    assert doc["format_version"] == 3
    assert doc["environments"]["fp"]["notes"] == "migrated"


def test_failed_rename_leaves_the_old_file_intact_and_no_temp_file(baselines, monkeypatch):
    path = baselines.record("x", "fp", ENV, "run-1", METRICS)
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(RunError, match=r"^cannot record baseline .*x\.json: disk on fire$"):
        baselines.record("x", "fp", ENV, "run-2", {"a": {"accuracy": 0.1}})
    assert path.read_bytes() == before
    assert sorted(p.name for p in baselines.directory.iterdir()) == ["x.json", "x.json.lock"]


def test_unserialisable_value_leaves_the_old_file_intact(baselines):
    path = baselines.record("x", "fp", ENV, "run-1", METRICS)
    before = path.read_bytes()
    with pytest.raises(RunError, match=r"cannot record baseline .*x\.json: .*not JSON serializable"):
        baselines.record("x", "fp", {"cpu": object()}, "run-2", METRICS)
    assert path.read_bytes() == before
    assert sorted(p.name for p in baselines.directory.iterdir()) == ["x.json", "x.json.lock"]


def test_written_file_respects_the_umask_not_0600(baselines):
    old = os.umask(0o022)
    try:
        path = baselines.record("x", "fp", ENV, "r", METRICS)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_scenario_name_cannot_escape_the_directory(baselines):
    with pytest.raises(UserError, match="cannot name a baseline file"):
        baselines.load("../etc/passwd", "fp")


def test_fingerprint_id_is_stable_short_and_ignores_non_performance_fields():
    env = environment_fingerprint()
    fid = fingerprint_id(env)
    assert len(fid) == 12
    assert fid == fingerprint_id(dict(env))
    noisy = {
        **env,
        "hostname": "elsewhere",
        "recorded_at": "2030-01-01",
        "os_release": "9.9",
        "python_full": "3.11.99",
    }
    assert fingerprint_id(noisy) == fid


@pytest.mark.parametrize(
    ("field", "value"),
    [("cpu_model", "Other CPU"), ("logical_cores", 64), ("machine", "aarch64"), ("python", "3.12")],
)
def test_fingerprint_id_changes_with_the_machine(field, value):
    env = environment_fingerprint()
    assert fingerprint_id({**env, field: value}) != fingerprint_id(env)


def test_fingerprint_id_changes_with_framework_versions():
    env = environment_fingerprint()
    other = {**env, "packages": {**env["packages"], "torch": "0.0.1"}}
    assert fingerprint_id(other) != fingerprint_id(env)


def test_environment_fingerprint_reads_versions_without_importing_frameworks():
    root = str(Path(harness.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    code = (
        "import sys, json; from harness.baselines.fingerprint import environment_fingerprint as f; e = f(); "
        "heavy = [m for m in ('torch', 'tensorflow', 'locust', 'torchserve') if m in sys.modules]; "
        "assert not heavy, heavy; print(json.dumps(e))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True, text=True)
    data = json.loads(out.stdout)
    assert data["logical_cores"] == os.cpu_count()
    assert data["machine"]
    assert set(fingerprint.FINGERPRINT_PACKAGES) <= set(data["packages"])


def test_cpu_model_falls_back_when_proc_cpuinfo_is_missing(monkeypatch):
    real = Path.read_text

    def fake_read_text(self, *args, **kwargs):
        if str(self) == "/proc/cpuinfo":
            raise FileNotFoundError(self)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", fake_read_text)
    assert fingerprint._cpu_model()


# --- format 2: latency histograms and predictions ----------------------------------------------


def _distribution(seed: int = 0, n: int = 5000):
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, 450)
    predictions = labels.copy()
    predictions[:12] = (labels[:12] + 1) % 10
    return {
        "latencies_ms": rng.lognormal(np.log(4.0), 0.5, n).tolist(),
        "predictions": predictions.tolist(),
        "labels": labels.tolist(),
    }


def test_distributions_round_trip_through_the_file(baselines):
    import numpy as np

    from harness.baselines.store import variant_distributions
    from harness.samples import labels_fingerprint

    dist = _distribution()
    path = baselines.record("d", "fp", ENV, "r", {"int8": METRICS["int8"]}, distributions={"int8": dist})
    stored = json.loads(path.read_text())["environments"]["fp"]["variants"]["int8"]
    assert stored["latency_histogram"].startswith("HISTF")
    assert stored["predictions"]["encoding"] == "digits"
    assert len(stored["predictions"]["values"]) == 450
    assert stored["predictions"]["labels_fingerprint"] == labels_fingerprint(dist["labels"])

    samples = variant_distributions(baselines.load("d", "fp"))["int8"]
    assert samples.latencies_ms.size == 5000
    for p in (50, 95, 99):
        assert np.percentile(samples.latencies_ms, p) == pytest.approx(
            np.percentile(dist["latencies_ms"], p), rel=1e-3
        )
    assert samples.predictions.tolist() == dist["predictions"]
    assert samples.labels is None
    assert samples.fingerprint() == labels_fingerprint(dist["labels"])
    assert variant_metrics(baselines.load("d", "fp")) == {"int8": METRICS["int8"]}


def test_a_variant_entry_with_its_distribution_stays_a_few_kilobytes(baselines):
    path = baselines.record(
        "d", "fp", ENV, "r", {"int8": METRICS["int8"]}, distributions={"int8": _distribution(n=20000)}
    )
    entry = json.loads(path.read_text())["environments"]["fp"]["variants"]["int8"]
    assert len(json.dumps(entry)) < 4500


def test_many_classes_are_stored_as_comma_separated_ids(baselines):
    from harness.baselines.store import variant_distributions

    dist = {"predictions": [12, 3, 10], "labels": [12, 3, 11]}
    baselines.record("d", "fp", ENV, "r", {"a": {}}, distributions={"a": dist})
    stored = baselines.load("d", "fp")["variants"]["a"]["predictions"]
    assert (stored["encoding"], stored["values"]) == ("csv", "12,3,10")
    assert variant_distributions(baselines.load("d", "fp"))["a"].predictions.tolist() == [12, 3, 10]


def test_predictions_without_labels_cannot_be_recorded(baselines):
    with pytest.raises(RunError, match=r"cannot record baseline .*d\.json: .*labels"):
        baselines.record("d", "fp", ENV, "r", {"a": {}}, distributions={"a": {"predictions": [1, 2]}})
    assert not (baselines.directory / "d.json").exists()


def test_version_1_file_reads_without_distributions_and_is_rewritten_as_version_2(baselines):
    from harness.baselines.store import variant_distributions

    baselines.directory.mkdir()
    v1 = {
        "format_version": 1,
        "scenario": "x",
        "environments": {
            "old": {
                "environment": ENV,
                "recorded_at": "2025-01-01",
                "run_id": "r0",
                "variants": {"a": {"metrics": {"accuracy": 0.9}, "config": "c1"}},
            }
        },
    }
    (baselines.directory / "x.json").write_text(json.dumps(v1))
    entry = baselines.load("x", "old")
    assert variant_metrics(entry) == {"a": {"accuracy": 0.9}}
    samples = variant_distributions(entry, {"a": "c1"})["a"]
    assert (samples.latencies_ms, samples.predictions, samples.labels_fingerprint) == (None, None, None)
    assert variant_distributions(entry, {"a": "other"}) == {}

    baselines.record("x", "new", ENV, "r1", METRICS)
    doc = json.loads((baselines.directory / "x.json").read_text())
    assert doc["format_version"] == 2
    assert doc["environments"]["old"] == v1["environments"]["old"]


def test_unreadable_histogram_is_a_user_error_naming_the_variant(baselines):
    baselines.record("x", "fp", ENV, "r", {"a": {}}, distributions={"a": _distribution(n=100)})
    path = baselines.directory / "x.json"
    doc = json.loads(path.read_text())
    doc["environments"]["fp"]["variants"]["a"]["latency_histogram"] = "HISTFgarbage"
    path.write_text(json.dumps(doc))
    with pytest.raises(UserError, match=r"variant 'a': latency_histogram is .*not an HdrHistogram"):
        baselines.load("x", "fp")


def test_histogram_that_is_not_text_is_refused_on_read(baselines):
    baselines.directory.mkdir()
    doc = {
        "format_version": 2,
        "environments": {"fp": {"variants": {"a": {"metrics": {}, "latency_histogram": [1]}}}},
    }
    (baselines.directory / "x.json").write_text(json.dumps(doc))
    with pytest.raises(UserError, match=r"x\.json: .*'a': latency_histogram is a list of 1; expected text"):
        baselines.load("x", "fp")


def test_per_window_percentiles_round_trip_for_the_window_test(baselines):
    import numpy as np

    from harness.baselines.store import variant_distributions

    windows = {"latency_p95_ms": [0.91, 0.88, 0.9, 1.4], "latency_p99_ms": []}
    dist = {**_distribution(), "window_latencies": windows}
    path = baselines.record("d", "fp", ENV, "r", {"int8": METRICS["int8"]}, distributions={"int8": dist})
    stored = json.loads(path.read_text())["environments"]["fp"]["variants"]["int8"]
    assert stored["latency_windows"] == {"latency_p95_ms": [0.91, 0.88, 0.9, 1.4]}, (
        "empty lists are not stored"
    )
    samples = variant_distributions(baselines.load("d", "fp"))["int8"]
    assert list(samples.window_latencies) == ["latency_p95_ms"]
    np.testing.assert_array_equal(samples.window_latencies["latency_p95_ms"], [0.91, 0.88, 0.9, 1.4])


@pytest.mark.parametrize("windows", [[0.9, 1.0], {"latency_p95_ms": "0.9"}, {"latency_p95_ms": [0.9, "x"]}])
def test_malformed_window_percentiles_are_refused_naming_file_and_variant(baselines, windows):
    path = baselines.record("d", "fp", ENV, "r", {"int8": METRICS["int8"]})
    doc = json.loads(path.read_text())
    doc["environments"]["fp"]["variants"]["int8"]["latency_windows"] = windows
    path.write_text(json.dumps(doc))
    with pytest.raises(UserError, match=r"d\.json: .*variant 'int8': latency_windows.* expected .*number"):
        baselines.load("d", "fp")


# --- layering: baselines and gates share harness.samples and never import each other ----------


def test_baselines_do_not_import_the_gates():
    root = str(Path(harness.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    code = (
        "import sys; import harness.baselines.store; "
        "print(sorted(m for m in sys.modules if m.startswith('harness.gates')))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "module", ["baselines/store.py", "baselines/document.py", "baselines/histogram.py", "gates/statistics.py"]
)
def test_project_imports_sit_at_the_top_of_the_module(module):
    import ast

    tree = ast.parse((Path(harness.__file__).parent / module).read_text())
    hidden = [
        f"line {node.lineno}: {ast.unparse(node)}"
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef)
        for node in ast.walk(function)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("harness")
    ]
    assert not hidden, "a local import of the project's own code hides a cycle"
