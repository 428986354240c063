"""Which scenario each side of `harness ab` runs: a git worktree of the base ref, or two files."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.ab.sides import file_sides, git_sides
from harness.errors import UserError


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=repo, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """main: scenario v1; branch feature: scenario v2 (checked out)."""
    root = tmp_path / "repo"
    (root / "scenarios").mkdir(parents=True)
    _git(root, "init", "-q", "-b", "main")
    (root / "scenarios" / "s.yaml").write_text("version: 1\n")
    (root / "scenarios" / "model.txt").write_text("base model\n")
    _git(root, "add", ".")
    _git(root, "commit", "-qm", "v1")
    _git(root, "checkout", "-qb", "feature")
    (root / "scenarios" / "s.yaml").write_text("version: 2\n")
    (root / "scenarios" / "model.txt").write_text("head model\n")
    _git(root, "commit", "-qam", "v2")
    return root


def test_base_defaults_to_the_merge_base_with_main_and_brings_its_files(repo: Path) -> None:
    main_sha = _git(repo, "rev-parse", "main")
    with git_sides(repo / "scenarios" / "s.yaml", None) as (base, head):
        assert base.sha == main_sha
        assert base.scenario.read_text() == "version: 1\n"
        assert (base.scenario.parent / "model.txt").read_text() == "base model\n"  # model files too
        assert head.scenario.read_text() == "version: 2\n"
        assert head.sha == _git(repo, "rev-parse", "HEAD")
        assert not head.dirty
        worktree = base.scenario.parents[1]
    assert not worktree.exists()  # removed on exit
    assert len(_git(repo, "worktree", "list").splitlines()) == 1


def test_head_with_uncommitted_changes_is_marked_dirty(repo: Path) -> None:
    (repo / "scenarios" / "s.yaml").write_text("version: 3\n")
    with git_sides(repo / "scenarios" / "s.yaml", "main") as (base, head):
        assert head.dirty
        assert base.ref == "main"


def test_unknown_ref_is_bad_input(repo: Path) -> None:
    with (
        pytest.raises(UserError, match=r"--base: 'nope' is not a commit"),
        git_sides(repo / "scenarios" / "s.yaml", "nope"),
    ):
        pass


def test_scenario_new_on_head_has_nothing_to_compare_with(repo: Path) -> None:
    (repo / "scenarios" / "new.yaml").write_text("x: 1\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "new")
    with (
        pytest.raises(UserError, match=r"new.yaml: does not exist at the base"),
        git_sides(repo / "scenarios" / "new.yaml", "main"),
    ):
        pass
    assert len(_git(repo, "worktree", "list").splitlines()) == 1  # cleaned up after the error too


def test_outside_git_needs_base_scenario(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text("x: 1\n")
    with (
        pytest.raises(UserError, match="not in a git repository; give --base-scenario"),
        git_sides(scenario, None),
    ):
        pass
    other = tmp_path / "b.yaml"
    other.write_text("x: 0\n")
    with file_sides(scenario, other) as (base, head):
        assert base.scenario == other.resolve()
        assert head.scenario == scenario.resolve()
    with (
        pytest.raises(UserError, match=r"--base-scenario: .*no such file"),
        file_sides(scenario, tmp_path / "missing.yaml"),
    ):
        pass
