"""Per-request samples on disk, and the cut of the measured windows out of them.

Both load generators record every request as a `Sample`; a `LoadResult` is whatever was due
inside the measured windows. The Locust processes cannot import the harness, so they write
samples as CSV in the format below (kept in step with harness/load/locustfiles/predict.py), and
append to it while they run so that the driver can judge each window as it ends.

Format: one header line `SAMPLES_HEADER`, then one line per request. A record never spans lines
(messages are flattened to one line), so a reader can take every complete line of a file that
is still being appended to.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from pathlib import Path

from harness.load.result import FAILURE_CLASSES, OK, LoadResult, Sample

__all__ = ["OK", "SAMPLES_HEADER", "Sample", "SampleTail", "read_samples", "summarize", "write_samples"]

# v2 (open loop) added late_ms and service_ms, v3 the target (an interleaved run's endpoint);
# an older file fails the header check
SAMPLES_HEADER = ("start_s", "latency_ms", "outcome", "late_ms", "service_ms", "target", "message")
MAX_FAILURE_EXAMPLES = 5


def sample_row(s: Sample) -> tuple[str, ...]:
    """The CSV fields of one sample."""
    service = "" if s.service_ms is None else f"{s.service_ms:.4f}"
    message = " ".join(s.message.splitlines())
    late = f"{s.late_ms:.4f}"
    return (f"{s.start_s:.6f}", f"{s.latency_ms:.4f}", s.outcome, late, service, str(s.target), message)


def write_samples(path: Path, samples: Iterable[Sample]) -> None:
    """Write samples in the CSV format the locustfile uses (for tests and for the thread pool)."""
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(SAMPLES_HEADER)
        writer.writerows(sample_row(s) for s in samples)


class SampleTail:
    """The samples appended to a CSV file since the previous call; the file may still be growing.

    A malformed file is a bug in the generator, so parsing errors raise ValueError.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._offset = 0
        self._partial = b""
        self.lines_read = 0  # complete lines parsed so far, header included

    @property
    def has_partial_line(self) -> bool:
        return bool(self._partial)

    def read_new(self) -> list[Sample]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        complete, newline, rest = (self._partial + data).rpartition(b"\n")
        if not newline:
            self._partial = rest
            return []
        self._partial = rest
        samples = []
        for row in csv.reader(complete.decode("utf-8").split("\n")):
            self.lines_read += 1
            if self.lines_read == 1:
                if tuple(row) != SAMPLES_HEADER:
                    raise ValueError(f"{self.path}: expected header {','.join(SAMPLES_HEADER)}, got {row}")
                continue
            samples.append(self._parse(row))
        return samples

    def _parse(self, row: list[str]) -> Sample:
        where = f"{self.path}:{self.lines_read}"
        if len(row) != len(SAMPLES_HEADER):
            raise ValueError(f"{where}: expected {len(SAMPLES_HEADER)} fields, got {len(row)}")
        start, latency, outcome, late, service, target, message = row
        if outcome != OK and outcome not in FAILURE_CLASSES:
            raise ValueError(f"{where}: unknown outcome {outcome!r}")
        try:
            return Sample(
                float(start),
                float(latency),
                outcome,
                message,
                float(late),
                float(service) if service else None,
                int(target),
            )
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None


def read_samples(path: Path) -> list[Sample]:
    """Parse a complete samples CSV (header required, last line complete)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(path)
    tail = SampleTail(path)
    samples = tail.read_new()
    if tail.lines_read == 0 and not tail.has_partial_line:
        raise ValueError(f"{path}: expected header {','.join(SAMPLES_HEADER)}, got an empty file")
    if tail.has_partial_line:
        # a header without its newline is still a header problem
        if tail.lines_read == 0:
            raise ValueError(f"{path}: expected header {','.join(SAMPLES_HEADER)} ending in a newline")
        raise ValueError(f"{path}: the last line is incomplete (no newline)")
    return samples


def summarize(
    samples: Iterable[Sample],
    *,
    window_start_s: float,
    window_end_s: float,
    generator: str,
    users: int,
    request_batch_size: int,
    warmup_s: float,
    mode: str = "closed",
    target_rate_rps: float | None = None,
    late_threshold_ms: float = math.inf,
    window_s: float | None = None,
    max_examples: int = MAX_FAILURE_EXAMPLES,
) -> LoadResult:
    """The LoadResult of the requests DUE in [window_start_s, window_end_s).

    Counting by due time keeps both loops unbiased: a slow request that was due in the window
    counts even if it ended after it, and one due during warm-up never counts. In an open loop
    the due time is the schedule's, so a request the generator sent late still belongs to the
    window it was scheduled in.
    """
    if window_end_s < window_start_s:
        raise ValueError(f"measurement window ends ({window_end_s}) before it starts ({window_start_s})")
    inside = sorted(
        (s for s in samples if window_start_s <= s.start_s < window_end_s), key=lambda s: s.start_s
    )
    ok = sorted((s for s in inside if s.outcome == OK), key=lambda s: s.start_s + s.latency_ms / 1000.0)
    failures = dict.fromkeys(FAILURE_CLASSES, 0)
    examples: list[str] = []
    for s in inside:
        if s.outcome == OK:
            continue
        failures[s.outcome] += 1
        example = f"{s.outcome}: {s.message}" if s.message else s.outcome
        if len(examples) < max_examples and example not in examples:
            examples.append(example)
    measure_s = window_end_s - window_start_s
    window = window_s if window_s else measure_s
    return LoadResult(
        latencies_ms=[s.latency_ms for s in ok],
        failures=failures,
        measure_s=measure_s,
        warmup_s=warmup_s,
        generator=generator,
        users=users,
        request_batch_size=request_batch_size,
        failure_examples=examples,
        samples=inside,
        measure_start_s=window_start_s,
        window_s=window,
        mode=mode,
        target_rate_rps=target_rate_rps,
        late_threshold_ms=late_threshold_ms,
        late_count=sum(s.late_ms > late_threshold_ms for s in inside),
        max_late_ms=max((s.late_ms for s in inside), default=0.0),
        queued_count=sum(s.queue_ms > late_threshold_ms for s in inside),
        max_queue_ms=max((s.queue_ms for s in inside), default=0.0),
        service_latencies_ms=[s.service_ms for s in ok if s.service_ms is not None] if mode == "open" else [],
        windows_measured=max(1, math.ceil(measure_s / window - 1e-9)) if window > 0 else 0,
    )
