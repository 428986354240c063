"""Prometheus parsing, per-request means over a window, and the client/server latency split.

The TorchServe texts in tests/unit/data were captured from a real TorchServe 0.12 started by
TorchServeTarget (metrics_mode=prometheus), before and after 50 requests. The TF Serving text
below is NOT captured: it is written from tensorflow/serving's metric definitions
(servables/tensorflow/util.cc) and its exporter (util/prometheus_exporter.cc: "/" becomes ":",
no HELP lines, counters without "_total", histograms as _bucket/_sum/_count).
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.metrics.server_metrics import (
    ServerMetricsError,
    ServerMetricsWindow,
    latency_breakdown,
    parse_prometheus,
    scrape,
    window_summary,
)
from harness.processes import free_port

DATA = Path(__file__).with_name("data")
TS_BEFORE = (DATA / "torchserve-0.12-metrics-before.prom").read_text()
TS_AFTER = (DATA / "torchserve-0.12-metrics-after.prom").read_text()
_TS_SERIES = '{hostname="vm",model_name="model",model_version="default"}'


def _tf_text(ok: int, invalid: int | None, request_sum_us: float, runtime_sum_us: float) -> str:
    count = ok + (invalid or 0)
    lines = [
        "# TYPE :tensorflow:serving:request_count counter",
        f':tensorflow:serving:request_count{{model_name="model",status="OK"}} {ok}',
    ]
    if invalid is not None:
        lines.append(
            f':tensorflow:serving:request_count{{model_name="model",status="INVALID_ARGUMENT"}} {invalid}'
        )
    for name, labels, total in (
        ("request_latency", 'model_name="model",API="predict",entrypoint="REST"', request_sum_us),
        ("runtime_latency", 'model_name="model",API="Predict",runtime="TF1"', runtime_sum_us),
    ):
        lines += [
            f"# TYPE :tensorflow:serving:{name} histogram",
            f':tensorflow:serving:{name}_bucket{{{labels},le="10"}} 0',
            f':tensorflow:serving:{name}_bucket{{{labels},le="+Inf"}} {count}',
            f":tensorflow:serving:{name}_sum{{{labels}}} {total}",
            f":tensorflow:serving:{name}_count{{{labels}}} {count}",
        ]
    return "\n".join(lines) + "\n"


TF_BEFORE = _tf_text(10, None, 25_000.0, 8_000.0)
TF_AFTER = _tf_text(210, 2, 25_000.0 + 303_000.0, 8_000.0 + 80_800.0)


def test_torchserve_text_parses_to_totals_without_the_total_suffix_and_labelled_series():
    metrics = parse_prometheus(TS_AFTER)
    assert metrics["ts_inference_requests"] == 51.0
    assert metrics["ts_inference_latency_microseconds"] == pytest.approx(132943.557)
    assert metrics["ts_queue_latency_microseconds"] == pytest.approx(5195.531)
    assert metrics[f"ts_inference_requests{_TS_SERIES}"] == 51.0
    assert metrics["Requests2XX"] == 77.0
    assert metrics["WorkerLoadTime"] == 3519.0  # gauges too
    assert not any(k.endswith("_total") for k in metrics)


def test_histograms_give_sum_and_count_summed_over_label_sets_and_drop_buckets():
    metrics = parse_prometheus(TF_AFTER)
    assert metrics[":tensorflow:serving:request_count"] == 212.0
    assert metrics[':tensorflow:serving:request_count{model_name="model",status="INVALID_ARGUMENT"}'] == 2.0
    assert metrics[":tensorflow:serving:request_latency_sum"] == 328_000.0
    assert metrics[":tensorflow:serving:request_latency_count"] == 212.0
    assert not any("_bucket" in k for k in metrics)


def test_torchserve_window_gives_per_request_means_from_counter_differences():
    figures, notes = window_summary("torchserve", parse_prometheus(TS_BEFORE), parse_prometheus(TS_AFTER), 50)
    assert notes == []
    assert figures["server_requests"] == 50.0
    request_ms = (132943.55699999997 - 26080.529) / 50 / 1000
    queue_ms = (5195.530999999998 - 138.897) / 50 / 1000
    assert figures["server_request_ms"] == pytest.approx(request_ms)
    assert figures["server_queue_ms"] == pytest.approx(queue_ms)
    assert figures["server_inference_ms"] == pytest.approx(request_ms - queue_ms)


def test_tfserving_window_gives_request_and_runtime_means_and_failed_requests():
    figures, notes = window_summary("tfserving", parse_prometheus(TF_BEFORE), parse_prometheus(TF_AFTER), 202)
    assert notes == []
    assert figures == {
        "server_requests": 202.0,
        "server_request_ms": pytest.approx(1.5),
        "server_inference_ms": pytest.approx(0.4),
        "server_failed_requests": 2.0,
    }


def test_missing_metrics_are_omitted_with_a_note_instead_of_failing():
    without_queue = "\n".join(line for line in TS_AFTER.splitlines() if "ts_queue" not in line) + "\n"
    figures, notes = window_summary(
        "torchserve", parse_prometheus(TS_BEFORE), parse_prometheus(without_queue)
    )
    assert "server_queue_ms" not in figures
    assert "server_inference_ms" not in figures
    assert figures["server_requests"] == 50.0
    assert notes == ["server metric ts_queue_latency_microseconds not published"]
    nothing, notes = window_summary("tfserving", {}, {})
    assert nothing == {}
    assert len(notes) == 5


def test_a_counter_that_went_backwards_is_noted_as_a_possible_restart():
    figures, notes = window_summary("torchserve", parse_prometheus(TS_AFTER), parse_prometheus(TS_BEFORE))
    assert figures == {}
    assert any("went backwards" in n for n in notes)


def test_a_client_server_request_count_mismatch_is_noted():
    before, after = parse_prometheus(TS_BEFORE), parse_prometheus(TS_AFTER)
    _, close = window_summary("torchserve", before, after, 51)
    assert close == []
    _, far = window_summary("torchserve", before, after, 80)
    assert far == [
        "the server counted 50 requests, the client sent 80: "
        "the per-request means may cover different requests"
    ]


def test_an_unknown_format_is_rejected():
    with pytest.raises(ValueError, match="unknown server metrics format"):
        ServerMetricsWindow("http://127.0.0.1:1/metrics", "triton")


@pytest.fixture
def metrics_server() -> Iterator[dict]:
    """A loopback HTTP server answering whatever text the test puts in state["body"]."""
    state = {"body": TS_BEFORE, "status": 200}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = state["body"].encode()
            self.send_response(state["status"])
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}/metrics"
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


def test_window_scrapes_at_start_and_stop_over_http(metrics_server):
    window = ServerMetricsWindow(metrics_server["url"], "torchserve").start()
    metrics_server["body"] = TS_AFTER
    window.stop()
    assert window.summary(50)["server_requests"] == 50.0
    assert window.notes == []


def test_a_failing_scrape_becomes_a_note_and_no_figures(metrics_server):
    window = ServerMetricsWindow(metrics_server["url"], "torchserve").start()
    metrics_server["status"] = 500
    window.stop()
    assert window.summary(50) == {}
    assert window.notes == [f"window end: could not scrape {metrics_server['url']}: HTTP 500"]


def test_an_unreachable_endpoint_is_a_note_not_an_exception():
    url = f"http://127.0.0.1:{free_port()}/metrics"
    window = ServerMetricsWindow(url, "tfserving", timeout_s=2).start()
    window.stop()
    assert window.summary(10) == {}
    assert len(window.notes) == 2
    assert all("could not scrape" in n for n in window.notes)
    with pytest.raises(ServerMetricsError, match="could not scrape"):
        scrape(url, timeout=2)


def test_text_that_is_not_prometheus_raises_a_one_line_scrape_error(metrics_server):
    metrics_server["body"] = "<html>this is not a metrics page</html>"
    with pytest.raises(ServerMetricsError, match="did not answer Prometheus text"):
        scrape(metrics_server["url"])


def test_breakdown_splits_the_client_mean_into_queue_inference_and_outside_the_server():
    server = {"server_request_ms": 2.0, "server_queue_ms": 0.5, "server_inference_ms": 1.5}
    split = latency_breakdown(5.0, server)
    assert split["queue_ms"] == 0.5
    assert split["inference_ms"] == 1.5
    assert split["server_other_ms"] == 0.0
    assert split["outside_server_ms"] == 3.0
    assert split["shares"] == pytest.approx(
        {"queue": 0.1, "inference": 0.3, "server_other": 0.0, "outside_server": 0.6}
    )
    assert split["largest"] == "outside_server"
    assert split["text"] == (
        "of 5.00 ms mean at the client: 0.50 ms queueing in the server, 1.50 ms inference, "
        "3.00 ms outside the server (network stack, HTTP, serialization)"
    )


def test_breakdown_for_tf_serving_puts_request_minus_runtime_under_other_server_time():
    split = latency_breakdown(4.0, {"server_request_ms": 3.0, "server_inference_ms": 2.5})
    assert split["queue_ms"] is None
    assert split["server_other_ms"] == pytest.approx(0.5)
    assert split["largest"] == "inference"
    assert "0.50 ms other server time" in split["text"]


def test_breakdown_without_server_figures_says_the_split_is_unknown():
    split = latency_breakdown(4.0, {})
    assert split == {
        "client_mean_ms": 4.0,
        "text": "no server-side figures: the split of the client latency is unknown",
    }


def test_breakdown_flags_a_server_time_larger_than_the_client_time():
    split = latency_breakdown(
        1.0, {"server_request_ms": 1.5, "server_queue_ms": 0.2, "server_inference_ms": 1.3}
    )
    assert split["outside_server_ms"] == pytest.approx(-0.5)
    assert "cover different requests" in split["text"]
