"""The typed record of one run: what `reports/<run-id>/results.json` holds and every consumer reads.

A run holds variants; a variant holds its measurements (the first, then any re-measures); a
measurement holds its load points (windows, validity, server figures) and the verdicts its gates
gave; the run's final verdicts carry typed evidence. The record writes itself (`to_json`) with a
`format_version` and reads itself back (`RunResult.load`), migrating older files, so the report
can be re-rendered from disk (`harness report RUN_DIR`) and no consumer guesses at keys.

Per-request latencies are not kept here: each load point stores the HdrHistogram of its
successful requests (harness.baselines.histogram, as baselines do) and the per-window percentiles.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import numpy as np

from harness.atomic import atomic_write_json
from harness.baselines import histogram
from harness.errors import UserError
from harness.evidence import (
    EVIDENCE_KINDS,
    AccuracyEvidence,
    BootstrapEvidence,
    Evidence,
    LatencyEvidence,
    ThresholdEvidence,
)
from harness.history.record import Trend
from harness.results_migrations import MIGRATIONS

RESULTS_FORMAT_VERSION = 2
RESULTS_FILE = "results.json"

# the evidence kinds are part of the record: readers import them from here
__all__ = [
    "AccuracyEvidence",
    "BootstrapEvidence",
    "Evidence",
    "LatencyEvidence",
    "ThresholdEvidence",
]


class Outcome(StrEnum):
    """What a run, a variant or a verdict concluded; `exit_code` is the CLI contract."""

    PASS = "pass"
    REGRESSION = "regression"  # a gate failed and the failure held
    ERROR = "error"  # bad input or a broken run: nothing can be concluded
    INCONCLUSIVE = "inconclusive"  # still INVALID after re-measuring: too noisy to decide
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM: a run's outcome only, never a variant's

    @property
    def exit_code(self) -> int:
        return _EXIT_CODES[self]


_EXIT_CODES = {
    Outcome.PASS: 0,
    Outcome.REGRESSION: 1,
    Outcome.ERROR: 2,
    Outcome.INCONCLUSIVE: 3,
    Outcome.INTERRUPTED: 130,  # the shell's code for death by SIGINT, which CI systems expect
}
# when variants disagree, the run reports the most serious: a broken run says nothing reliable,
# a confirmed regression is known even if another variant could not be decided
_SEVERITY = [Outcome.INTERRUPTED, Outcome.ERROR, Outcome.REGRESSION, Outcome.INCONCLUSIVE, Outcome.PASS]


def worst(outcomes: list[Outcome]) -> Outcome:
    """The most serious of `outcomes` (PASS for none)."""
    return min(outcomes, key=_SEVERITY.index, default=Outcome.PASS)


# ---- evidence: why a verdict came out as it did ---------------------------------------------------


VerdictStatus = Literal["pass", "fail", "inconclusive"]


@dataclass
class Verdict:
    """One gate applied to one metric of one variant, in one measurement or as the final decision."""

    variant: str
    metric: str
    threshold: str  # as written in the scenario
    current: float | None
    baseline: float | None
    limit: float | None  # the value current was compared against
    status: VerdictStatus
    message: str
    evidence: Evidence = field(default_factory=ThresholdEvidence)
    measurement: int = 1  # which measurement of the variant it judged (1 = the first)

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    @property
    def failed(self) -> bool:
        return self.status == "fail"


# ---- measurements -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """One complete measurement window (harness.load.validity.WindowStats)."""

    index: int
    start_s: float
    end_s: float
    requests: int
    ok: int
    failures: int
    throughput_rps: float
    percentile: float
    latency_ms: float | None  # the gated percentile in this window; None when nothing succeeded


@dataclass
class Validity:
    """Whether a load point counts as a result, why not, and the figures behind the decision."""

    valid: bool
    reasons: list[str] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)  # spreads, limits, counts: shown, never gated


@dataclass
class LoadPointResult:
    """One load point (users or rate) of one measurement: metrics, windows, validity, server side."""

    label: str
    users: int
    rate_rps: float | None
    metrics: dict[str, float]
    validity: Validity
    latency_histogram: str = ""  # successful requests, HdrHistogram base64 (ns, 3 digits)
    window_latencies: dict[str, list[float]] = field(default_factory=dict)  # percentile -> per window
    failures: dict[str, int] = field(default_factory=dict)  # failure class -> count
    failure_examples: list[str] = field(default_factory=list)
    stopped_reason: str = ""
    server: dict[str, float] = field(default_factory=dict)  # the server's own metrics endpoint
    host: dict[str, Any] = field(default_factory=dict)  # the server process tree: CPU, RSS, restarts
    notes: list[str] = field(default_factory=list)
    samples_file: str = ""  # opt-in raw per-request latencies, relative to the run folder
    # CPUs the server tree and the load processes could use (affinity read back) and the load's
    # CPUs while measuring (harness.placement); empty in files written before placement
    placement: dict[str, Any] = field(default_factory=dict)

    def latencies_ms(self) -> np.ndarray:
        """The successful requests' latencies as read back from the histogram (within 0.05%)."""
        if not self.latency_histogram:
            return np.empty(0)
        return histogram.expand(*histogram.decode(self.latency_histogram))


