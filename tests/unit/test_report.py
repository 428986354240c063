"""HTML, JUnit and Markdown reports rendered from a fake RunResult."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from html import unescape
from pathlib import Path

import pytest
from markupsafe import escape

import harness
from harness.gates.evaluate import evaluate
from harness.report.charts import latency_cdf_svg, percentile_bars_svg
from harness.report.evidence import gate_failures
from harness.report.html import render_html, render_report
from harness.report.junit import junit_xml, write_junit
from harness.report.markdown import render_markdown
from harness.results import RunResult, VariantResult, Verdict

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


# ---- measurements: validity, sweeps, search, server, evidence, confirmation, compression -------

MARKUP = "<i>markup</i>"


def _windows(throughputs, p95s, *, start=2.0, width=2.0, as_metric_name=False):
    """Window dicts as harness.measurement writes them (asdict of WindowStats), or with the latency
    under its metric name (WindowStats.as_dict)."""
    out = []
    for i, (tp, p95) in enumerate(zip(throughputs, p95s, strict=True)):
        ok = int(tp * width)
        window = {
            "index": i,
            "start_s": start + i * width,
            "end_s": start + (i + 1) * width,
            "requests": ok + 1,
            "ok": ok,
            "failures": 1,
            "throughput_rps": tp,
            "percentile": 95.0,
        }
        window["latency_p95_ms" if as_metric_name else "latency_ms"] = p95
        out.append(window)
    return out


def _point(label, users, throughputs, p95s, *, valid=True, reasons=(), rate=None, extra=None, **kw):
    windows = _windows(throughputs, p95s, **kw)
    tp = sum(throughputs) / len(throughputs)
    p95 = max(p95s)
    metrics = {
        "throughput_rps": tp,
        "latency_p50_ms": p95 * 0.6,
        "latency_p95_ms": p95,
        "latency_p99_ms": p95 * 1.3,
        "error_rate": 0.001,
        **(extra or {}),
    }
    return {
        "label": label,
        "users": users,
        "rate_rps": rate,
        "metrics": metrics,
        "valid": valid,
        "validity_reasons": list(reasons),
        "validity_facts": {
            "warmup_s": 2.0,
            "window_s": 2.0,
            "windows": len(windows),
            "max_windows": 10,
            "stable_windows": 3,
            "percentile": 95.0,
            "max_spread": 0.10,
            "min_requests": 130,
            "requests": sum(w["requests"] for w in windows),
            "ok": sum(w["ok"] for w in windows),
            "error_rate": 0.001,
            "generator_cpu_percent_max": 41.0,
            "stopped_reason": "stable" if valid else "max_windows",
        },
        "windows": windows,
        "stopped_reason": "stable" if valid else "max_windows",
        "server": {},
        "host": {},
        "notes": [],
    }


def _evidence_mw(p, ratio, lo=None, hi=None, **extra):
    """Evidence as gates.evaluate writes it for a Mann-Whitney latency test (+10% gate)."""
    return {
        "test": "mannwhitney",
        "p_value": p,
        "ratio": ratio,
        "ci_low": lo,
        "ci_high": hi,
        "significant": p < 0.01,
        "exceeds_threshold": ratio > 1.1,
        "n_current": 5000,
        "n_baseline": 4800,
        **extra,
    }


def make_measured_result() -> RunResult:
    """A run with everything the new measurements produce: a swept reference with server metrics and
    an SLO search, a confirmed variant, an INVALID distilled variant and a TF PTQ variant."""
    ref_points = [
        _point("users-1", 1, [410, 405, 408], [2.6, 2.7, 2.6]),
        _point("users-2", 2, [700, 705, 698], [3.4, 3.5, 3.4]),
        _point("users-4", 4, [820, 815, 818], [6.8, 6.9, 7.0], as_metric_name=True),
    ]
    reference = VariantResult(
        name="reference",
        steps=[],
        metrics={
            "model_size_bytes": 85063.0,
            "accuracy": 0.9711,
            "accuracy_inprocess": 0.9711,
            "accuracy_drop_vs_reference": 0.0,
            "latency_p50_ms": 4.1,
            "latency_p95_ms": 7.0,
            "latency_p99_ms": 9.1,
            "latency_mean_ms": 4.6,
            "throughput_rps": 818.0,
            "error_rate": 0.001,
            "request_count": 4900,
            "max_rps_at_slo": 742.5,
            "server_request_ms": 3.1,
            "server_inference_ms": 2.2,
            "server_queue_ms": 0.6,
            "server_cpu_percent": 96.0,
            "server_rss_mb": 412.3,
        },
        latencies_ms=[3.0 + 0.02 * k for k in range(300)],
        details={
            "load_points": ref_points,
            "validity": {"valid": True, "reasons": []},
            "search": {
                "slo_ms": 5.0,
                "percentile": 95.0,
                "over": "rate",
                "max_rps_at_slo": 742.5,
                "probes": [
                    {
                        "over": "rate",
                        "value": 100.0,
                        "label": "rate-100rps",
                        "throughput_rps": 99.8,
                        "percentile": 95.0,
                        "percentile_ms": 2.1,
                        "error_rate": 0.0,
                        "request_count": 500,
                        "passed": True,
                    },
                    {
                        "over": "rate",
                        "value": 1000.0,
                        "label": "rate-1000rps",
                        "throughput_rps": 811.0,
                        "percentile": 95.0,
                        "percentile_ms": 48.0,
                        "error_rate": 0.0,
                        "request_count": 4100,
                        "passed": False,
                    },
                    {
                        "over": "rate",
                        "value": 750.0,
                        "label": "rate-750rps",
                        "throughput_rps": 742.5,
                        "percentile": 95.0,
                        "percentile_ms": 4.4,
                        "error_rate": 0.0,
                        "request_count": 3700,
                        "passed": True,
                    },
                ],
            },
        },
    )
    # re-measured the way harness.api does it: the variant is the latest measurement, the first one
    # is kept in details["superseded_measurement"], each re-measurement in details["confirmations"]
    first_metrics = {"latency_p50_ms": 5.0, "latency_p95_ms": 8.3, "latency_p99_ms": 10.0, "accuracy": 0.9622}
    remeasure_verdicts = [
        {
            "variant": "pruned-int8",
            "metric": "latency_p95_ms",
            "threshold": "+10%",
            "current": 7.4,
            "baseline": 7.0,
            "limit": 7.7,
            "passed": True,
            "message": "latency_p95_ms 7.40 <= limit 7.70 (baseline 7.00 +10%)",
            "evidence": _evidence_mw(0.2, 1.06),
        },
    ]
    pruned = VariantResult(
        name="pruned-int8",
        steps=[{"recipe": "torch.prune", "params": {"amount": 0.5}}],
        metrics={
            "model_size_bytes": 19122.0,
            "accuracy": 0.9622,
            "accuracy_drop_vs_reference": 0.0089,
            "latency_p50_ms": 4.6,
            "latency_p95_ms": 7.4,
            "latency_p99_ms": 9.0,
            "latency_mean_ms": 5.0,
            "throughput_rps": 650.0,
            "error_rate": 0.0,
        },
        compression=[
            {
                "recipe": "torch.prune",
                "params": {"amount": 0.5, "scope": "global"},
                "seconds": 0.0015,
                "sparsity": 0.5,
                "sparsity_all_params": 0.4941,
                "notes": [
                    "global L1 unstructured pruning of 3 Linear layers, reached 0.5000 of Linear weights"
                ],
                "details": {"layer_sparsity": {"0": 0.449829, "2": 0.562134, "4": 0.346875}},
            },
        ],
        details={
            "load_points": [_point("users-4", 4, [650, 645, 655], [7.3, 7.4, 7.35])],
            "validity": {"valid": True, "reasons": []},
            "superseded_measurement": {"metrics": first_metrics, "validity": {"valid": True, "reasons": []}},
            "confirmations": [
                {"metrics": {"latency_p95_ms": 7.4}, "verdicts": remeasure_verdicts, "passed": True}
            ],
        },
    )
    distilled = VariantResult(
        name="distilled",
        steps=[{"recipe": "torch.distill", "params": {}}],
        metrics={
            "accuracy": 0.9511,
            "accuracy_drop_vs_reference": 0.02,
            "latency_p95_ms": 3.9,
            "throughput_rps": 520.0,
            "latency_mean_ms": 2.5,
            "late_fraction": 0.031,
        },
        compression=[
            {
                "recipe": "torch.distill",
                "params": {"temperature": 4.0, "alpha": 0.7},
                "seconds": 3.2,
                "notes": ["student 64-32-10 (2,410 params) distilled from teacher (17,226 params)"],
                "details": {
                    "teacher_accuracy": 0.9711,
                    "student_accuracy": 0.9511,
                    "student_alone_accuracy": 0.9333,
                    "teacher_param_count": 17226,
                    "student_param_count": 2410,
                    "student_layers": [64, 32, 10],
                    "temperature": 4.0,
                    "train_seconds": 1.42,
                },
            },
        ],
        details={
            "load_points": [
                _point(
                    "rate-500rps",
                    4,
                    [520, 410, 600],
                    [2.9, 5.1, 3.2],
                    rate=500.0,
                    valid=False,
                    reasons=[
                        "not stable after 3 windows: throughput spread 36.5% (limit 10.0%)",
                        f"too few requests for p99: {MARKUP}",
                    ],
                    extra={"late_fraction": 0.031},
                )
            ],
            "validity": {
                "valid": False,
                "reasons": [
                    "not stable after 3 windows: throughput spread 36.5% (limit 10.0%)",
                    f"too few requests for p99: {MARKUP}",
                ],
            },
        },
    )
    tf_ptq = VariantResult(
        name="tf-ptq-int8",
        steps=[{"recipe": "tf.ptq", "params": {"mode": "int8"}}],
        metrics={
            "model_size_bytes": 23000.0,
            "accuracy": 0.9689,
            "latency_p95_ms": 1.9,
            "throughput_rps": 900.0,
        },
        compression=[
            {
                "recipe": "tf.ptq",
                "params": {"mode": "int8"},
                "seconds": 0.8,
                "notes": [],
                "details": {
                    "tflite_bytes": 23000,
                    "tensor_dtypes": {"int8": 9, "int32": 3, "float32": 2},
                    "unique_weights_per_kernel": {"dense": 256, "dense_1": 255},
                    "accuracy_tflite": 0.9689,
                },
            },
        ],
    )
    verdicts = [
        Verdict(  # as harness.gates.judge gives an INVALID measurement
            "distilled",
            "validity",
            "a VALID measurement",
            None,
            None,
            None,
            False,
            "measurement INVALID, not compared with the baseline: not stable after 3 windows: throughput "
            f"spread 36.5% (limit 10.0%); too few requests for p99: {MARKUP}",
        ),
        Verdict(
            "reference",
            "latency_p95_ms",
            "+10%",
            7.0,
            6.9,
            7.59,
            True,
            "latency_p95_ms 7.00 <= limit 7.59 (baseline 6.90 +10%)",
            _evidence_mw(0.31, 1.01),
        ),
        Verdict(
            "pruned-int8",
            "latency_p95_ms",
            "+10%",
            8.3,
            7.0,
            7.7,
            True,
            "latency_p95_ms 8.30 > limit 7.70 (baseline 7.00 +10%) [not confirmed: the re-measurement "
            "passed this gate]",
            {**_evidence_mw(0.003, 1.18, 1.10, 1.27), "measurement": 1, "confirmed": False},
        ),
        Verdict(
            "pruned-int8",
            "latency_p95_ms",
            "+10%",
            7.4,
            7.0,
            7.7,
            True,
            "latency_p95_ms 7.40 <= limit 7.70 (baseline 7.00 +10%)",
            {**_evidence_mw(0.2, 1.06), "confirmation": True, "measurement": 2},
        ),
        Verdict(
            "pruned-int8",
            "accuracy",
            "-0.01 abs",
            0.9622,
            0.9711,
            0.9611,
            True,
            "accuracy 0.9622 >= limit 0.9611 (baseline 0.9711 -0.01 abs)",
            {
                "test": "mcnemar",
                "p_value": 0.5,
                "delta": -0.004,
                "ci_low": -0.012,
                "ci_high": 0.004,
                "b": 5,
                "c": 1,
                "n": 450,
                "significant": False,
            },
        ),
        Verdict(
            "tf-ptq-int8",
            "accuracy",
            "-0.01 abs",
            0.9689,
            0.9711,
            0.9611,
            True,
            "accuracy 0.9689 >= limit 0.9611; plain comparison: the baseline stores no per-example "
            "predictions",
            {"test": "none", "reason": "the baseline stores no per-example predictions"},
        ),
    ]
    return RunResult(
        run_id="run-43",
        scenario_name="digits-measured",
        scenario={"name": "digits-measured", "gates": {"latency_p95_ms": "+10%", "accuracy": "-0.01 abs"}},
        started_at="2025-11-26T10:00:00Z",
        finished_at="2025-11-26T10:04:00Z",
        environment={"cpu_model": "Test CPU"},
        target={"target": "torchserve"},
        variants=[reference, pruned, distilled, tf_ptq],
        verdicts=verdicts,
        baseline_status="compared",
        baseline_message="compared with baseline of fp1",
        stage_seconds={"compress": 4.0, "load": 60.0},
    )


def _text(html: str) -> str:
    """The visible text of the report, tags dropped, entities decoded, whitespace collapsed."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def test_invalid_measurement_is_flagged_in_the_header_and_lists_its_reasons():
    result = make_measured_result()
    html = render_html(result)
    assert not gate_failures(result)  # no gate failed but the validity one ...
    assert 'class="status invalid"' in html  # ... so the run says INVALID, not FAIL or PASS
    assert "<title>INVALID" in html
    text = _text(html)
    assert "Invalid measurements" in text
    assert "1 INVALID" in text
    assert "not stable after 3 windows: throughput spread 36.5% (limit 10.0%)" in text
    assert html.count('class="tag invalid"') >= 3  # summary list, variants table, validity card


