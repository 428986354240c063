"""A run that fails part way says why in one line and still leaves its run folder readable."""

from __future__ import annotations

import json

from tests.conftest import scenario_dict
from tests.e2e.helpers import run_cli


def test_unreadable_user_model_fails_with_one_line_and_keeps_a_report(write_scenario, tmp_path):
    (tmp_path / "model.pt2").write_bytes(b"this is not a torch.export archive")
    data = scenario_dict(
        name="broken-model", variants=[], model={"framework": "torch", "source": "model.pt2"}
    )
    result = run_cli(write_scenario(data), tmp_path)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("harness: error:")]
    assert len(error_lines) == 1
    assert "model.pt2" in error_lines[0]

    (run_dir,) = (tmp_path / "reports").iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert "model.pt2" in results["error"]
    assert results["passed"] is False
    assert "did not complete" in (run_dir / "index.html").read_text()
    assert not (tmp_path / "baselines").exists()
