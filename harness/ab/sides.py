"""What each side of `harness ab` runs: the working tree (head) and the base ref through a git
worktree, or two scenario files given outright.

The base side is the same scenario path at the base commit, checked out with `git worktree add
--detach` into a temporary folder, so its model files, data and user code are the base's own.
The harness code is the head's for both sides: the comparison is of models and scenarios, and
the measuring code must be the same on both sides for the numbers to be comparable.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UserError

GIT_TIMEOUT_S = 120.0
DEFAULT_BRANCHES = ("origin/HEAD", "origin/main", "origin/master", "main", "master")


@dataclass(frozen=True)
class SideSource:
    """One side's scenario file and where it came from."""

    scenario: Path  # absolute
    ref: str
    sha: str | None
    dirty: bool = False


def git(args: list[str], cwd: Path) -> str:
    """Run git and return its stdout stripped; a failure raises UserError with git's own line."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=False
        )
    except FileNotFoundError:
        raise UserError("git is not installed; give --base-scenario FILE to compare without git") from None
    except subprocess.TimeoutExpired:
        raise UserError(f"git {' '.join(args)} took longer than {GIT_TIMEOUT_S:g} s") from None
    if done.returncode != 0:
        message = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise UserError(f"git {' '.join(args)}: {message}")
    return done.stdout.strip()


def repo_root(path: Path) -> Path | None:
    """The top of the git work tree holding `path`, or None outside git."""
    try:
        return Path(git(["rev-parse", "--show-toplevel"], path if path.is_dir() else path.parent))
    except UserError:
        return None


def head_sha(root: Path) -> str | None:
    try:
        return git(["rev-parse", "HEAD"], root)
    except UserError:
        return None  # a repository without a commit yet


def default_base(root: Path) -> str:
    """The merge-base of HEAD with the default branch (origin's HEAD, else main/master)."""
    for branch in DEFAULT_BRANCHES:
        try:
            git(["rev-parse", "--verify", "--quiet", f"{branch}^{{commit}}"], root)
        except UserError:
            continue
        return git(["merge-base", "HEAD", branch], root)
    raise UserError(f"{root}: no default branch found ({', '.join(DEFAULT_BRANCHES)}); give --base REF")


def resolve_commit(root: Path, ref: str) -> str:
    try:
        return git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], root)
    except UserError:
        raise UserError(
            f"--base: {ref!r} is not a commit in {root} (a shallow clone needs fetch-depth: 0)"
        ) from None


@contextmanager
def git_sides(scenario: Path, base_ref: str | None) -> Iterator[tuple[SideSource, SideSource]]:
    """(base, head) for `scenario` in the working tree against the same path at `base_ref` (default:
    the merge-base with the default branch). The base's worktree is removed on exit."""
    scenario = scenario.resolve()
    root = repo_root(scenario)
    if root is None:
        raise UserError(
            f"{scenario}: not in a git repository; give --base-scenario FILE to compare two files"
        )
    relative = scenario.relative_to(root.resolve())
    ref = base_ref or default_base(root)
    sha = resolve_commit(root, ref)
    dirty = bool(git(["status", "--porcelain", "--untracked-files=no"], root))
    head = SideSource(scenario, "working tree", head_sha(root), dirty)
    folder = Path(tempfile.mkdtemp(prefix="harness-ab-base-"))
    worktree = folder / "base"
    git(["worktree", "add", "--detach", "--quiet", str(worktree), sha], root)
    try:
        base_scenario = worktree / relative
        if not base_scenario.is_file():
            raise UserError(
                f"{relative}: does not exist at the base {ref!r} ({sha[:12]}): a new scenario has "
                "nothing to compare with"
            )
        yield SideSource(base_scenario, ref if base_ref else f"merge-base {sha[:12]}", sha), head
    finally:
        try:
            git(["worktree", "remove", "--force", str(worktree)], root)
        except UserError:
            git(["worktree", "prune"], root)
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def file_sides(scenario: Path, base_scenario: Path) -> Iterator[tuple[SideSource, SideSource]]:
    """(base, head) for two scenario files, without git."""
    for path, option in ((scenario, "SCENARIO"), (base_scenario, "--base-scenario")):
        if not path.is_file():
            raise UserError(f"{option}: {path}: no such file")
    root = repo_root(scenario.resolve())
    sha = head_sha(root) if root is not None else None
    yield (
        SideSource(base_scenario.resolve(), str(base_scenario), sha),
        SideSource(scenario.resolve(), str(scenario), sha),
    )
