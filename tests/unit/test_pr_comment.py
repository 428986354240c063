"""The pull-request comment of `harness ab`: its content, its size limit and its escaping.

The golden file is the comment of tests.unit.ab_records.make_ab(); after an intended change of the
text, regenerate it with `UPDATE_GOLDEN=1 pytest tests/unit/test_pr_comment.py` and review the diff.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from harness.report.pr_comment import COMMENT_LIMIT_BYTES, marker, render_failure, render_pr_comment
from tests.unit.ab_records import make_ab, make_broken_ab, make_inconclusive_ab, make_passing_ab, make_wide_ab

GOLDEN = Path(__file__).parent / "data" / "pr_comment.golden.md"
RUN_URL = "https://github.com/acme/models/actions/runs/123456789"
NASTY = "a|b `c` *d* _e_ [f](g) <script>alert(1)</script>\nsecond line\r\n| x | <!-- y --> end"
UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def _table_rows(text: str) -> list[str]:
    """The data rows of the comparisons table (not its header or separator)."""
    return [
        line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| | variant")
    ]


def test_comment_matches_the_golden_file():
    text = render_pr_comment(make_ab(), report_url=RUN_URL)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8"), "rerun with UPDATE_GOLDEN=1 if the change is intended"


def test_comment_starts_with_the_marker_then_the_verdict_with_its_magnitude():
    lines = render_pr_comment(make_ab()).splitlines()
    assert lines[0] == "<!-- harness-ab: digits-quickstart -->"
    assert (
        lines[1]
        == "### ❌ REGRESSION: pruned `latency_p95_ms` +18.2% [+12.1%, +24.0%] (and 1 more regressed)"
    )
    assert "(exit code 1)" in lines[3]


def test_comment_lists_only_the_changed_comparisons():
    ab = make_ab()
    rows = _table_rows(render_pr_comment(ab))
    changed = [c for c in ab.comparisons if c.status != "unchanged"]
    assert len(rows) == len(changed) == 5
    assert not any("unchanged" in row for row in rows)
    assert not any("| reference |" in row for row in rows)  # reference changed nothing
    # regressed first, then inconclusive, then improved
    assert [row.split(" | ")[0].split()[-1] for row in rows] == [
        "regressed",
        "regressed",
        "inconclusive",
        "improved",
        "improved",
    ]


def test_comment_shows_refs_testbed_method_counts_noise_floor_and_the_link():
    text = render_pr_comment(make_ab(), report_url=RUN_URL)
    assert "**base** origin/main @ `0123456`" in text
    assert "**head** working tree @ `fedcba9` (uncommitted changes)" in text
    assert "**testbed** github-ubuntu-24.04" in text
    assert "alpha 0.05 (best reachable with 6 blocks: 0.0312)" in text
    assert "6, measured as AB BA BA AB AB BA" in text
    assert "both-up: both servers fit in memory" in text
    assert "✅ 2 improved · ❌ 2 regressed · ⚪ 5 unchanged · ⚠️ 1 inconclusive" in text
    assert "- **reference**, **pruned**: latency p95 3.1%, throughput 2.0% (from A/A blocks)" in text
    assert "- **int8**: not measured; the minimum effect applies" in text
    assert f"]({RUN_URL})" in text
    # without a URL the link is the report next to summary.md
    assert "](index.html)" in render_pr_comment(make_ab())


def test_absolute_changes_are_in_the_metrics_unit_and_relative_ones_in_percent():
    row = next(r for r in _table_rows(render_pr_comment(make_ab())) if "`accuracy`" in r)
    assert "95.56 % | 95.00 % | **-0.56 pp** | [-1.51 pp, +0.39 pp] | 1.00 pp | McNemar exact (n=360)" in row


def test_pass_names_the_largest_change():
    first = render_pr_comment(make_passing_ab()).splitlines()[1]
    assert first == "### ✅ PASS: no regression; largest change: int8 `latency_p95_ms` -12.0% [-15.1%, -8.8%]"


@pytest.mark.parametrize(("policy", "code", "other"), [("pass", 0, 3), ("fail", 3, 0)])
def test_inconclusive_says_what_was_undecided_and_the_exit_code_under_the_policy(policy, code, other):
    text = render_pr_comment(make_inconclusive_ab(policy))
    lines = text.splitlines()
    assert lines[1].startswith("### ⚠️ INCONCLUSIVE: could not decide: int8 `accuracy` -0.56 pp")
    other_policy = "fail" if policy == "pass" else "pass"
    assert (
        f"exit code {code} under --inconclusive {policy} ({other} under --inconclusive {other_policy})"
        in text
    )
    assert "the interval spans the 1.00 pp threshold" in text  # why it could not be decided


def test_a_broken_run_says_where_it_broke_and_shows_the_log_tail():
    ab = make_broken_ab()
    text = render_pr_comment(ab)
    assert text.splitlines()[1].startswith("### 💥 ERROR: the A/B run broke at stage serve head (pruned)")
    failure = render_failure(ab)
    assert "**The A/B run broke at stage `serve head`** (variant **pruned**)" in failure
    assert "java.lang.OutOfMemoryError: Java heap space" in failure
    assert failure in text
    assert "comparisons:**" not in text  # nothing was compared: no counts, no table
    assert render_failure(make_ab()) == ""


def test_a_log_tail_with_backticks_cannot_close_its_fence():
    ab = make_broken_ab()
    assert ab.failure is not None
    ab.failure.log_tail = "```\n<!-- harness-ab: other -->\n````"
    failure = render_failure(ab)
    assert "`````text" in failure  # a fence longer than any run of backticks inside


def test_a_variant_that_could_not_be_compared_is_an_error_and_listed():
    ab = make_ab()
    ab.variants[2].error = "the base side has no variant int8"
    text = render_pr_comment(ab)
    assert (
        text.splitlines()[1] == "### 💥 ERROR: int8 could not be compared: the base side has no variant int8"
    )
    assert "> - **int8** could not be compared: the base side has no variant int8" in text


def test_environment_warnings_are_a_warning_block():
    ab = make_ab(environment_warnings=["the sides' data differ (sha256 9f2c0e1d vs 77aa01b2)"])
    text = render_pr_comment(ab)
    assert (
        "> [!WARNING]\n> **Compare with care:**\n> - the sides' data differ (sha256 9f2c0e1d vs 77aa01b2)"
        in text
    )


def test_user_text_is_escaped_everywhere():
    ab = make_ab(scenario_name=NASTY, testbed=NASTY, environment_warnings=[NASTY])
    ab.base.ref = NASTY
    for variant in ab.variants:
        variant.name = NASTY
        for c in variant.comparisons:
            c.variant = NASTY
            c.message = NASTY
    text = render_pr_comment(ab)
    assert "<script" not in text
    assert "&lt;script>" in text
    # the marker is the only HTML comment: a name cannot open a second one or close the first
    assert text.count("<!--") == 1
    assert text.splitlines()[0].startswith("<!-- harness-ab: ")
    assert text.splitlines()[0].endswith(" -->")
    assert "-->" not in text.splitlines()[0][4:-3]
    # no line break of the user text reaches the output: each table row keeps its 11 cell borders
    rows = _table_rows(text)
    assert rows
    assert all(len(UNESCAPED_PIPE.findall(row)) == 11 for row in rows)
    assert "\r" not in text
    assert "\\`c\\`" in text
    assert "\\*d\\*" in text


def test_marker_is_stable_and_cannot_be_broken():
    assert marker("quickstart") == "<!-- harness-ab: quickstart -->"
    assert marker("quickstart") == marker("quickstart")
    closing = marker("x --> <b>y</b> --")
    assert closing.count("-->") == 1
    assert closing.endswith(" -->")
    assert "--" not in closing[4:-3]
    # names that differ only in replaced characters still get distinct markers
    assert marker("a<b") != marker("a>b")


def test_hundreds_of_variants_with_long_names_stay_under_the_limit():
    ab = make_wide_ab(400, name_length=400)
    text = render_pr_comment(ab, report_url=RUN_URL)
    assert _size(text) <= COMMENT_LIMIT_BYTES
    lines = text.splitlines()
    assert lines[0] == "<!-- harness-ab: digits-quickstart -->"
    assert lines[1].startswith("### ❌ REGRESSION: v0399-")
    assert f"]({RUN_URL})" in lines[-1]
    shown = len(_table_rows(text))
    assert 0 < shown < 400
    assert f"✂️ {400 - shown} more rows in the [HTML report]({RUN_URL})." in text


def test_a_comment_that_fits_is_not_truncated():
    text = render_pr_comment(make_wide_ab(20), report_url=RUN_URL)
    assert len(_table_rows(text)) == 20
    assert "more rows" not in text


@pytest.mark.parametrize("limit", [1_500, 4_000, 20_000])
def test_any_limit_keeps_marker_verdict_and_link(limit):
    ab = make_wide_ab(300, name_length=2_000)
    ab.environment_warnings = [f"warning {i}: " + "w" * 5_000 for i in range(200)]
    text = render_pr_comment(ab, report_url=RUN_URL, limit_bytes=limit)
    assert _size(text) <= limit
    lines = text.splitlines()
    assert lines[0] == "<!-- harness-ab: digits-quickstart -->"
    assert lines[1].startswith("### ❌ REGRESSION:")
    assert RUN_URL in text


def test_huge_user_text_everywhere_stays_under_the_limit():
    huge = "é|<`*" * 40_000  # multi-byte characters: the limit is in UTF-8 bytes
    ab = make_wide_ab(50)
    ab.scenario_name = huge
    ab.testbed = huge
    ab.base.ref = huge
    ab.environment_warnings = [huge] * 100
    for variant in ab.variants:
        variant.error = ""
        variant.warnings = [huge]
        for c in variant.comparisons:
            c.message = huge
    ab.failure = None
    text = render_pr_comment(ab, report_url="https://example.com/" + "p" * 100_000)
    assert _size(text) <= COMMENT_LIMIT_BYTES
    assert text.startswith("<!-- harness-ab: ")
    assert "](index.html)" in text  # too long a URL falls back to the report next to the comment


def test_link_target_cannot_break_out_of_the_markdown_link():
    text = render_pr_comment(make_ab(), report_url="https://example.com/a b)(c<d>")
    assert "](https://example.com/a%20b%29%28c%3Cd%3E)" in text
