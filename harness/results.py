"""The results of one run, as written to `reports/<run-id>/results.json` and read by the report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

RESULTS_FORMAT_VERSION = 1


@dataclass
class VariantResult:
    """Everything measured for one variant.

    `metrics` uses the names of `harness.metrics.catalog` (units in the name): latency_p50_ms,
    latency_p90_ms, latency_p95_ms, latency_p99_ms, latency_max_ms, throughput_rps, error_rate,
    accuracy (through the serving path), accuracy_inprocess, model_size_bytes,
    model_size_gzip_bytes, sparsity, param_count, client_cpu_percent.
    """

    name: str
    steps: list[dict[str, Any]]  # [{"recipe": ..., "params": {...}}] as declared
    metrics: dict[str, float]
    compression: list[dict[str, Any]] = field(default_factory=list)  # one report per applied step
    failures: dict[str, int] = field(default_factory=dict)
    failure_examples: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)  # measured window, for charts
    # {"latency_p95_ms": [p95 of window 1, ...]}: one value per measured window, for the window test
    window_latencies: dict[str, list[float]] = field(default_factory=dict)
    predictions: list[int] = field(default_factory=list)  # served per-example labels on the test set
    artifact: str = ""  # path of the served file, relative to the run folder
    warnings: list[str] = field(default_factory=list)
    serving: dict[str, Any] = field(default_factory=dict)  # the target's describe() after teardown
    details: dict[str, Any] = field(default_factory=dict)  # base model, per-stage seconds, archive


@dataclass
class Verdict:
    """One gate applied to one metric of one variant."""

    variant: str
    metric: str
    threshold: str  # as written in the scenario
    current: float | None
    baseline: float | None
    limit: float | None  # the value current was compared against
    passed: bool
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)  # statistical test: name, p-value, CI, n's


@dataclass
class RunResult:
    """A whole run: configuration, environment, per-variant results and gate verdicts."""

    run_id: str
    scenario_name: str
    scenario: dict[str, Any]
    started_at: str
    finished_at: str
    environment: dict[str, Any]
    target: dict[str, Any]
    variants: list[VariantResult]
    verdicts: list[Verdict] = field(default_factory=list)
    baseline_status: str = "none"  # "compared" | "recorded" | "updated" | "none"
    baseline_message: str = ""
    stage_seconds: dict[str, float] = field(default_factory=dict)
    run_dir: str = ""  # the run folder
    error: str = ""  # set when the run stopped before every variant was measured

    format_version: int = RESULTS_FORMAT_VERSION

    @property
    def passed(self) -> bool:
        return not self.error and all(v.passed for v in self.verdicts)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["passed"] = self.passed
        return data
