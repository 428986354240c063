"""The HTML report rendered from typed run records (tests/unit/report_records.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from html import unescape
from pathlib import Path

import pytest
from markupsafe import escape

import harness
from harness.report import write_reports
from harness.report.charts import latency_cdf_svg, percentile_bars_svg
from harness.report.html import render_html
from harness.report.load_view import point_validity
from harness.report.metrics_view import metric_sections
from harness.report.run_view import stage_rows
from harness.report.serving_view import serving_panel
from harness.results import Outcome, RunResult
from tests.unit.report_records import RUN_DIR, make_broken_run, make_run, point

EVIL = '<script>alert("x")</script>'


def _text(html: str) -> str:
    """The visible text, tags dropped and whitespace collapsed."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def _section(html: str, title: str) -> str:
    start = html.index(f"<h2>{title}")
    return html[start : html.index("</section>", start)]


def _only(result: RunResult, *names: str) -> RunResult:
    result.variants = [v for v in result.variants if v.name in names]
    return result


def test_write_reports_writes_the_reports_and_exports_and_returns_the_index(tmp_path):
    path = write_reports(make_run(), tmp_path / "run")
    assert path == tmp_path / "run" / "index.html"
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "benchmark-action.json",
        "benchmark.json",
        "index.html",
        "junit.xml",
        "summary.md",
    ]
    assert "int8" in path.read_text(encoding="utf-8")


def test_report_is_self_contained():
    html = render_html(make_run())
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.IGNORECASE)
    assert not re.search(r"url\(\s*['\"]?\s*(https?:)?//", html, re.IGNORECASE)
    assert "@import" not in html
    assert "<script" not in html.lower()
    assert "<link" not in html.lower()


def test_report_escapes_a_malicious_variant_name_and_description():
    result = make_run()
    result.variants[1].name = EVIL
    html = render_html(result)
    assert EVIL not in html
    assert "<script" not in html
    assert "&lt;script&gt;" in html
    assert "<b>bold</b>" not in html


@pytest.mark.parametrize(
    ("keep", "outcome", "code"),
    [
        (("reference",), "pass", 0),
        (("reference", "int8", "pruned"), "regression", 1),
        (("reference", "pruned"), "inconclusive", 3),
    ],
)
def test_the_outcome_is_shown_with_its_meaning_and_exit_code(keep, outcome, code):
    result = _only(make_run(), *keep)
    assert result.outcome.value == outcome
    html = render_html(result)
    assert f'<header class="{outcome}">' in html
    assert f'<span class="status {outcome}">{outcome.upper()}</span>' in html
    assert result.outcome is Outcome(outcome)
    assert f"exit code {code}" in _text(html)
    meaning = {
        "pass": "every gate passed on a valid measurement",
        "regression": "the failure held when the variant was measured again",
        "inconclusive": "too noisy to decide",
    }[outcome]
    line = re.search(r'<p class="outcome-line"><b>([A-Z]+)</b>: ([^<]*)<', html)
    assert line is not None
    assert line.group(1) == outcome.upper()
    assert meaning in line.group(2)


def test_an_errored_run_shows_the_failure_with_its_log_tail_in_a_pre():
    html = render_html(make_broken_run())
    assert '<header class="error">' in html
    failure = _section(html, "The run broke")
    text = _text(failure)
    for expected in (
        "stage load",
        "variant int8",
        "TorchServe exited with code 1 while loading the model",
        "log variants/int8/serving/console.log",
        "Judged before the run broke: reference.",
    ):
        assert expected in text, expected
    assert re.search(r'<pre class="log">[^<]*java.lang.OutOfMemoryError: Java heap space</pre>', failure)
    assert "exit code 2" in _text(html)


def test_an_interrupted_run_says_so():
    assert "The run was interrupted" in render_html(make_broken_run(interrupted=True))


def test_a_variant_the_run_never_judged_is_not_shown_as_passing():
    html = render_html(make_broken_run())
    badges = re.search(r'<tr class="badges"><th>outcome</th>(.*?)</tr>', html, re.S)
    assert badges is not None
    tags = re.findall(r'<span class="tag ([\w-]+)">([^<]+)</span>', badges.group(1))
    assert tags == [("pass", "PASS"), ("error", "ERROR"), ("not-judged", "NOT JUDGED")]


