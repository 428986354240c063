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
        "from harness.scenario.loader import load_scenario; load_scenario('scenarios/quickstart.yaml');"
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


def test_validate_checks_every_file_and_names_each_one_that_fails(tmp_path, capsys):
    from harness.cli import main

    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(scenario_dict()))
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x81 not text")
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nmodel: [unclosed\n")
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    missing = tmp_path / "missing.yaml"
    paths = [binary, good, missing, folder, broken, listing]

    assert main(["validate", *map(str, paths)]) == 2
    out, err = capsys.readouterr()
    assert f"ok: {good}" in out
    lines = err.strip().splitlines()
    assert len(lines) == 5, err
    assert "Traceback" not in err
    assert "internal error" not in err
    for path, line in zip([binary, missing, folder, broken, listing], lines, strict=True):
        assert str(path) in line
    assert "UTF-8" in lines[0]
    assert "not found" in lines[1]
    assert "folder" in lines[2]
    assert "not valid YAML" in lines[3]
    assert "mapping" in lines[4]


def test_list_describes_recipes_with_params_and_defaults_from_the_params_models(capsys):
    from harness.cli import main
    from harness.compression.params import TorchPruneParams
    from harness.serving.registry import TARGET_DESCRIPTIONS

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert ":Torch" not in out, "class paths are not descriptions"
    assert "L1-magnitude unstructured pruning" in out  # TorchPruneParams' docstring
    scope = TorchPruneParams.model_fields["scope"]
    assert f"scope = 'layer': {scope.description}" in out
    assert "amount = required" in out
    assert "student_hidden = [32]" in out
    for description in TARGET_DESCRIPTIONS.values():
        assert description in out


def test_schema_makes_each_step_a_union_discriminated_by_recipe(capsys):
    import json

    from harness.cli import main
    from harness.compression.params import PARAMS

    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    step = schema["$defs"]["RecipeStep"]
    assert step["discriminator"] == {"propertyName": "recipe"}
    branches = {b["properties"]["recipe"].get("const"): b for b in step["oneOf"]}
    assert set(branches) == {*PARAMS, None}  # None: the plugin branch
    prune = branches["torch.prune"]["properties"]["params"]
    assert prune["required"] == ["amount"]
    assert prune["properties"]["scope"]["default"] == "layer"
    assert prune["additionalProperties"] is False
    plugin = branches[None]["properties"]["recipe"]
    assert set(plugin["not"]["enum"]) == set(PARAMS)


def test_validate_and_schema_import_no_heavy_framework():
    code = (
        "import sys, json, io, contextlib\n"
        "from harness.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['validate', 'scenarios/quickstart.yaml', 'scenarios/tf_quickstart.yaml']) == 0\n"
        "    assert main(['schema']) == 0\n"
        "    assert main(['list']) == 0\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
