"""Sample files and the measurement-window cut shared by both load generators."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.load.locust_driver import LocustDriver, _CpuSampler
from harness.load.samples import Sample, read_samples, summarize, write_samples
from harness.scenario.schema import LoadSpec


def cut(samples: list[Sample], start: float = 1.0, end: float = 3.0, **kw: int) -> object:
    return summarize(
        samples,
        window_start_s=start,
        window_end_s=end,
        generator="locust",
        users=1,
        request_batch_size=1,
        warmup_s=start,
        **kw,
    )


def test_only_requests_started_inside_the_window_count() -> None:
    samples = [
        Sample(0.999, 50.0, "ok"),  # warm-up, ends inside the window: excluded
        Sample(1.0, 1.5, "ok"),  # first instant of the window: counted
        Sample(2.9, 400.0, "ok"),  # starts inside, ends after: counted
        Sample(3.0, 1.0, "ok"),  # window end is exclusive
        Sample(2.0, 3.0, "http_status", "HTTP 500: boom"),
    ]
    result = cut(samples)

    assert result.latencies_ms == [1.5, 400.0]
    assert result.failures["http_status"] == 1
    assert result.request_count == 3
    assert result.measure_s == 2.0
    assert result.throughput_rps == 1.0


def test_latencies_are_in_completion_order() -> None:
    samples = [Sample(1.0, 500.0, "ok"), Sample(1.1, 1.0, "ok"), Sample(1.2, 1.0, "ok")]
    assert cut(samples).latencies_ms == [1.0, 1.0, 500.0]


def test_failure_examples_are_distinct_and_limited() -> None:
    samples = [Sample(1.0 + i / 100, 1.0, "connection", f"refused {i % 7}") for i in range(50)]
    result = cut(samples, max_examples=3)

    assert result.failures["connection"] == 50
    assert result.failure_examples == [
        "connection: refused 0",
        "connection: refused 1",
        "connection: refused 2",
    ]


def test_every_failure_class_is_reported_even_when_zero() -> None:
    assert cut([Sample(1.5, 1.0, "ok")]).failures == {
        "connection": 0,
        "timeout": 0,
        "http_status": 0,
        "bad_payload": 0,
        "exception": 0,
    }


def test_window_that_ends_before_it_starts_is_rejected() -> None:
    with pytest.raises(ValueError, match="before it starts"):
        cut([], start=2.0, end=1.0)


def test_samples_round_trip_through_csv_with_awkward_messages(tmp_path: Path) -> None:
    samples = [
        Sample(0.5, 1.2345, "ok"),
        Sample(1.25, 7.5, "bad_payload", 'text, with "quotes"\nand a newline'),
    ]
    write_samples(tmp_path / "s.csv", samples)
    assert read_samples(tmp_path / "s.csv") == samples


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("start,latency,outcome,message\n", "expected header"),
        ("start_s,latency_ms,outcome,message\n1.0,2.0,weird,\n", "unknown outcome"),
        ("start_s,latency_ms,outcome,message\n1.0,2.0\n", "expected 4 fields"),
    ],
)
def test_malformed_sample_files_are_rejected(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "s.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=error):
        read_samples(path)


def test_cpu_percent_uses_samples_inside_the_window() -> None:
    sampler = _CpuSampler(None)
    # 50% of a core during warm-up (t < 10), then 100% of a core
    sampler._samples = [(8.0, 0.0), (10.0, 1.0), (11.0, 2.0), (12.0, 3.0), (13.0, 4.0)]
    assert sampler.percent(10.0, 12.0) == pytest.approx(100.0)
    assert sampler.percent(100.0, 200.0) == pytest.approx(80.0)  # no samples inside: whole run


class FixedCpu(_CpuSampler):
    def __init__(self, percent: float) -> None:
        super().__init__(None)
        self._percent = percent

    def percent(self, start_epoch: float, end_epoch: float) -> float | None:
        return self._percent


def locust_result(tmp_path: Path, samples: list[Sample], meta: dict, cpu: float, load: LoadSpec) -> object:
    write_samples(tmp_path / "samples.csv", samples)
    meta = {"test_start_epoch_s": 1000.0, "spawning_complete_s": 0.01, "requests": len(samples), **meta}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    return LocustDriver()._result(load, meta, tmp_path / "samples.csv", FixedCpu(cpu))


def test_locust_window_ends_early_when_locust_stopped_early(tmp_path: Path) -> None:
    load = LoadSpec(warmup_s=1.0, measure_s=3.0)
    samples = [Sample(t / 10, 2.0, "ok") for t in range(40)]
    result = locust_result(tmp_path, samples, {"stop_s": 3.5}, 20.0, load)

    assert result.measure_s == pytest.approx(2.5)
    assert result.ok_count == 25
    assert result.warnings == []


def test_locust_result_warns_when_the_generator_saturates(tmp_path: Path) -> None:
    load = LoadSpec(warmup_s=1.0, measure_s=1.0)
    result = locust_result(tmp_path, [Sample(1.5, 2.0, "ok")], {"stop_s": 3.0}, 97.0, load)

    assert result.client_cpu_percent == 97.0
    assert any("load generator saturated" in w for w in result.warnings)


def test_locust_result_warns_when_users_spawn_after_the_warmup(tmp_path: Path) -> None:
    load = LoadSpec(users=20, spawn_rate=2, warmup_s=1.0, measure_s=1.0)
    result = locust_result(
        tmp_path, [Sample(1.5, 2.0, "ok")], {"stop_s": 3.0, "spawning_complete_s": 9.5}, 10, load
    )

    assert any("not all 20 users had started" in w for w in result.warnings)