def test_gates_table_shows_the_final_verdicts_with_status_and_typed_evidence():
    gates = _section(render_html(make_run()), "Gates vs baseline")
    text = _text(gates)
    assert gates.count('<tr class="gate">') == 6  # reference 3, int8 2, pruned 1
    assert re.findall(r'<span class="tag (pass|fail|inconclusive)">', gates) == [
        "pass",
        "pass",
        "pass",
        "fail",
        "pass",
        "inconclusive",
    ]
    for evidence in (
        "window test (not significant), ratio 1.03 [0.99, 1.08] 90 %, threshold 1.10",
        "q25 of window p95 2.88 vs 2.80 ms, 8 vs 9 windows",
        "Mann-Whitney p=0.0021 (significant), ratio 1.25 [1.21, 1.30] 90 %",
        "n 5,123 vs 4,987, window test not used: baseline has fewer than 5 windows",
        "McNemar p=0.34 (not significant), Δacc -0.44 pp [-1.21, +0.31]",
        "3 right→wrong / 1 wrong→right of 450",
        "plain comparison",
    ):
        assert evidence in text, evidence
    assert "failed 2 of 2" in text  # the int8 regression held in both measurements
    assert "re-measure 1" in text  # the final verdict of a re-measured variant says which one


def test_the_evidence_column_is_absent_when_every_verdict_is_a_plain_comparison():
    result = _only(make_run(), "reference")
    result.variants[0].verdicts = [v for v in result.variants[0].verdicts if v.metric == "error_rate"]
    assert "<th>evidence</th>" not in render_html(result)


def test_confirmation_shows_each_measurement_its_validity_its_own_verdicts_and_the_reported_one():
    confirmation = _section(render_html(make_run()), "Confirmation")
    int8 = confirmation[confirmation.index("<h3>int8") : confirmation.index("<h3>pruned")]
    rows = re.findall(r"<tr><td class=\"nowrap\">(.*?)</tr>", int8, re.S)
    assert [_text(r).split()[0:2] for r in rows] == [["first", "measurement"], ["re-measure", "1"]]
    assert "REPORTED" not in rows[0]
    assert "REPORTED" in rows[1]
    assert "window test (significant), ratio 1.21" in _text(rows[0])  # the first one's own evidence
    assert "Mann-Whitney p=0.0021" in _text(rows[1])
    assert all('<span class="tag valid">VALID</span>' in r for r in rows)
    pruned = confirmation[confirmation.index("<h3>pruned") :]
    assert pruned.count('<span class="tag invalid">INVALID</span>') == 2
    assert "not stable after 10 windows" in pruned
    assert "reference" not in _text(confirmation).split()  # measured once: no confirmation table


def test_an_inconclusive_variant_is_listed_as_invalid_not_as_a_regression():
    html = render_html(make_run())
    invalid = _section(html, "Invalid measurements")
    assert "pruned" in invalid
    assert "still INVALID after 2 measurements" in invalid
    failed = _text(_section(html, "Failed gates"))
    assert "int8" in failed
    assert "pruned" not in failed
    assert '<span class="tag inconclusive">INCONCLUSIVE</span>' in _section(html, "Variants")


def test_load_figures_of_an_invalid_measurement_are_voided_but_model_figures_are_not():
    rows = {row.metric: row for _, section in metric_sections(make_run().variants) for row in section}
    pruned = 2
    assert rows["latency_p95_ms"].cells[pruned].void
    assert rows["throughput_rps"].cells[pruned].void
    assert not rows["model_size_bytes"].cells[pruned].void
    assert not rows["latency_p95_ms"].cells[1].void


def test_descriptive_figures_are_not_coloured_better_or_worse():
    rows = {row.metric: row for _, section in metric_sections(make_run().variants) for row in section}
    int8 = 1
    assert rows["request_count"].cells[int8].change  # the change is shown ...
    assert rows["request_count"].cells[int8].change_class == ""  # ... but not judged
    assert rows["request_count"].better == ""
    assert rows["latency_p95_ms"].cells[int8].change_class == "worse"
    assert rows["model_size_bytes"].cells[int8].change_class == "better"
    assert "client_cpu_percent" in rows
    assert rows["client_cpu_percent"].better == ""


def test_a_spread_is_red_only_when_it_broke_the_stability_rule_of_an_invalid_point():
    wide = {"throughput_rps": 0.31, "latency_ms": 0.25}
    valid = point_validity(point("users=8", 8, [500.0, 700.0, 640.0], [2.0, 2.6, 2.3], spreads=wide))
    assert valid["spread"]["throughput"] == "31.0 %"
    assert not valid["spread"]["throughput_bad"]
    assert not valid["spread"]["latency_bad"]
    invalid = point_validity(
        point(
            "users=8",
            8,
            [500.0, 700.0, 640.0],
            [2.9, 2.95, 2.93],
            valid=False,
            reasons=("not stable after 10 windows: throughput spread 31.0%",),
            spreads={"throughput_rps": 0.31, "latency_ms": 0.04},
        )
    )
    assert invalid["spread"]["throughput_bad"]
    assert not invalid["spread"]["latency_bad"]
    too_few = point_validity(
        point(
            "users=8", 8, [500.0, 700.0, 640.0], [2.9, 2.95, 2.93], valid=False, reasons=("too few requests",)
        )
    )
    assert not too_few["spread"]["throughput_bad"]  # INVALID, but not for its spreads


