"""Parsing gate thresholds as written in scenarios."""

from __future__ import annotations

import pytest

from harness.gates.thresholds import parse_threshold


@pytest.mark.parametrize(
    ("metric", "text", "kind", "amount"),
    [
        ("latency_p95_ms", "+10%", "relative", 0.10),
        ("latency_p95_ms", " + 10 % ", "relative", 0.10),
        ("throughput_rps", "-5%", "relative", 0.05),
        ("model_size_bytes", "+2 abs", "absolute", 2.0),
        ("accuracy", "-0.01 abs", "absolute", 0.01),
        ("accuracy", "-0.01 ABS", "absolute", 0.01),
        ("accuracy", "-1e-2 abs", "absolute", 0.01),
        ("error_rate", 0, "limit", 0.0),
        ("error_rate", 0.05, "limit", 0.05),
        ("error_rate", "0", "limit", 0.0),
        ("accuracy", "0.9", "limit", 0.9),
        ("latency_p99_ms", ".5", "limit", 0.5),
    ],
)
def test_parse_threshold_reads_every_form(metric, text, kind, amount):
    threshold = parse_threshold(metric, text)
    assert threshold.kind == kind
    assert threshold.amount == pytest.approx(amount)
    assert threshold.metric == metric
    assert threshold.needs_baseline == (kind != "limit")


def test_threshold_keeps_the_text_as_written():
    assert parse_threshold("latency_p95_ms", " +10% ").text == "+10%"
    assert parse_threshold("error_rate", 0).text == "0"


@pytest.mark.parametrize(
    ("metric", "text", "baseline", "limit"),
    [
        ("latency_p95_ms", "+10%", 2.0, 2.2),  # lower is better: allowed to rise
        ("throughput_rps", "-5%", 100.0, 95.0),  # higher is better: allowed to drop
        ("model_size_bytes", "+2 abs", 100.0, 102.0),
        ("accuracy", "-0.01 abs", 0.95, 0.94),
        ("error_rate", 0.05, None, 0.05),
        ("accuracy", "0.9", 0.99, 0.9),  # a bare limit ignores the baseline
    ],
)
def test_limit_moves_in_the_allowed_direction(metric, text, baseline, limit):
    assert parse_threshold(metric, text).limit(baseline) == pytest.approx(limit)


def test_relative_limit_without_baseline_is_an_error():
    with pytest.raises(ValueError, match="needs a baseline"):
        parse_threshold("latency_p95_ms", "+10%").limit(None)


@pytest.mark.parametrize(
    ("metric", "text", "suggestion"),
    [
        ("latency_p95_ms", "-10%", "'+10%'"),
        ("accuracy", "+0.01 abs", "'-0.01 abs'"),
        ("throughput_rps", "+5%", "'-5%'"),
        ("error_rate", "-0.01 abs", "'+0.01 abs'"),
    ],
)
def test_sign_pointing_the_better_way_is_rejected_with_the_fix(metric, text, suggestion):
    with pytest.raises(ValueError, match="improving direction") as info:
        parse_threshold(metric, text)
    assert suggestion in str(info.value)
    assert metric in str(info.value)


def test_unsigned_relative_threshold_asks_for_a_sign():
    with pytest.raises(ValueError, match=r"needs a sign.*'\+10%'"):
        parse_threshold("latency_p95_ms", "10%")


def test_signed_bare_number_is_ambiguous():
    with pytest.raises(ValueError, match=r"ambiguous.*abs"):
        parse_threshold("error_rate", "+0.05")


def test_negative_bare_number_is_rejected_with_the_right_sign_suggested():
    with pytest.raises(ValueError, match=r"cannot be negative.*'-0.5 abs'"):
        parse_threshold("accuracy", -0.5)


def test_unknown_metric_lists_known_metrics():
    with pytest.raises(ValueError, match=r"unknown metric 'latency_p95'.*latency_p95_ms.*throughput_rps"):
        parse_threshold("latency_p95", "+10%")


@pytest.mark.parametrize("text", ["ten percent", "+10 %%", "10 ms", "", "+", "abs", True, None, [1]])
def test_unreadable_threshold_is_rejected(text):
    with pytest.raises(ValueError, match="latency_p95_ms"):
        parse_threshold("latency_p95_ms", text)


def test_non_finite_numbers_are_rejected():
    with pytest.raises(ValueError, match="finite"):
        parse_threshold("latency_p95_ms", float("nan"))
    with pytest.raises(ValueError, match="finite"):
        parse_threshold("latency_p95_ms", "+1e999%")


def test_parse_threshold_is_importable_without_heavy_modules():
    import os
    import subprocess
    import sys
    from pathlib import Path

    import harness

    root = str(Path(harness.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    code = (
        "import sys; from harness.gates.thresholds import parse_threshold; parse_threshold('accuracy', 0.9); "
        "heavy = [m for m in ('torch', 'tensorflow', 'locust', 'numpy', 'jinja2') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