def test_valid_run_shows_no_invalid_banner():
    result = make_measured_result()
    result.variants = [v for v in result.variants if v.name != "distilled"]
    result.verdicts = [v for v in result.verdicts if v.variant != "distilled"]
    html = render_html(result)
    assert 'class="status pass"' in html
    assert "Invalid measurements" not in html
    assert "INVALID</span>" not in html


def test_validity_card_shows_each_window_and_the_spread():
    html = render_html(make_measured_result())
    text = _text(html)
    assert "Measurement validity" in text
    # distilled windows: 520, 410, 600 req/s with p95 2.9 / 5.1 / 3.2 ms
    for figure in ("520.0 req/s", "410.0 req/s", "600.0 req/s", "2.90 ms", "5.10 ms", "3.20 ms"):
        assert figure in text, figure
    # (600 - 410) / 520 = 36.5 %, over the 10 % limit: shown and marked
    assert re.search(r'class="num bad">36\.5 %', html)
    assert "spread of the last 3 (limit 10.0 %)" in text
    assert "warm-up 2 s excluded" in text
    # the latency column is read from either window shape (latency_ms or latency_p95_ms)
    assert "7.00 ms" in text


def test_sweep_table_and_latency_throughput_chart_are_rendered():
    html = render_html(make_measured_result())
    assert "Load sweep" in html
    section = html[html.index("<h2>Load sweep</h2>") :]
    section = section[: section.index("</section>")]
    for label in ("users-1", "users-2", "users-4"):
        assert label in section
    assert "GATED" in section  # the last point is the one gated
    assert "Latency (p95) against throughput" in section
    svg = section[section.index("<svg") : section.index("</svg>")]
    assert svg.count("<circle") == 3  # one per load point of the only swept variant
    assert "<polyline" in svg


