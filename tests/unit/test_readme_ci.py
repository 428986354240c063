"""The README's statements about `harness ab`, the history and the PR comment are the code's."""

from __future__ import annotations

import re

import pytest

from harness.ab.compare import DEFAULT_QUALITY_EFFECT
from harness.ab.schedule import (
    DEFAULT_MIN_EFFECT,
    DEFAULT_ROUNDS,
    DEFAULT_SLICE_S,
    DEFAULT_SLOT_S,
    DEFAULT_WARMUP_S,
    MIN_PAIRS,
    best_reachable_alpha,
    default_pairs,
    pairs_needed,
)
from harness.cli import _parser
from harness.history import changepoints
from harness.report.pr_comment import COMMENT_LIMIT_BYTES
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
SECTION = README[README.index("## Gates that work on real CI") : README.index("## Measured")]


def _table_after(heading: str) -> dict[str, str]:
    start = SECTION.index(heading)
    rows = re.findall(r"^\| `?([^|`]+)`? \| ([^|]+) \|$", SECTION[start:], re.MULTILINE)
    return {k.strip(): v.strip() for k, v in rows if not set(k) <= {"-"}}


def _ab_defaults() -> dict[str, object]:
    ab = _parser()._subparsers._group_actions[0].choices["ab"]  # type: ignore[union-attr]
    return {a.option_strings[0]: a.default for a in ab._actions if a.option_strings}


def test_readme_ab_option_defaults_are_the_cli_defaults():
    table = _table_after("| option | default |")
    cli = _ab_defaults()
    assert float(table["--slot-s"]) == cli["--slot-s"] == DEFAULT_SLOT_S
    assert float(table["--warmup-s"]) == cli["--warmup-s"] == DEFAULT_WARMUP_S
    assert float(table["--slice-s"]) == cli["--slice-s"] == DEFAULT_SLICE_S
    assert f"every `--slice-s` seconds ({DEFAULT_SLICE_S:g})" in SECTION
    assert float(table["--min-effect"]) == cli["--min-effect"] == DEFAULT_MIN_EFFECT
    assert int(table["--aa-pairs"]) == cli["--aa-pairs"]
    assert table["--servers"] == cli["--servers"]
    assert table["--inconclusive"] == cli["--inconclusive"]
    assert f"at least {MIN_PAIRS}" in table["--pairs"]
    assert int(table["--rounds"]) == cli["--rounds"] == DEFAULT_ROUNDS
    assert f"`--rounds` ({DEFAULT_ROUNDS}) fresh starts" in SECTION
    blocks = default_pairs(0.01, DEFAULT_ROUNDS)
    assert f"with {DEFAULT_ROUNDS}\n  rounds, {blocks} blocks at alpha 0.01" in SECTION
    assert cli["--pairs"] is None
    assert cli["--alpha"] is None


def test_readme_reachable_alpha_table_is_the_schedule():
    rows = re.findall(r"^ *\| (\d+) \| ([0-9.]+)", SECTION, re.MULTILINE)
    assert [int(n) for n, _ in rows] == [5, 6, 7, 8]
    for n, p in rows:
        assert float(p) == pytest.approx(best_reachable_alpha(int(n)), abs=1e-4)
    assert "8 | 0.0078 (the default for alpha 0.01)" in SECTION
    assert pairs_needed(0.01) == 8


def test_readme_quality_drop_and_comment_limit_are_the_code():
    assert f"allowing a drop of {DEFAULT_QUALITY_EFFECT:g}" in SECTION
    assert f"under {COMMENT_LIMIT_BYTES // 1000} KB" in SECTION


def test_readme_change_point_rules_are_the_code():
    assert f"permutation test ({changepoints.PERMUTATIONS} shuffles)" in SECTION
    assert f"gives p < {changepoints.ALPHA:g}" in SECTION
    assert f"differ by at least {changepoints.MIN_EFFECT:.0%}" in SECTION
    assert f"at least {changepoints.MIN_AFTER} points on each side" in SECTION
    assert f"A series needs\n{changepoints.MIN_HISTORY} points" in SECTION
