"""The CLI stays light and maps bad input to one line on stderr with exit code 2."""

from __future__ import annotations

import subprocess
import sys

import yaml

from tests.conftest import ROOT, scenario_dict

HEAVY = ("torch", "tensorflow", "tf_keras", "locust", "gevent", "torchao")


def _harness(*args: str, cwd=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=cwd or ROOT, timeout=120
    )


def test_cli_and_plugin_import_no_heavy_framework():
    code = (
        "import sys, harness.cli, harness.pytest_plugin, harness.api, harness.scenario, harness.report.html;"
        "from harness.scenario import load_scenario; load_scenario('scenarios/quickstart.yaml');"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_validate_accepts_shipped_scenarios():
    result = _harness("validate", *sorted(str(p) for p in (ROOT / "scenarios").glob("*.yaml")))
    assert result.returncode == 0, result.stderr
    assert "ok: " in result.stdout


def test_validate_bad_scenario_exits_2_with_one_line_and_no_traceback(tmp_path):
    path = tmp_path / "bad.yaml"
    data = scenario_dict()
    data["load"]["users"] = -1
    path.write_text(yaml.safe_dump(data))
    result = _harness("validate", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(path) in lines[0]
    assert "load.users" in lines[0]


def test_run_with_bad_scenario_exits_2_before_any_heavy_work(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(scenario_dict(serving={"target": "triton"})))
    result = _harness("run", str(path), "--reports-dir", str(tmp_path / "reports"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "serving.target: unknown target 'triton'" in result.stderr
    assert not (tmp_path / "reports").exists(), "a rejected scenario must not create a run folder"


def test_list_shows_recipes_and_targets():
    result = _harness("list")
    assert result.returncode == 0
    for name in ("torch.prune", "torch.int8", "torchserve", "inprocess"):
        assert name in result.stdout


def test_schema_is_json_with_every_field_described():
    import json

    result = _harness("schema")
    schema = json.loads(result.stdout)
    undescribed = [
        f"{name}.{field}"
        for name, definition in [("Scenario", schema), *schema["$defs"].items()]
        for field, spec in definition.get("properties", {}).items()
        if "description" not in spec
    ]
    assert undescribed == []