def test_no_sweep_section_when_every_variant_has_one_load_point():
    result = make_measured_result()
    result.variants[0].details["load_points"] = result.variants[0].details["load_points"][-1:]
    assert "Load sweep" not in render_html(result)


def test_search_result_and_probes_are_shown():
    text = _text(render_html(make_measured_result()))
    assert "742.5 req/s with p95 ≤ 5 ms" in text
    assert "within SLO" in text
    assert "48.00 ms" in text  # the failing probe's p95
    assert "rate-1000rps" in text


def test_client_vs_server_section_splits_the_mean_latency():
    html = render_html(make_measured_result())
    text = _text(html)
    assert "Client vs server" in text
    # client mean 4.6 ms - server request 3.1 ms = 1.5 ms left for the network stack
    assert "network stack + HTTP + serialization 1.50 ms" in text
    assert "the server accounts for 3.10 ms (67 %)" in text
    assert "inference 2.20 ms" in text
    assert "queueing 0.60 ms" in text
    assert 'class="seg-inference"' in html
    assert 'class="seg-network"' in html


def test_client_vs_server_section_is_absent_without_server_metrics():
    result = make_measured_result()
    for variant in result.variants:
        for key in ("server_request_ms", "server_inference_ms", "server_queue_ms"):
            variant.metrics.pop(key, None)
    assert "Client vs server" not in render_html(result)


