"""The HTML report of `harness ab`: self-contained, complete, escaped; and the files it is written to."""

from __future__ import annotations

import html as html_lib
import re

import pytest

from harness.report.ab_files import write_ab_reports
from harness.report.ab_html import render_ab_html
from harness.report.ab_view import format_change, format_interval
from harness.report.charts import block_values_svg
from harness.report.pr_comment import render_pr_comment
from tests.unit.ab_records import make_ab, make_broken_ab, make_passing_ab

EVIL = '<script>alert("x")</script><b>bold</b>'


def test_report_is_self_contained():
    text = render_ab_html(make_ab(), report_url="https://github.com/acme/models/actions/runs/1")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.IGNORECASE)
    assert not re.search(r"url\(\s*['\"]?\s*(https?:)?//", text, re.IGNORECASE)
    assert "@import" not in text
    assert "<script" not in text.lower()
    assert "<link" not in text.lower()


def test_report_shows_every_comparison_changed_ones_first():
    ab = make_ab()
    text = html_lib.unescape(render_ab_html(ab))
    rows = re.findall(r'<tr class="(regressed|inconclusive|improved|unchanged)">', render_ab_html(ab))
    assert len(rows) == len(ab.comparisons)
    assert rows == sorted(rows, key=["regressed", "inconclusive", "improved", "unchanged"].index)
    for c in ab.comparisons:
        assert format_change(c) in text
        if c.status != "unchanged":
            assert c.message in text
            interval = format_interval(c)
            if interval:
                assert interval in text


def test_report_leads_with_the_verdict_and_shows_sides_method_and_noise():
    text = html_lib.unescape(render_ab_html(make_ab()))
    assert "REGRESSION:" in text
    assert "+18.2% [+12.1%, +24.0%]" in text
    assert "exit code 1" in text
    assert "origin/main" in text
    assert "0123456789abcdef0123456789abcdef01234567" in text
    assert "(uncommitted changes)" in text
    assert "github-ubuntu-24.04" in text
    assert "AB BA BA AB AB BA" in text
    assert "best reachable with 6 blocks: 0.0312" in text
    assert "latency p95 3.1%, throughput 2.0%" in text
    assert "the minimum effect applies" in text


def test_report_has_a_block_chart_per_variant_for_latency_and_throughput():
    ab = make_ab()
    text = render_ab_html(ab)
    assert text.count("<svg") == 2 * len(ab.variants)
    assert "pruned: latency p95 (ms) per block" in text
    # the slots table: one row per side per block
    assert text.count('<tr class="base">') == text.count('<tr class="head">') == 6 * len(ab.variants)


def test_report_escapes_user_text():
    ab = make_ab(scenario_name=EVIL, testbed=EVIL, environment_warnings=[EVIL])
    ab.base.ref = EVIL
    ab.variants[1].name = EVIL
    ab.variants[1].warnings = [EVIL]
    for c in ab.variants[1].comparisons:
        c.variant = EVIL
        c.message = EVIL
    text = render_ab_html(ab)
    assert "<script" not in text
    assert "<b>bold</b>" not in text
    assert "&lt;script&gt;" in text


def test_a_broken_run_shows_the_failure_and_its_log():
    text = html_lib.unescape(render_ab_html(make_broken_ab()))
    assert "The A/B run broke" in text
    assert "serve head" in text
    assert "java.lang.OutOfMemoryError: Java heap space" in text
    assert "head/logs/torchserve.log" in text
    assert "comparisons</h2>" not in text


def test_a_passing_run_renders():
    text = html_lib.unescape(render_ab_html(make_passing_ab()))
    assert "PASS:" in text
    assert "no regression; largest change" in text


def test_write_ab_reports_writes_the_page_and_the_comment(tmp_path):
    ab = make_ab()
    url = "https://github.com/acme/models/actions/runs/1"
    path = write_ab_reports(ab, tmp_path / "ab", report_url=url)
    assert path == tmp_path / "ab" / "index.html"
    assert sorted(p.name for p in path.parent.iterdir()) == ["index.html", "summary.md"]
    assert (path.parent / "summary.md").read_text(encoding="utf-8") == render_pr_comment(ab, report_url=url)
    assert path.read_text(encoding="utf-8") == render_ab_html(ab, report_url=url)
    # without a URL the comment links to the page next to it
    write_ab_reports(ab, tmp_path / "local")
    assert "](index.html)" in (tmp_path / "local" / "summary.md").read_text(encoding="utf-8")


def test_block_chart_draws_both_sides_and_escapes_its_title():
    svg = block_values_svg([2.0, 2.1, None], [2.4, 2.5, 2.3], title=EVIL, axis_label="latency p95 (ms)")
    assert svg.startswith("<svg")
    assert "<script" not in svg
    assert "&lt;script&gt;" in svg
    assert svg.count("<circle") == 5  # the missing base value is not drawn
    assert svg.count("<polyline") == 2


@pytest.mark.parametrize(("base", "head"), [([], []), ([None], [float("nan")])])
def test_block_chart_without_values_is_empty(base, head):
    assert block_values_svg(base, head, title="t", axis_label="y") == ""
