"""The metric catalog and latency percentiles."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.metrics.catalog import (
    METRICS,
    format_bytes,
    format_number,
    format_numbers,
    format_value,
    get_metric,
    is_load_metric,
)
from harness.metrics.latency import latency_summary

EXPECTED_DIRECTION = {
    "latency_p50_ms": "lower",
    "latency_p90_ms": "lower",
    "latency_p95_ms": "lower",
    "latency_p99_ms": "lower",
    "latency_max_ms": "lower",
    "latency_mean_ms": "lower",
    "throughput_rps": "higher",
    "error_rate": "lower",
    "accuracy": "higher",
    "accuracy_inprocess": "higher",
    "model_size_bytes": "lower",
    "model_size_gzip_bytes": "lower",
    "sparsity": "higher",
    "param_count": "lower",
    "client_cpu_percent": "lower",
    "request_count": "higher",
    "accuracy_drop_vs_reference": "lower",
    "max_rps_at_slo": "higher",
    "late_fraction": "lower",
    "service_latency_p95_ms": "lower",
    "server_inference_ms": "lower",
    "server_queue_ms": "lower",
    "server_request_ms": "lower",
    "server_cpu_percent": "lower",
    "server_rss_mb": "lower",
    "top5_accuracy": "higher",
    "macro_f1": "higher",
    "mae": "lower",
    "rmse": "lower",
    "agreement": "higher",
    "kl_divergence": "lower",
    "output_abs_diff_max": "lower",
    "output_abs_diff_mean": "lower",
    "top5_accuracy_inprocess": "higher",
    "macro_f1_inprocess": "higher",
    "mae_inprocess": "lower",
    "rmse_inprocess": "lower",
}


# static properties of the artifact, measured outside the load window; everything else is "load"
MODEL_METRICS = {
    "accuracy",
    "accuracy_inprocess",
    "accuracy_drop_vs_reference",
    "model_size_bytes",
    "model_size_gzip_bytes",
    "sparsity",
    "param_count",
    "top5_accuracy",
    "macro_f1",
    "mae",
    "rmse",
    "agreement",
    "kl_divergence",
    "output_abs_diff_max",
    "output_abs_diff_mean",
    "top5_accuracy_inprocess",
    "macro_f1_inprocess",
    "mae_inprocess",
    "rmse_inprocess",
}
# descriptive figures: their change is neither good nor bad, so reports do not colour it
DESCRIPTIVE_METRICS = {
    "client_cpu_percent",
    "request_count",
    "server_cpu_percent",
    "server_rss_mb",
    "late_fraction",
}


def test_catalog_declares_every_metric_with_its_direction():
    assert {name: spec.better for name, spec in METRICS.items()} == EXPECTED_DIRECTION


def test_catalog_entries_are_keyed_by_their_own_name_and_described():
    for name, spec in METRICS.items():
        assert spec.name == name
        assert spec.description
        assert spec.unit


def test_latency_metric_names_carry_their_unit():
    for name, spec in METRICS.items():
        if spec.unit == "ms":
            assert name.endswith("_ms")


def test_get_metric_lists_known_names_for_an_unknown_one():
    with pytest.raises(ValueError, match=r"unknown metric 'latency_p42'.*latency_p95_ms"):
        get_metric("latency_p42")


def test_is_worse_follows_the_direction():
    assert METRICS["latency_p95_ms"].is_worse(3.0, 2.0)
    assert not METRICS["latency_p95_ms"].is_worse(1.0, 2.0)
    assert METRICS["accuracy"].is_worse(0.9, 0.95)
    assert not METRICS["accuracy"].is_worse(0.99, 0.95)


def test_latency_summary_matches_numpy_linear_percentiles():
    rng = np.random.default_rng(1)
    samples = rng.lognormal(1.0, 0.5, size=997).tolist()
    summary = latency_summary(samples)
    for key, p in (
        ("latency_p50_ms", 50),
        ("latency_p90_ms", 90),
        ("latency_p95_ms", 95),
        ("latency_p99_ms", 99),
    ):
        assert summary[key] == pytest.approx(float(np.percentile(samples, p)))
    assert summary["latency_max_ms"] == max(samples)
    assert summary["latency_mean_ms"] == pytest.approx(sum(samples) / len(samples))


def test_latency_summary_interpolates_between_samples():
    # rank 0.95 * (4 - 1) = 2.85 -> 30 + 0.85 * (40 - 30)
    assert latency_summary([10.0, 20.0, 30.0, 40.0])["latency_p95_ms"] == pytest.approx(38.5)


def test_latency_summary_of_no_samples_has_no_latency_keys():
    assert latency_summary([]) == {}


def test_latency_summary_returns_plain_floats():
    summary = latency_summary([1.0, 2.0, 3.0])
    assert all(type(v) is float for v in summary.values())
    assert set(summary) == {
        "latency_p50_ms",
        "latency_p90_ms",
        "latency_p95_ms",
        "latency_p99_ms",
        "latency_max_ms",
        "latency_mean_ms",
    }


@pytest.mark.parametrize("bad", [[1.0, math.nan], [1.0, math.inf], [-1.0, 2.0]])
def test_latency_summary_rejects_impossible_samples(bad):
    with pytest.raises(ValueError, match="latencies"):
        latency_summary(bad)


@pytest.mark.parametrize(
    ("metric", "value", "text"),
    [
        ("latency_p95_ms", 3.4149, "3.41 ms"),
        ("accuracy", 0.975, "97.50 %"),
        ("throughput_rps", 1234.56, "1,235 req/s"),
        ("throughput_rps", 98.76, "98.8 req/s"),
        ("param_count", 8906, "8,906"),
        ("model_size_bytes", 812, "812 B"),
        ("model_size_bytes", 34_000, "33.2 KiB"),
        ("client_cpu_percent", 41.52, "41.5 %"),
        ("accuracy", None, "-"),
    ],
)
def test_format_value_shows_units(metric, value, text):
    assert format_value(metric, value) == text


def test_format_bytes_uses_binary_units():
    assert format_bytes(1.5 * 1024 * 1024) == "1.50 MiB"
    assert format_bytes(3 * 1024**4) == "3072.0 GiB"


def test_every_metric_says_whether_it_comes_from_the_model_or_the_load_window():
    assert all(spec.source in ("model", "load") for spec in METRICS.values())
    assert {name for name, spec in METRICS.items() if spec.source == "model"} == MODEL_METRICS


@pytest.mark.parametrize(
    "name",
    [
        "latency_p95_ms",
        "latency_mean_ms",
        "throughput_rps",
        "error_rate",
        "request_count",
        "client_cpu_percent",
        "server_cpu_percent",
        "server_rss_mb",
        "server_inference_ms",
        "late_fraction",
        "max_rps_at_slo",
        "service_latency_p95_ms",
    ],
)
def test_window_figures_are_load_metrics(name):
    assert is_load_metric(name)


@pytest.mark.parametrize("name", sorted(MODEL_METRICS))
def test_artifact_properties_are_not_load_metrics(name):
    assert not is_load_metric(name)


def test_an_unknown_metric_is_not_a_load_metric():
    assert not is_load_metric("latency_p42_ms")
    assert not is_load_metric("")


def test_descriptive_metrics_are_not_quality_metrics():
    assert {name for name, spec in METRICS.items() if not spec.quality} == DESCRIPTIVE_METRICS


def test_a_metric_must_declare_its_source():
    from harness.metrics.catalog import MetricSpec

    with pytest.raises(TypeError, match="source"):
        MetricSpec("x_ms", "ms", "lower", "An x.")  # type: ignore[call-arg]
    assert MetricSpec("x_ms", "ms", "lower", "An x.", source="model").quality is True


@pytest.mark.parametrize(
    ("metric", "value", "text"),
    [
        ("latency_p95_ms", 3.4149, "3.41"),
        ("latency_p95_ms", 0.0, "0"),
        ("latency_p95_ms", 0.01234567, "0.01235"),
        ("latency_p95_ms", 123.456, "123.5"),
        ("throughput_rps", 2428.4, "2428"),
        ("throughput_rps", -3.456, "-3.46"),
        ("accuracy", 0.958333, "0.9583"),
        ("model_size_bytes", 123456.0, "123456"),
        ("param_count", 8906, "8906"),
        ("request_count", 12.5, "12.50"),  # not a whole count: shown as the number it is
        ("unknown_metric", 7.0, "7.00"),
        ("accuracy", None, "none"),
        ("latency_p95_ms", math.nan, "nan"),
        ("latency_p95_ms", math.inf, "inf"),
    ],
)
def test_format_number_is_short_but_precise_without_units(metric, value, text):
    assert format_number(metric, value) == text


def test_format_number_with_digits_uses_that_many_significant_digits():
    assert format_number("latency_p95_ms", 2.204912345, digits=6) == "2.20491"
    assert format_number("model_size_bytes", 123456.0, digits=3) == "1.23e+05"


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        (3.41, 2.0, ("3.41", "2.00")),  # distinct already: unchanged
        (2.2049, 2.2, ("2.2049", "2.2")),  # '2.20' twice: more digits
        (2.2, 2.2, ("2.20", "2.20")),  # equal values stay equal
        (1.0000000001, 1.0, ("1.0000000001", "1")),
    ],
)
def test_format_numbers_adds_digits_until_different_values_print_differently(first, second, expected):
    assert format_numbers("latency_p95_ms", first, second) == expected


def test_format_numbers_tells_apart_floats_one_ulp_apart():
    a = 0.1
    b = math.nextafter(a, 1.0)
    shown = format_numbers("accuracy", a, b)
    assert shown[0] != shown[1]
    assert float(shown[0]) == a
    assert float(shown[1]) == b


def test_summaries_headline_the_quality_metric_the_run_has():
    from harness.metrics.catalog import headline_quality

    assert headline_quality([{"accuracy": 0.9, "agreement": 1.0}, {"mae": 3.0}]) == "accuracy"
    assert headline_quality([{"mae": 3.0, "rmse": 4.0, "agreement": 1.0}]) == "mae"  # regression
    assert headline_quality([{"agreement": 0.99, "kl_divergence": 0.01}]) == "agreement"  # unlabelled
    assert headline_quality([{}]) == "accuracy"