def test_stage_total_is_the_wall_time_and_remeasures_are_nested_under_the_gate():
    rows = stage_rows(make_run())
    names = [r["name"] for r in rows]
    assert names[-1] == "total (wall clock, start to finish)"
    assert rows[-1]["seconds"] == "87 s"
    gate = names.index("gate (includes the re-measures below)")
    assert names[gate + 1 : gate + 3] == ["serve_start:int8-confirm1", "load:int8-confirm1:users=8"]
    assert [r["level"] for r in rows[gate + 1 : gate + 3]] == [1, 1]


def test_stage_total_without_a_finish_time_sums_the_top_level_stages_once():
    result = make_run()
    result.finished_at = ""
    top = sum(s for k, s in result.stage_seconds.items() if "-confirm" not in k)
    rows = stage_rows(result)
    assert rows[-1] == {"name": "total (sum of the stages above)", "seconds": f"{top:.1f} s", "total": True}


def test_serving_panel_shows_every_measurement_with_relative_paths_formatted_numbers_and_log_sizes():
    panel = serving_panel(make_run())
    assert [(e["name"], e["measurement"]) for e in panel["entries"]] == [
        ("reference", ""),
        ("int8", "first measurement"),
        ("int8", "re-measure 1"),
        ("pruned", "first measurement"),
        ("pruned", "re-measure 1"),
    ]
    assert panel["columns"] == ["startup_s"]  # teardown_s is the same everywhere: shared
    assert [e["times"] for e in panel["entries"]][:3] == [["5.92 s"], ["5.92 s"], ["6.10 s"]]
    facts = dict(panel["entries"][2]["facts"])
    assert facts["logs.console"] == "variants/int8/serving-confirm1/console.log (18.3 KiB)"
    assert facts["config_path"] == "variants/int8/serving-confirm1/config.properties"
    assert panel["entries"][2]["log_size"] == "1.17 MiB"
    shared = dict(panel["shared"])
    assert shared["teardown_s"] == "0.41 s"
    assert shared["python"] == "/usr/bin/python3"  # outside the run folder: left as it is
    assert panel["log_total"] == "5.83 MiB"
    html = render_html(make_run())
    assert RUN_DIR not in html
    assert "5.920060595999985" not in html


def test_css_keeps_wide_tables_inside_their_card():
    html = render_html(make_run())
    css = html[html.index("<style>") : html.index("</style>")]
    assert re.search(r"\.scroll \{[^}]*overflow-x:auto", css)
    assert re.search(r"td\.evidence \{[^}]*white-space:normal[^}]*overflow-wrap:anywhere", css)
    assert re.search(r"table\.metrics thead th\.variant \{[^}]*white-space:normal", css)
    assert "max-width:1280px" not in css
    for title in ("Variants", "Gates vs baseline"):
        assert '<div class="scroll">\n  <table' in _section(html, title), title


def test_report_of_a_run_without_variants_renders():
    result = make_run()
    result.variants = []
    html = render_html(result)
    assert "no variant results" in html
    assert "No gate was evaluated" in html


def test_failing_verdict_messages_appear_escaped():
    result = make_run()
    result.variants[1].verdicts[0].message = "p95 <b>3.5</b> ms beyond"
    html = render_html(result)
    assert str(escape("p95 <b>3.5</b> ms beyond")) in html


def test_latency_charts_are_drawn_from_the_reported_histograms():
    html = _section(render_html(make_run()), "Latency")
    assert html.count("<svg") == 2
    assert html.count("<polyline") == 3  # one CDF line per variant


def test_cdf_chart_escapes_names_and_handles_empty_input():
    assert latency_cdf_svg({}) == ""
    assert latency_cdf_svg({"a": []}) == ""
    svg = latency_cdf_svg({EVIL: [1.0, 2.0, 3.0]})
    assert EVIL not in svg
    assert "&lt;script&gt;" in svg


def test_cdf_chart_downsamples_large_inputs():
    svg = latency_cdf_svg({"a": [float(i % 997) + 1 for i in range(100_000)]})
    match = re.search(r'points="([^"]*)"', svg)
    assert match is not None
    assert len(match.group(1).split()) <= 402


def test_percentile_bars_escape_names():
    svg = percentile_bars_svg({EVIL: {"latency_p50_ms": 1.0, "latency_p95_ms": 2.0}})
    assert "<rect" in svg
    assert EVIL not in svg


def test_report_modules_do_not_import_heavy_frameworks():
    root = str(Path(harness.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    code = (
        "import sys; import harness.report.html, harness.report.junit, harness.report.markdown, "
        "harness.report.files; "
        "heavy = [m for m in ('torch', 'tensorflow', 'locust', 'gevent', 'matplotlib') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