@dataclass
class SearchProbe:
    """One probe of the max_rps_at_slo search: one short measured run at one setting."""

    over: str  # "rate" or "users"
    value: float  # the rate or user count probed
    label: str
    throughput_rps: float
    percentile: float
    percentile_ms: float | None  # None when no request succeeded
    error_rate: float
    request_count: int
    passed: bool


@dataclass
class SearchResult:
    """The highest throughput whose percentile stayed under the SLO, and every probe."""

    slo_ms: float
    percentile: float
    over: str
    max_rps_at_slo: float | None
    probes: list[SearchProbe] = field(default_factory=list)


@dataclass
class Measurement:
    """One time a variant was served and loaded: accuracy through the target, then every load point.

    The last load point of a sweep is the gated one. `verdicts` are this measurement's own, as
    judged on it alone; the variant's final verdicts are decided from all its measurements.
    """

    number: int  # 1 for the first, 2, 3, ... for re-measures
    accuracy: float | None  # through the serving path, on the whole evaluation set
    predictions: list[int]  # served per-example labels
    points: list[LoadPointResult]
    metrics: dict[str, float]  # model metrics + served accuracy + the gated point's load metrics
    # served per-example quality vectors, keyed as harness.metrics.quality.PER_EXAMPLE ("agree",
    # "kl", ...): what the paired quality gates compare with a baseline's; files before it lack it
    per_example: dict[str, list[float]] = field(default_factory=dict)
    serving: dict[str, Any] = field(default_factory=dict)  # the target's describe() after teardown
    search: SearchResult | None = None
    warnings: list[str] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    outputs_file: str = ""  # the served outputs on the test split (.npy), relative to the run folder

    @property
    def gated(self) -> LoadPointResult | None:
        return self.points[-1] if self.points else None

    @property
    def valid(self) -> bool:
        """A measurement counts when its gated point is VALID (no load point: nothing to judge)."""
        return self.gated is None or self.gated.validity.valid

    @property
    def served_anything(self) -> bool:
        gated = self.gated
        return gated is not None and bool(gated.latency_histogram)


