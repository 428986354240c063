"""The GitHub workflows are valid (check-jsonschema against GitHub's workflow schema) and pass
zizmor's security audits, both offline; and they keep the properties the A/B and nightly jobs
rely on (least-privilege tokens, a full clone for the merge-base, one writer of the history).

zizmor runs with its default persona and no --min-severity: every finding it reports at any
severity fails the test. Its pedantic-only findings (unnamed jobs, missing concurrency limits
on ci.yml) are style, not security, and are not asked for.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.yml"))
BIN = Path(sys.executable).parent


def _tool(name: str) -> Path:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: it is a pinned dev dependency, run `make setup`")
    return path


def _load(name: str) -> dict[str, Any]:
    data: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as the boolean True
    if True in data:
        data["on"] = data.pop(True)
    return data


def _steps(workflow: dict[str, Any], job: str) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = workflow["jobs"][job]["steps"]
    return steps


def test_the_expected_workflows_exist():
    assert [p.name for p in FILES] == ["ci.yml", "nightly.yml", "pr.yml"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_workflow_matches_githubs_schema(path):
    done = subprocess.run(
        [str(_tool("check-jsonschema")), "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_workflows_pass_zizmor():
    done = subprocess.run(
        [str(_tool("zizmor")), "--offline", "--no-progress", str(WORKFLOWS)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_action_is_pinned_to_a_commit():
    for path in FILES:
        for job in _load(path.name)["jobs"].values():
            for step in job.get("steps", []):
                if "uses" in step:
                    ref = step["uses"].rsplit("@", 1)[1]
                    assert re.fullmatch(r"[0-9a-f]{40}", ref), step["uses"]


def test_ci_runs_on_pull_requests_and_pushes_only():
    ci = _load("ci.yml")
    assert "schedule" not in ci["on"]
    assert set(ci["jobs"]) == {"test", "tfserving"}
    assert not any("make demo" in step.get("run", "") for step in _steps(ci, "test"))


def test_pr_workflow_comments_from_a_job_of_its_own_and_not_for_forks():
    pr = _load("pr.yml")
    assert pr["permissions"] == {"contents": "read"}
    assert pr["jobs"]["ab"]["permissions"] == {"contents": "read"}
    assert pr["jobs"]["comment"]["permissions"] == {"pull-requests": "write"}
    assert "github.event.pull_request.head.repo.full_name == github.repository" in pr["jobs"]["comment"]["if"]
    checkout = _steps(pr, "ab")[0]
    assert checkout["with"] == {"fetch-depth": 0, "persist-credentials": False}
    run = next(s for s in _steps(pr, "ab") if s.get("id") == "ab")
    assert ".venv/bin/harness ab scenarios/quickstart.yaml" in run["run"]
    assert "--inconclusive pass" in run["run"]
    assert "${{" not in run["run"]  # github context only through env
    # the job ends with harness ab's exit code, after every upload
    assert _steps(pr, "ab")[-1]["run"] == 'exit "${CODE:-2}"'
    assert any(s.get("with", {}).get("archive") is False for s in _steps(pr, "ab"))


def test_nightly_has_one_writer_at_a_time_and_writes_only_from_its_job():
    nightly = _load("nightly.yml")
    assert set(nightly["on"]) == {"schedule", "workflow_dispatch"}
    assert nightly["concurrency"] == {"group": "nightly-history", "cancel-in-progress": False}
    assert nightly["permissions"] == {}
    assert nightly["jobs"]["history"]["permissions"] == {"contents": "write", "issues": "write"}
    scripts = "\n".join(s.get("run", "") for s in _steps(nightly, "history"))
    assert '--history history --testbed "$RUNNER_LABEL"' in scripts
    assert ".venv/bin/harness history history --json changes.json" in scripts
    assert "git pull --rebase" in scripts
    assert "switch --orphan" in scripts
    assert "harness-change-point:" in scripts
