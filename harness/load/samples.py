"""Per-request samples and the cut of a measurement window out of them.

Both load generators record every request as a `Sample` (start time relative to the start of
the test, exact latency, outcome); a `LoadResult` is whatever started inside the window. The
Locust subprocess writes samples as CSV (format below) because it cannot import the harness.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from harness.load.result import FAILURE_CLASSES, LoadResult

OK = "ok"
# The file the locustfile writes: one header line, then one row per request
SAMPLES_HEADER = ("start_s", "latency_ms", "outcome", "message")
MAX_FAILURE_EXAMPLES = 5


class Sample(NamedTuple):
    """One request: when it started (s since the test started), how long it took, how it ended."""

    start_s: float
    latency_ms: float
    outcome: str  # OK or one of FAILURE_CLASSES
    message: str = ""


def write_samples(path: Path, samples: Iterable[Sample]) -> None:
    """Write samples in the CSV format the locustfile uses (for tests and for the thread pool)."""
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(SAMPLES_HEADER)
        writer.writerows((f"{s.start_s:.6f}", f"{s.latency_ms:.4f}", s.outcome, s.message) for s in samples)


def read_samples(path: Path) -> list[Sample]:
    """Parse a samples CSV; a malformed file is a bug in the generator, so it raises ValueError."""
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or tuple(header) != SAMPLES_HEADER:
            raise ValueError(f"{path}: expected header {','.join(SAMPLES_HEADER)}, got {header}")
        samples = []
        for lineno, row in enumerate(reader, start=2):
            if len(row) != len(SAMPLES_HEADER):
                raise ValueError(f"{path}:{lineno}: expected {len(SAMPLES_HEADER)} fields, got {len(row)}")
            outcome = row[2]
            if outcome != OK and outcome not in FAILURE_CLASSES:
                raise ValueError(f"{path}:{lineno}: unknown outcome {outcome!r}")
            samples.append(Sample(float(row[0]), float(row[1]), outcome, row[3]))
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
    max_examples: int = MAX_FAILURE_EXAMPLES,
) -> LoadResult:
    """The LoadResult of the requests that STARTED in [window_start_s, window_end_s).

    Counting by start time keeps a closed loop unbiased: a slow request that started in the
    window counts even if it ended after it, and one started during warm-up never counts.
    """
    if window_end_s < window_start_s:
        raise ValueError(f"measurement window ends ({window_end_s}) before it starts ({window_start_s})")
    inside = [s for s in samples if window_start_s <= s.start_s < window_end_s]
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
    return LoadResult(
        latencies_ms=[s.latency_ms for s in ok],
        failures=failures,
        measure_s=window_end_s - window_start_s,
        warmup_s=warmup_s,
        generator=generator,
        users=users,
        request_batch_size=request_batch_size,
        failure_examples=examples,
    )
