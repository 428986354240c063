"""HTML, JUnit and Markdown reports rendered from a fake RunResult."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from markupsafe import escape

import harness
from harness.gates.evaluate import evaluate
from harness.report.charts import latency_cdf_svg, percentile_bars_svg
from harness.report.html import render_html, render_report
from harness.report.junit import junit_xml, write_junit
from harness.report.markdown import render_markdown
from harness.results import RunResult, VariantResult

EVIL = '<script>alert("x")</script>'


def make_result(names=("reference", "int8"), *, latencies=True, baseline=True) -> RunResult:
    variants = []
    for i, name in enumerate(names):
        lat = [1.0 + i + 0.01 * k for k in range(200)] if latencies else []
        metrics = {
            "latency_p50_ms": 2.0 + i,
            "latency_p90_ms": 2.5 + i,
            "latency_p95_ms": 2.8 + i,
            "latency_p99_ms": 3.0 + i,
            "latency_max_ms": 3.5 + i,
            "throughput_rps": 500.0 - 100 * i,
            "error_rate": 0.01 * i,
            "accuracy": 0.97 - 0.02 * i,
            "accuracy_inprocess": 0.97 - 0.02 * i,
            "model_size_bytes": 34000 / (i + 1),
            "model_size_gzip_bytes": 30000 / (i + 1),
            "sparsity": 0.1 * i,
            "param_count": 8906,
            "client_cpu_percent": 40.0,
            "request_count": 5000,
        }
        if not latencies:
            metrics = {k: v for k, v in metrics.items() if not k.startswith("latency_")}
        variants.append(
            VariantResult(
                name=name,
                steps=[] if i == 0 else [{"recipe": "torch.int8", "params": {"mode": "dynamic"}}],
                metrics=metrics,
                latencies_ms=lat,
                failures={"timeout": 2 * i, "http_status": i},
                failure_examples=[f"timeout of {name}"] if i else [],
                warnings=[f"warned about {name}"],
                compression=[{"recipe": "torch.int8", "note": f"report of {name}"}] if i else [],
                artifact=f"variants/{name}/model.pt2",
            )
        )
    gates = {"latency_p95_ms": "+10%", "accuracy": "-0.01 abs", "error_rate": 0}
    base = {v.name: {"latency_p95_ms": 2.8, "accuracy": 0.97} for v in variants} if baseline else None
    verdicts = evaluate(gates, {v.name: v.metrics for v in variants}, base)
    return RunResult(
        run_id="run-42",
        scenario_name="digits-mlp",
        scenario={"name": "digits-mlp", "description": "desc & <b>bold</b>", "gates": gates},
        started_at="2025-11-25T20:00:00Z",
        finished_at="2025-11-25T20:01:00Z",
        environment={"cpu_model": "Test CPU", "packages": {"torch": "2.13.0"}},
        target={"target": "torchserve", "workers": 1},
        variants=variants,
        verdicts=verdicts,
        baseline_status="compared" if baseline else "recorded",
        baseline_message="compared with baseline of fp1",
        stage_seconds={"compress": 1.5, "load": 12.0},
    )


def test_render_report_writes_index_html_with_the_key_content(tmp_path):
    result = make_result()
    path = render_report(result, tmp_path / "run")
    assert path == tmp_path / "run" / "index.html"
    html = path.read_text(encoding="utf-8")
    assert "digits-mlp" in html
    assert "FAIL" in html  # int8 regressed
    assert "compared with baseline of fp1" in html
    for text in (
        "33.2 KiB",
        "97.00 %",
        "timeout 2",
        "client CPU",
        "accuracy (in-process)",
        "throughput",
        "compress",
        "12.00 s",
        "Test CPU",
        "packages.torch",
        "warned about int8",
        "timeout of int8",
        "report of int8",
        "latency_p95_ms: +10%",
    ):
        assert text in html, text
    assert [os.path.basename(p) for p in (tmp_path / "run").iterdir()] == ["index.html"]


def test_report_shows_each_failing_verdict_message():
    result = make_result()
    html = render_html(result)
    failing = [v for v in result.verdicts if not v.passed]
    assert failing
    for verdict in failing:
        assert str(escape(verdict.message)) in html


def test_passing_run_says_pass():
    result = make_result(names=("reference",))
    assert result.passed
    html = render_html(result)
    assert 'class="status pass"' in html
    assert 'class="status fail"' not in html


def test_report_is_self_contained():
    html = render_html(make_result())
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.IGNORECASE)
    assert not re.search(r"url\(\s*['\"]?\s*(https?:)?//", html, re.IGNORECASE)
    assert "@import" not in html
    assert "<script" not in html.lower()
    assert "<link" not in html.lower()


def test_report_escapes_a_malicious_variant_name(tmp_path):
    html = render_report(make_result(names=("reference", EVIL)), tmp_path).read_text()
    assert EVIL not in html
    assert "<script" not in html
    assert "&lt;script&gt;" in html
    assert "<b>bold</b>" not in html  # the scenario description is escaped too


def test_report_includes_the_latency_charts_as_inline_svg():
    html = render_html(make_result())
    assert html.count("<svg") == 2
    assert "<polyline" in html
    assert "latency (ms" in html  # axis labelled with its unit


def test_report_without_latencies_or_verdicts_still_renders():
    result = make_result(latencies=False, baseline=False)
    result.verdicts = []
    html = render_html(result)
    assert "<svg" not in html
    assert "no latency distribution" in html
    assert "No gate was evaluated" in html


def test_report_of_a_run_with_no_variants_renders():
    result = make_result()
    result.variants, result.verdicts = [], []
    assert "no variant results" in render_html(result)


def test_cdf_chart_escapes_names_and_handles_empty_input():
    assert latency_cdf_svg({}) == ""
    assert latency_cdf_svg({"a": []}) == ""
    svg = latency_cdf_svg({EVIL: [1.0, 2.0, 3.0]})
    assert EVIL not in svg
    assert "&lt;script&gt;" in svg


def test_cdf_chart_downsamples_large_inputs():
    svg = latency_cdf_svg({"a": [float(i % 997) + 1 for i in range(100_000)]})
    points = re.search(r'points="([^"]*)"', svg).group(1).split()
    assert len(points) <= 402


def test_percentile_bars_escape_names():
    svg = percentile_bars_svg({EVIL: {"latency_p50_ms": 1.0, "latency_p95_ms": 2.0}})
    assert "<rect" in svg
    assert EVIL not in svg


def test_junit_has_one_testcase_per_variant_and_fails_regressed_ones(tmp_path):
    result = make_result(names=("reference", "int8", "pruned"))
    path = write_junit(result, tmp_path / "out" / "junit.xml")
    root = ET.parse(path).getroot()
    cases = root.findall("./testsuite/testcase")
    assert [c.get("name") for c in cases] == ["reference", "int8", "pruned"]
    failing_variants = {v.variant for v in result.verdicts if not v.passed}
    assert {c.get("name") for c in cases if c.find("failure") is not None} == failing_variants
    assert root.find("testsuite").get("failures") == str(len(failing_variants))
    for case in cases:
        failure = case.find("failure")
        if failure is not None:
            expected = [v.message for v in result.verdicts if v.variant == case.get("name") and not v.passed]
            assert failure.text.splitlines() == expected


def test_junit_strips_characters_xml_cannot_hold():
    result = make_result()
    result.verdicts[0].message = "bad \x00\x1b byte"
    result.verdicts[0].passed = False
    ET.fromstring(junit_xml(result).split("\n", 1)[1])


def test_markdown_summary_has_a_row_per_variant_and_lists_failures():
    result = make_result()
    md = render_markdown(result)
    assert md.startswith("### ❌ FAIL · digits-mlp")
    assert "| variant |" in md
    assert "| reference |" in md
    assert "| int8 |" in md
    assert "❌" in md
    assert "**Failed gates**" in md


def test_markdown_escapes_table_breaking_names():
    md = render_markdown(make_result(names=("reference", "a|b<script>")))
    assert "a\\|b&lt;script>" in md
    assert "<script>" not in md


def test_report_modules_do_not_import_heavy_frameworks():
    root = str(Path(harness.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    code = (
        "import sys; import harness.report.html, harness.report.junit, harness.report.markdown, "
        "harness.gates.evaluate, harness.baselines.store, harness.metrics.latency; "
        "heavy = [m for m in ('torch', 'tensorflow', 'locust', 'gevent', 'matplotlib') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


@pytest.mark.parametrize("status", ["none", "recorded", "updated", "compared"])
def test_every_baseline_status_renders(status):
    result = make_result()
    result.baseline_status = status
    assert f"baseline: {status}" in render_html(result)