def test_server_reporting_more_than_the_client_gives_no_split():
    result = make_measured_result()
    result.variants[0].metrics["server_request_ms"] = 9.0  # above the 4.6 ms client mean
    text = _text(render_html(result))
    assert "no split is shown" in text


def test_gates_table_has_an_evidence_column_with_test_effect_and_interval():
    html = render_html(make_measured_result())
    assert "<th>evidence</th>" in html
    text = _text(html)
    assert "Mann-Whitney p=0.003 (significant), ratio 1.18 [1.10, 1.27], n 5,000 vs 4,800" in text
    assert (
        "McNemar p=0.5 (not significant), Δacc -0.4 pp [-1.2, +0.4], 5 right→wrong / 1 wrong→right of 450"
        in text
    )
    assert "no test: the baseline stores no per-example predictions" in text


def test_evidence_column_is_absent_when_no_verdict_carries_evidence():
    result = make_result()
    assert result.verdicts
    for verdict in result.verdicts:
        verdict.evidence = {}
    html = render_html(result)
    assert "<th>evidence</th>" not in html
    assert "<th>limit</th>" in html  # the gates table itself is still there


def _confirmation_section(html: str) -> str:
    section = html[html.index("<h2>Confirmation") :]
    return _text(section[: section.index("</section>")])