@dataclass
class VariantResult:
    """One variant: how it was built, each measurement, and the decision from all of them."""

    name: str
    steps: list[dict[str, Any]]  # [{"recipe": ..., "params": {...}}] as declared
    model_metrics: dict[str, float] = field(default_factory=dict)  # size, sparsity, in-process accuracy
    compression: list[dict[str, Any]] = field(default_factory=list)  # each recipe's own report
    details: dict[str, Any] = field(default_factory=dict)  # base model, prepare timings, recipe facts
    artifact: str = ""  # the served file, relative to the run folder
    warnings: list[str] = field(default_factory=list)  # from compression and export
    measurements: list[Measurement] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)  # final: harness.gates.decide
    outcome: Outcome | None = None  # None: not decided (the run stopped before judging it)
    error: str = ""  # set when this variant broke the run

    @property
    def reported(self) -> Measurement | None:
        """The measurement the variant's numbers come from: the latest VALID one, else the latest."""
        valid = [m for m in self.measurements if m.valid]
        if valid:
            return valid[-1]
        return self.measurements[-1] if self.measurements else None

    @property
    def metrics(self) -> dict[str, float]:
        reported = self.reported
        return dict(reported.metrics) if reported is not None else dict(self.model_metrics)


@dataclass
class RunFailure:
    """Why a run stopped before it finished: the stage, the variant and where to look."""

    stage: str
    message: str
    variant: str = ""
    log: str = ""  # a log file to read, relative to the run folder when inside it
    log_tail: str = ""  # the last lines of that log, for the report (never printed by the CLI)
    interrupted: bool = False


@dataclass
class BaselineOutcome:
    """What happened to the stored baseline; `status` is only "recorded"/"updated" after a write."""

    status: Literal["compared", "recorded", "updated", "not_written", "none"] = "none"
    message: str = ""
    path: str = ""
    fingerprint: str = ""


