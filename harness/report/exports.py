"""A run's numbers in formats other tools already read, written next to its report.

- `benchmark.json`: pytest-benchmark's JSON (machine_info, commit_info, benchmarks[].stats),
  which `pytest-benchmark compare`, github-action-benchmark's `tool: pytest` and Bencher's
  pytest adapter read. One benchmark per variant; its stats are over the per-request latencies
  of the gated load point, in seconds as pytest-benchmark's are, so a "round" is one request.
  The document is built by pytest-benchmark itself (its Stats, Metadata, machine_info and
  commit_info helpers) rather than by re-typing its schema.
- `benchmark-action.json`: github-action-benchmark's `customSmallerIsBetter` list: p95 latency
  (ms) and error rate (%) per variant.

The latencies are those the run record keeps (the HdrHistogram of each load point, within 0.05%
of what was measured). machine_info and commit_info describe the machine and checkout writing the
file, as pytest-benchmark's do when it saves; the run's own environment is under
machine_info["harness"], and `datetime` is the run's start, so re-rendering keeps it.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_benchmark.stats import Metadata
from pytest_benchmark.utils import get_commit_info

from harness.atomic import atomic_write_text
from harness.baselines.fingerprint import fingerprint_id
from harness.metrics.catalog import headline_quality
from harness.results import RunResult, VariantResult, strict_json

BENCHMARK_FILE = "benchmark.json"
ACTION_BENCHMARK_FILE = "benchmark-action.json"
# the figures every benchmark carries in extra_info, when the variant has them
EXTRA_METRICS = ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "throughput_rps", "error_rate")


@dataclass
class _Fixture:
    """What pytest_benchmark.stats.Metadata reads from its BenchmarkFixture, for one variant."""

    name: str
    fullname: str
    group: str | None
    param: str | None
    params: dict[str, Any] | None
    extra_info: dict[str, Any] = field(default_factory=dict)
    cprofile_stats: None = None
    has_error: bool = False


def export_texts(result: RunResult) -> dict[str, str]:
    """File name -> content of every export, rendered before anything is written."""
    return {
        BENCHMARK_FILE: _dumps(pytest_benchmark_json(result)),
        ACTION_BENCHMARK_FILE: _dumps(action_benchmark_json(result)),
    }


def write_exports(result: RunResult, run_dir: Path) -> list[Path]:
    """Write benchmark.json and benchmark-action.json into `run_dir`, atomically; return their paths."""
    run_dir = Path(run_dir)
    texts = export_texts(result)
    run_dir.mkdir(parents=True, exist_ok=True)
    return [atomic_write_text(run_dir / name, text) for name, text in texts.items()]


# ---- pytest-benchmark ---------------------------------------------------------------------------


def pytest_benchmark_json(result: RunResult) -> dict[str, Any]:
    """The run as a pytest-benchmark document: one benchmark per variant that served requests."""
    # pytest_benchmark.plugin imports pytest (~0.2 s): only when an export is written
    from pytest_benchmark.plugin import pytest_benchmark_generate_json

    quality = headline_quality(v.metrics for v in result.variants)
    benchmarks = [b for b in (_benchmark(result, v, quality) for v in result.variants) if b is not None]
    machine_info = dict(_machine_info())
    machine_info["harness"] = {"fingerprint_id": fingerprint_id(result.environment), **result.environment}
    document: dict[str, Any] = pytest_benchmark_generate_json(
        config=None,
        benchmarks=benchmarks,
        include_data=False,  # every request's latency would make the file grow with the run
        machine_info=machine_info,
        commit_info=get_commit_info(),
    )
    document["datetime"] = result.started_at or document["datetime"]
    return document


@functools.lru_cache(maxsize=1)
def _machine_info() -> dict[str, Any]:
    """pytest-benchmark's machine_info of this machine; cached, as its CPU probe runs a subprocess."""
    from pytest_benchmark.plugin import pytest_benchmark_generate_machine_info

    info: dict[str, Any] = pytest_benchmark_generate_machine_info()
    return info


def _benchmark(result: RunResult, variant: VariantResult, quality: str) -> Metadata | None:
    reported = variant.reported
    point = reported.gated if reported is not None else None
    if reported is None or point is None or not point.latency_histogram:
        return None
    fixture = _Fixture(
        name=variant.name,
        fullname=f"{result.scenario_name}::{variant.name}",
        group=result.scenario_name,
        param=variant.name,
        params={"variant": variant.name, "load_point": point.label},
        extra_info=_extra_info(variant, quality, point.validity.valid),
    )
    options = {
        "tool": "harness",
        "unit": "seconds per request",
        "load_point": point.label,
        "users": point.users,
        "rate_rps": point.rate_rps,
        "measurement": reported.number,
    }
    metadata = Metadata(fixture, iterations=1, options=options)
    metadata.stats.data = (point.latencies_ms() / 1000.0).tolist()
    return metadata


def _extra_info(variant: VariantResult, quality: str, valid: bool) -> dict[str, Any]:
    metrics = variant.metrics
    info: dict[str, Any] = {m: metrics[m] for m in (*EXTRA_METRICS, quality) if _finite(metrics.get(m))}
    info["valid"] = valid
    info["outcome"] = variant.outcome.value if variant.outcome is not None else None
    return info


# ---- github-action-benchmark --------------------------------------------------------------------


def action_benchmark_json(result: RunResult) -> list[dict[str, Any]]:
    """github-action-benchmark's customSmallerIsBetter entries: {name, unit, value, extra}, p95
    latency in ms and error rate in % per variant (a variant without the figure has no entry)."""
    entries = []
    for variant in result.variants:
        metrics = variant.metrics
        reported = variant.reported
        point = reported.gated if reported is not None else None
        extra = _action_extra(variant, point.label if point else "", point.validity.valid if point else None)
        for metric, label, unit, scale in (
            ("latency_p95_ms", "latency p95", "ms", 1.0),
            ("error_rate", "error rate", "%", 100.0),
        ):
            value = metrics.get(metric)
            if _finite(value):
                assert value is not None
                name = f"{result.scenario_name} / {variant.name} / {label}"
                entries.append({"name": name, "unit": unit, "value": value * scale, "extra": extra})
    return entries


def _action_extra(variant: VariantResult, load_point: str, valid: bool | None) -> str:
    parts = [f"load point {load_point}"] if load_point else []
    if valid is not None:
        parts.append("valid" if valid else "INVALID (too noisy)")
    if variant.outcome is not None:
        parts.append(f"outcome {variant.outcome.value}")
    return "; ".join(parts)


def _finite(value: float | None) -> bool:
    return value is not None and isinstance(value, int | float) and math.isfinite(value)


def _dumps(data: Any) -> str:
    return json.dumps(strict_json(data), indent=2, allow_nan=False, ensure_ascii=False, default=str) + "\n"