def test_confirmation_shows_the_first_measurement_and_the_remeasure():
    html = render_html(make_measured_result())
    section = _confirmation_section(html)
    assert section.index("first measurement (superseded)") < section.index("re-measure 1 (reported)")
    # the first measurement's own outcome (8.30 ms, over the 7.70 ms limit and significant) is a
    # FAIL here, even though merging with the passing re-measure turned its verdict into a pass
    first = section[section.index("first measurement") : section.index("re-measure 1")]
    assert "8.30 ms FAIL" in first
    assert "7.40 ms PASS" in section
    assert "2 measurements, 1 with a failing gate." in section
    text = _text(html)
    assert "RE-MEASURE 1" in text  # the re-measurement's row in the gates table
    assert "NOT CONFIRMED" in text  # the first measurement's failure did not hold


def test_variants_table_takes_the_verdict_of_the_reported_measurement():
    html = render_html(make_measured_result())
    table = html[html.index('<table class="metrics">') :]
    table = table[: table.index("</table>")]
    # the reported p95 of pruned-int8 is the re-measure's 7.40 ms, with that measurement's rule
    assert re.search(r'title="latency_p95_ms 7\.40 &lt;= limit 7\.70[^"]*">\s*7\.40 ms', table)


def test_confirmation_is_read_from_numbered_verdicts_when_details_have_none():
    result = make_measured_result()
    del result.variants[1].details["confirmations"]
    del result.variants[1].details["superseded_measurement"]
    section = _confirmation_section(render_html(result))
    assert section.index("first measurement") < section.index("re-measure 1")
    assert "8.30 ms" in section  # each row shows its verdicts' current values
    assert "7.40 ms" in section