@dataclass
class RunResult:
    """A whole run: configuration, environment, variants, final verdicts and outcome."""

    run_id: str
    scenario_name: str
    scenario: dict[str, Any]
    started_at: str
    finished_at: str = ""
    environment: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)  # Dataset.describe(): kind, inputs, sizes, sha256
    target: dict[str, Any] = field(default_factory=dict)
    variants: list[VariantResult] = field(default_factory=list)
    baseline: BaselineOutcome = field(default_factory=BaselineOutcome)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    run_dir: str = ""
    failure: RunFailure | None = None
    # with `harness run --history DIR`: each gated metric's series on this testbed (harness.history)
    trends: list[Trend] = field(default_factory=list)
    format_version: int = RESULTS_FORMAT_VERSION

    @property
    def verdicts(self) -> list[Verdict]:
        """Every variant's final verdicts, in variant order."""
        return [v for variant in self.variants for v in variant.verdicts]

    @property
    def outcome(self) -> Outcome:
        if self.failure is not None and self.failure.interrupted:
            return Outcome.INTERRUPTED
        if self.failure is not None or any(v.outcome is None for v in self.variants):
            return Outcome.ERROR
        return worst([v.outcome for v in self.variants if v.outcome is not None])

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.PASS

    def causes(self) -> list[str]:
        """Why the run did not pass, one line each: the failure, failed gates, undecided variants.

        The CLI prints these on stderr, the pytest plugin in its failure; details go to the report."""
        if self.failure is not None:
            f = self.failure
            where = f.stage + (f" ({f.variant})" if f.variant else "")
            log = f"; log: {Path(self.run_dir) / f.log}" if f.log else ""
            kind = "interrupted" if f.interrupted else "error"
            return [f"{kind}: {where}: {f.message}{log}"]
        lines = [f"error: {v.name}: {v.error}" for v in self.variants if v.outcome is Outcome.ERROR]
        failed = [v for v in self.verdicts if v.failed]
        if failed:
            gates = "; ".join(f"{v.variant}: {v.message}" for v in failed)
            lines.append(f"regression: {len(failed)} gate(s) failed: {gates}")
        for variant in self.variants:
            if variant.outcome is Outcome.INCONCLUSIVE:
                reasons = "; ".join(v.message for v in variant.verdicts if v.status == "inconclusive")
                lines.append(f"inconclusive: {variant.name}: {reasons}")
        return lines

    def variant(self, name: str) -> VariantResult:
        return next(v for v in self.variants if v.name == name)

    # ---- serialization --------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The record as strict JSON data (non-finite floats become null), with its outcome."""
        data = strict_json(asdict(self))
        data["outcome"] = self.outcome.value
        data["exit_code"] = self.outcome.exit_code
        # derived, for readers of the file (CI scripts); `load` recomputes them from the measurements
        for variant, out in zip(self.variants, data["variants"], strict=True):
            reported = variant.reported
            out["reported_measurement"] = None if reported is None else reported.number
            out["metrics"] = strict_json(variant.metrics)
        return data

    def write(self, run_dir: Path) -> Path:
        return atomic_write_json(Path(run_dir) / RESULTS_FILE, self.to_json(), indent=1)

    @classmethod
    def load(cls, path: str | Path) -> RunResult:
        """Read a results.json (or the run folder holding one), migrating older formats."""
        path, data = read_record(path, RESULTS_FILE, RESULTS_FORMAT_VERSION, "a run folder", "results file")
        for step in range(data["format_version"], RESULTS_FORMAT_VERSION):
            data = MIGRATIONS[step](data)
        try:
            return _run_from(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UserError(f"{path}: malformed results record: {type(exc).__name__}: {exc}") from None


def read_record(
    path: str | Path, file_name: str, current: int, folder: str, what: str
) -> tuple[Path, dict[str, Any]]:
    """A record file's JSON object (`path` may be the folder holding `file_name`), with an integer
    `format_version` no newer than `current`; anything else is a one-line UserError."""
    path = Path(path)
    if path.is_dir():
        path = path / file_name
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file (expected {folder} holding {file_name})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable {what}: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object at the top level")
    version = data.get("format_version")
    if not isinstance(version, int):
        raise UserError(f"{path}: format_version: expected an integer, got {version!r}")
    if version > current:
        raise UserError(
            f"{path}: format_version {version} is newer than this harness reads ({current}); upgrade harness"
        )
    return path, data


def strict_json(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    if isinstance(value, StrEnum):
        return value.value
    return value


# ---- reading back -----------------------------------------------------------------------------------


def build_record(cls: type[Any], data: dict[str, Any], **nested: Any) -> Any:
    """`cls(**data)` keeping only its own fields (computed keys such as "outcome" are dropped)."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names and k not in nested}, **nested)


def _evidence_from(data: dict[str, Any]) -> Evidence:
    return build_record(EVIDENCE_KINDS[data.get("kind", "threshold")], data)


def _verdict_from(data: dict[str, Any]) -> Verdict:
    return build_record(Verdict, data, evidence=_evidence_from(data.get("evidence") or {}))


def _point_from(data: dict[str, Any]) -> LoadPointResult:
    validity = data["validity"]
    windows = [build_record(Window, w) for w in validity.get("windows", [])]
    return build_record(LoadPointResult, data, validity=build_record(Validity, validity, windows=windows))


def _measurement_from(data: dict[str, Any]) -> Measurement:
    search = data.get("search")
    return build_record(
        Measurement,
        data,
        points=[_point_from(p) for p in data.get("points", [])],
        search=None if search is None else _search_from(search),
        verdicts=[_verdict_from(v) for v in data.get("verdicts", [])],
    )


def _search_from(data: dict[str, Any]) -> SearchResult:
    probes = [build_record(SearchProbe, p) for p in data.get("probes", [])]
    return build_record(SearchResult, data, probes=probes)


def _variant_from(data: dict[str, Any]) -> VariantResult:
    return build_record(
        VariantResult,
        data,
        measurements=[_measurement_from(m) for m in data.get("measurements", [])],
        verdicts=[_verdict_from(v) for v in data.get("verdicts", [])],
        outcome=None if data.get("outcome") is None else Outcome(data["outcome"]),
    )


def _run_from(data: dict[str, Any]) -> RunResult:
    failure = data.get("failure")
    return build_record(
        RunResult,
        data,
        variants=[_variant_from(v) for v in data.get("variants", [])],
        baseline=build_record(BaselineOutcome, data.get("baseline") or {}),
        failure=None if failure is None else build_record(RunFailure, failure),
        trends=[Trend.from_json(t) for t in data.get("trends", [])],
    )
