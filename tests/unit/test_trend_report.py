"""The report's Trend section: a chart per gated metric with change points marked and the run's
own point highlighted, shown only for a run recorded with `--history`; and one Markdown line per
change point."""

from __future__ import annotations

import re
from pathlib import Path

from harness.history.record import ChangePoint, Trend
from harness.report.html import render_html
from harness.report.markdown import render_markdown
from harness.report.trend_chart import trend_svg
from harness.results import RunResult
from tests.unit.report_records import make_run


def make_trend(*, variant: str = "int8") -> Trend:
    n = 14
    values = [10.0 + 0.1 * (i % 3) for i in range(9)] + [12.0 + 0.1 * (i % 2) for i in range(n - 9)]
    run_ids = [f"night{i:02d}" for i in range(n)]
    change = ChangePoint(
        scenario="digits",
        variant=variant,
        metric="latency_p95_ms",
        testbed="ci <large>",
        index=9,
        run_id="night09",
        time="2025-03-10T02:00:00+00:00",
        before=10.1,
        after=12.05,
        magnitude=12.05 / 10.1 - 1,
        p_value=0.0005,
        points_before=9,
        points_after=5,
        annotations_changed={"torch": ["2.12.0", "2.13.0"]},
        commit_before="a" * 40,
        commit_after="b" * 40,
    )
    return Trend(
        variant=variant,
        metric="latency_p95_ms",
        testbed="ci <large>",
        run_ids=run_ids,
        times=[f"2025-03-{i + 1:02d}T02:00:00+00:00" for i in range(n)],
        values=values,
        valid=[i != 4 for i in range(n)],
        own_index=n - 1,
        change_points=[change],
        acknowledged_from=["night02"],
    )


def test_trend_svg_marks_change_points_acks_invalid_points_and_the_own_point() -> None:
    svg = trend_svg(make_trend())
    assert svg.startswith("<svg")
    assert svg.endswith("</svg>")
    assert svg.count('class="change-point"') == 1
    assert "+19.3%" in svg  # the magnitude label
    assert svg.count('class="own-point"') == 1
    assert "this run" in svg
    assert svg.count('class="ack"') == 1
    assert svg.count('fill="#fff"') == 1  # the one INVALID point is hollow
    assert "ci &lt;large&gt;" in svg
    assert "<large>" not in svg


def test_trend_svg_without_change_points_or_points() -> None:
    trend = make_trend()
    trend.change_points, trend.acknowledged_from = [], []
    svg = trend_svg(trend)
    assert 'class="change-point"' not in svg
    assert 'class="own-point"' in svg
    assert trend_svg(Trend(variant="v", metric="m", testbed="t")) == ""
    single = Trend("v", "latency_p95_ms", "t", ["r"], ["2025-01-01T00:00:00+00:00"], [3.0], [True], 0)
    assert 'class="own-point"' in trend_svg(single)


def with_trends(result: RunResult) -> RunResult:
    result.trends = [make_trend(), make_trend(variant="reference")]
    result.trends[1].change_points = []
    result.trends[1].note = "10 valid points are needed before change points are looked for (have 4)"
    return result


def test_report_with_trends_has_the_trend_section() -> None:
    html = render_html(with_trends(make_run()))
    assert "<h2>Trend</h2>" in html
    assert html.count('class="change-point"') == 1
    assert html.count('class="own-point"') == 2
    assert "night09" in html
    assert "+19.3%" in html
    assert "torch 2.12.0 → 2.13.0" in html
    assert "(have 4)" in html
    assert "ci &lt;large&gt;" in html
    assert "ci <large>" not in html
    # still self-contained: nothing loaded from elsewhere
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)


def test_report_without_trends_has_no_trend_section() -> None:
    html = render_html(make_run())
    assert "<h2>Trend</h2>" not in html
    assert "change-point" not in html


def test_trends_survive_results_json_and_render_the_same(tmp_path: Path) -> None:
    result = with_trends(make_run())
    result.write(tmp_path)
    loaded = RunResult.load(tmp_path)
    assert loaded.trends == result.trends
    assert render_html(loaded) == render_html(result)


def test_summary_has_one_line_per_change_point_only_when_there_are_some() -> None:
    text = render_markdown(with_trends(make_run()))
    assert text.count("Change points in the nightly history") == 1
    (line,) = [ln for ln in text.splitlines() if "night09" in ln]
    assert line.startswith("- latency\\_p95\\_ms of int8 on ci &lt;large>: from run night09")
    assert "+19.3%" in line
    assert "torch 2.12.0 → 2.13.0" in line
    no_changes = make_run()
    no_changes.trends = [make_trend()]
    no_changes.trends[0].change_points = []
    assert "Change points" not in render_markdown(no_changes)
    assert "Change points" not in render_markdown(make_run())