def test_an_invalid_first_measurement_is_marked_in_the_confirmation_table():
    result = make_measured_result()
    superseded = result.variants[1].details["superseded_measurement"]
    superseded["validity"] = {"valid": False, "reasons": ["server restarted during the measurement"]}
    html = render_html(result)
    section = html[html.index("<h2>Confirmation") :]
    section = section[: section.index("</section>")]
    assert 'title="server restarted during the measurement"' in section
    assert section.count("INVALID") == 1


def test_distillation_step_is_summarised_against_the_student_trained_alone():
    text = _text(render_html(make_measured_result()))
    assert (
        "student 95.11 % vs the same student trained alone 93.33 % (teacher 97.11 %): distillation +1.78 pp; "
        "2,410 parameters vs the teacher's 17,226 (14%)"
    ) in text
    assert "student 64-32-10 (2,410 params) distilled from teacher" in text  # its note, as a line
    assert "step report (JSON)" in text  # the raw report is still there, collapsed


def test_step_details_are_listed_compactly():
    text = _text(render_html(make_measured_result()))
    assert "tensor_dtypes int8: 9, int32: 3, float32: 2" in text
    assert "unique_weights_per_kernel dense: 256, dense_1: 255" in text
    assert "accuracy_tflite 96.89 %" in text
    assert "layer_sparsity 0: 0.4498, 2: 0.5621, 4: 0.3469" in text


def test_new_metric_rows_appear_in_their_sections_and_empty_rows_are_hidden():
    html = render_html(make_measured_result())
    for label in (
        "accuracy drop vs reference",
        "max req/s at SLO",
        "late sends",
        "server inference",
        "server queue",
        "server request",
        "server CPU",
        "server RSS",
    ):
        assert f">{label}<" in html, label
    assert ">Server</th>" in html  # the new group of rows
    # no variant has these: their rows are hidden
    table = html[html.index('<table class="metrics">') :]
    table = table[: table.index("</table>")]
    for label in ("model size (gzip)", "sparsity", "client CPU", "service p95", "latency p90"):
        assert f">{label}<" not in table, label


def test_a_gated_metric_keeps_its_row_even_when_no_variant_reported_it():
    result = make_result()
    for variant in result.variants:
        variant.metrics.pop("error_rate")
    result.verdicts = evaluate({"error_rate": 0}, {v.name: v.metrics for v in result.variants}, None)
    assert ">error rate<" in render_html(result)


def test_measurement_text_is_escaped():
    result = make_measured_result()
    result.variants[2].name = EVIL
    result.variants[2].compression[0]["notes"].append(EVIL)
    result.variants[0].details["load_points"][0]["label"] = EVIL
    html = render_html(result)
    assert EVIL not in html
    assert MARKUP not in html
    assert "<script" not in html.lower()
    assert "&lt;i&gt;markup&lt;/i&gt;" in html


def test_report_without_measurement_details_hides_the_new_sections():
    html = render_html(make_result())
    for heading in (
        "Measurement validity",
        "Load sweep",
        "Highest load within",
        "Client vs server",
        "Confirmation",
        "Invalid measurements",
    ):
        assert heading not in html, heading


def test_latency_throughput_chart_needs_two_points_and_escapes_names():
    from harness.report.charts import CurvePoint, latency_throughput_svg

    assert latency_throughput_svg({"a": [CurvePoint(1.0, 1.0, "u1")]}) == ""
    svg = latency_throughput_svg({EVIL: [CurvePoint(10, 1, "u1"), CurvePoint(20, 3, EVIL, valid=False)]})
    assert EVIL not in svg
    assert 'fill="#fff"' in svg  # the invalid point is hollow


