"""Sample files (written, tailed, read), the measured-window cut, CPU figures and Locust result assembly."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.load.cpu import CpuSampler, cpu_percent
from harness.load.locust_driver import LocustDriver
from harness.load.locust_watch import LocustRunFiles
from harness.load.plan import WindowPlan, single_point
from harness.load.result import LoadResult
from harness.load.samples import SAMPLES_HEADER, Sample, SampleTail, read_samples, summarize, write_samples
from harness.scenario.load_spec import LoadSpec


def cut(samples: list[Sample], start: float = 1.0, end: float = 3.0, **kw: object) -> LoadResult:
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


HEADER = ",".join(SAMPLES_HEADER) + "\n"


def test_open_loop_samples_count_lateness_queueing_and_service_separately() -> None:
    samples = [
        Sample(1.0, 5.0, "ok", late_ms=0.5, service_ms=4.5),  # on time
        Sample(1.1, 40.0, "ok", late_ms=30.0, service_ms=10.0),  # the generator slipped 30 ms
        Sample(1.2, 900.0, "ok", late_ms=0.2, service_ms=99.8),  # waited 800 ms for a free slot
        Sample(1.3, 12.0, "timeout", "slow", late_ms=11.0, service_ms=1.0),
    ]
    result = cut(samples, mode="open", target_rate_rps=50.0, late_threshold_ms=10.0)

    assert result.late_count == 2
    assert result.max_late_ms == 30.0
    assert result.queued_count == 1
    assert result.max_queue_ms == pytest.approx(800.0)
    assert result.late_fraction == 0.5
    assert result.service_latencies_ms == [4.5, 10.0, 99.8]
    assert result.latencies_ms == [5.0, 40.0, 900.0]
    assert result.samples == sorted(samples)
    assert result.target_rate_rps == 50.0
    assert result.offered_rps == 2.0  # 4 requests due in 2 s


def test_closed_loop_results_have_no_service_latencies_and_nothing_late() -> None:
    result = cut([Sample(1.5, 3.0, "ok"), Sample(1.6, 2.0, "ok")], late_threshold_ms=10.0)

    assert result.service_latencies_ms == []
    assert result.late_count == result.queued_count == 0


def test_samples_split_into_their_windows_by_due_time() -> None:
    samples = [Sample(1.0 + t / 10, 1.0, "ok") for t in range(20)]  # 1.0 .. 2.9
    result = cut(samples, window_s=0.5)

    assert result.windows_measured == 4
    assert [len(w) for w in result.windows()] == [5, 5, 5, 5]
    assert result.windows()[1][0].start_s == pytest.approx(1.5)


def test_samples_round_trip_through_csv_with_awkward_messages(tmp_path: Path) -> None:
    samples = [
        Sample(0.5, 1.2345, "ok"),
        Sample(1.25, 7.5, "bad_payload", 'text, with "quotes"'),
        Sample(2.0, 30.25, "ok", "", 12.5, 17.75),
        Sample(2.5, 3.0, "ok", target=1),  # an interleaved run's second endpoint
    ]
    write_samples(tmp_path / "s.csv", samples)
    assert read_samples(tmp_path / "s.csv") == samples


def test_messages_are_written_on_one_line(tmp_path: Path) -> None:
    write_samples(tmp_path / "s.csv", [Sample(1.0, 2.0, "connection", "reset\nby peer\r\nagain")])

    assert read_samples(tmp_path / "s.csv")[0].message == "reset by peer again"
    assert len((tmp_path / "s.csv").read_text().splitlines()) == 2


def test_a_tail_returns_only_complete_new_lines_of_a_growing_file(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    tail = SampleTail(path)
    assert tail.read_new() == []  # not created yet

    path.write_text(HEADER + "1.000000,2.0000,ok,0.0000,,0,\n1.5")
    assert tail.read_new() == [Sample(1.0, 2.0, "ok")]
    assert tail.has_partial_line
    with open(path, "a") as fh:
        fh.write("00000,3.0000,ok,1.0000,2.0000,1,\n")
    assert tail.read_new() == [Sample(1.5, 3.0, "ok", "", 1.0, 2.0, 1)]
    assert tail.read_new() == []


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "empty file"),
        ("start_s,latency_ms,outcome,message\n1.0,2.0,ok,\n", "expected header"),  # the old format
        (HEADER + "1.0,2.0,weird,0,,0,\n", "unknown outcome"),
        (HEADER + "1.0,2.0,ok\n", "expected 7 fields"),
        (HEADER + "1.0,abc,ok,0,,0,\n", "could not convert"),
        (HEADER + "1.0,2.0,ok,0,,1.5,\n", "invalid literal"),  # a target is an index
        (HEADER + "1.0,2.0,ok,0,,0,", "incomplete"),
    ],
)
def test_malformed_sample_files_are_rejected(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "s.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=error):
        read_samples(path)


def test_cpu_percent_uses_points_inside_the_window() -> None:
    # 50% of a core during warm-up (t < 10), then 100% of a core
    points = [(8.0, 0.0), (10.0, 1.0), (11.0, 2.0), (12.0, 3.0), (13.0, 4.0)]
    assert cpu_percent(points, 10.0, 12.0) == pytest.approx(100.0)
    assert cpu_percent(points, 100.0, 200.0) == pytest.approx(80.0)  # no points inside: whole run
    assert cpu_percent(points[:1], 0.0, 20.0) is None


class FixedCpu(CpuSampler):
    def __init__(self, percent: float) -> None:
        super().__init__(None)
        self._percent = percent

    def percent(self, start_epoch: float, end_epoch: float) -> float | None:
        return self._percent


def locust_result(
    tmp_path: Path, samples: list[Sample], meta: dict, cpu: float, load: LoadSpec, windows: int | None = None
) -> LoadResult:
    files = LocustRunFiles(tmp_path)
    write_samples(files.samples, samples)
    meta = {"test_start_epoch_s": 1000.0, "spawning_complete_s": 0.01, "requests": len(samples), **meta}
    plan = WindowPlan.for_load(load, has_stop_rule=False)
    point = single_point(load, None)
    windows = plan.min_windows if windows is None else windows
    return LocustDriver()._result(load, point, plan, windows, "measure_s", meta, files, [FixedCpu(cpu)], 0)


def test_locust_window_ends_early_when_locust_stopped_early(tmp_path: Path) -> None:
    load = LoadSpec(warmup_s=1.0, measure_s=3.0)
    samples = [Sample(t / 10, 2.0, "ok") for t in range(40)]
    result = locust_result(tmp_path, samples, {"stop_s": 3.5}, 20.0, load)

    assert result.measure_s == pytest.approx(2.5)
    assert result.ok_count == 25
    assert result.throughput_rps == pytest.approx(10.0)
    assert result.warnings == ["locust stopped 3.5s into the run, before the measurement's planned end (4s): "
                               "the measure window is shorter"]  # fmt: skip


def test_locust_result_measures_every_window_it_ran(tmp_path: Path) -> None:
    load = LoadSpec(warmup_s=1.0, measure_s=1.5, window_s=0.5, validity={"max_windows": 6})
    samples = [Sample(t / 10, 2.0, "ok") for t in range(60)]
    result = locust_result(tmp_path, samples, {"stop_s": 5.0}, 20.0, load, windows=5)

    assert result.windows_measured == 5
    assert result.measure_s == pytest.approx(2.5)
    assert result.ok_count == 25
    assert result.generator_cpu_percent == [20.0]


def test_locust_result_warns_when_the_generator_saturates(tmp_path: Path) -> None:
    load = LoadSpec(warmup_s=1.0, measure_s=1.0)
    result = locust_result(tmp_path, [Sample(1.5, 2.0, "ok")], {"stop_s": 3.0}, 97.0, load)

    assert result.client_cpu_percent == 97.0
    assert any("load generator saturated (Locust used 97%" in w for w in result.warnings)


def test_locust_result_warns_when_users_spawn_after_the_warmup(tmp_path: Path) -> None:
    load = LoadSpec(users=20, spawn_rate=2, warmup_s=1.0, measure_s=1.0)
    result = locust_result(
        tmp_path, [Sample(1.5, 2.0, "ok")], {"stop_s": 3.0, "spawning_complete_s": 9.5}, 10, load
    )

    assert any("not all 20 users had started" in w for w in result.warnings)


def test_locust_result_warns_when_the_open_loop_sent_late(tmp_path: Path) -> None:
    load = LoadSpec(mode="open", rate_rps=10.0, warmup_s=1.0, measure_s=1.0)
    samples = [Sample(1.0 + t / 10, 30.0, "ok", "", 25.0 if t < 3 else 0.0, 5.0) for t in range(10)]
    result = locust_result(tmp_path, samples, {"stop_s": 3.0}, 10, load)

    assert result.late_count == 3
    assert any("sent 3 of 10 requests more than 10 ms late" in w for w in result.warnings)


def test_locust_result_takes_worker_cpu_from_their_own_reports(tmp_path: Path) -> None:
    load = LoadSpec(warmup_s=1.0, measure_s=1.0, workers=2, users=2)
    workers = {
        "0": {"requests": 1, "done": True, "cpu": [[0.5, 0.0], [1.0, 0.2], [2.0, 0.6]]},
        "1": {"requests": 0, "done": False, "cpu": [[1.0, 0.0], [2.0, 0.95]]},
    }
    files = LocustRunFiles(tmp_path)
    write_samples(files.dir / "locust_samples_w0.csv", [Sample(1.5, 2.0, "ok")])
    meta = {"test_start_epoch_s": 1000.0, "spawning_complete_s": 0.01, "stop_s": 3.0, "workers": workers}
    plan = WindowPlan.for_load(load, has_stop_rule=False)
    result = LocustDriver()._result(load, single_point(load, None), plan, 3, "measure_s", meta, files,
                                    [FixedCpu(1.0)], 2)  # fmt: skip

    assert result.generator_cpu_percent == pytest.approx([1.0, 40.0, 95.0])
    assert result.client_cpu_percent == pytest.approx(95.0)
    assert result.workers == 2
    assert any("Locust worker 1 used 95%" in w for w in result.warnings)
    assert any("worker 1 did not report its last requests" in w for w in result.warnings)