def test_markdown_summary_shows_validity_and_invalid_reasons():
    md = render_markdown(make_measured_result())
    assert md.startswith("### ❌ INVALID · digits-measured")
    assert "| validity |" in md
    assert "❌ INVALID" in md.split("**Invalid measurements**")[0]  # in the table row
    assert "**Invalid measurements**" in md
    assert "not stable after 3 windows" in md
    assert "&lt;i>markup&lt;/i>" in md  # escaped like every other cell
    assert "max rps at SLO" in md


def test_markdown_summary_of_an_incomplete_run_says_error():
    result = make_result()
    result.error = "TorchServe did not start\nlong log"
    md = render_markdown(result)
    assert md.startswith("### ❌ ERROR")
    assert "TorchServe did not start" in md
    assert "long log" not in md


def test_junit_fails_an_invalid_measurement_with_its_reasons():
    result = make_measured_result()
    root = ET.fromstring(junit_xml(result).split("\n", 1)[1])
    cases = {c.get("name"): c for c in root.findall("./testsuite/testcase")}
    failure = cases["distilled"].find("failure")
    assert failure is not None
    assert failure.get("type") == "InvalidMeasurement"
    assert failure.text.splitlines() == [
        "measurement INVALID: not stable after 3 windows: throughput spread 36.5% (limit 10.0%)",
        f"measurement INVALID: too few requests for p99: {MARKUP}",
    ]
    assert all(cases[n].find("failure") is None for n in ("reference", "pruned-int8", "tf-ptq-int8"))
    assert root.find("testsuite").get("failures") == "1"


@pytest.mark.parametrize(
    ("metric", "evidence", "expected"),
    [
        (
            "latency_p99_ms",
            {
                "test": "bootstrap",
                "p_value": None,
                "ratio": 1.234,
                "ci_low": 1.2,
                "ci_high": 1.27,
                "significant": True,
                "n_current": 900,
                "n_baseline": 1000,
            },
            "bootstrap (significant), ratio 1.23 [1.20, 1.27], n 900 vs 1,000",
        ),
        ("latency_p95_ms", {"test": "mannwhitney", "p_value": 0.00001}, "Mann-Whitney p<0.001"),
        (
            "latency_p95_ms",
            {
                "test": "windows",
                "ratio": 1.152,
                "ci_low": 1.11,
                "ci_high": 1.19,
                "significant": True,
                "n_current": 20,
                "n_baseline": 20,
            },
            "window test (significant), ratio 1.15 [1.11, 1.19], 20 vs 20 windows",
        ),
        ("accuracy", {"test": "none", "compared": False}, "not compared"),
        ("throughput_rps", {}, ""),
    ],
)
def test_evidence_text_reads_each_kind_of_test(metric, evidence, expected):
    from harness.report.evidence import evidence_text

    assert evidence_text(metric, evidence) == expected


def test_a_plain_comparison_breach_counts_as_failed_on_its_own_even_after_merging():
    from harness.report.evidence import failed_on_its_own

    merged = {"metric": "throughput_rps", "current": 90.0, "limit": 95.0, "passed": True, "evidence": {}}
    assert failed_on_its_own(merged)
    assert not failed_on_its_own({**merged, "current": 99.0})


def test_the_validity_verdict_is_in_the_gates_table_but_not_repeated_as_a_failed_gate():
    result = make_measured_result()
    html = render_html(result)
    assert "Failed gates" not in html  # the INVALID banner already carries its reasons
    assert "<code>validity</code>" in html  # the verdict itself stays in the gates table
    assert "5 passed, 1 failed" in _text(html)
    assert "**Failed gates**" not in render_markdown(result)


def test_a_regression_next_to_an_invalid_measurement_makes_the_run_fail():
    result = make_measured_result()
    result.verdicts[1].passed = False  # reference latency gate
    html = render_html(result)
    assert 'class="status fail"' in html
    assert "Failed gates" in html
    assert "Invalid measurements" in html
    assert render_markdown(result).startswith("### ❌ FAIL")
