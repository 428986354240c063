"""The typed record of one `harness ab`: both sides, every block's figures, every comparison.

Written as `reports/<ab-run-id>/ab.json` with a `format_version`, read back by `AbResult.load`,
and rendered into the pull-request comment (summary.md), the HTML report and the exports. Like
`harness.results.RunResult`, nothing downstream reads it as a dict.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.atomic import atomic_write_json
from harness.errors import UserError
from harness.results import Outcome, RunFailure, build_record, read_record, strict_json

AB_FORMAT_VERSION = 1
AB_FILE = "ab.json"

ChangeStatus = Literal["improved", "regressed", "unchanged", "inconclusive"]
CHANGE_STATUSES: tuple[ChangeStatus, ...] = ("regressed", "inconclusive", "improved", "unchanged")
InconclusivePolicy = Literal["fail", "pass"]
ServerMode = Literal["both-up", "restart"]
SideName = Literal["base", "head"]
NoiseFloorSource = Literal["aa-blocks", "history", "none"]


@dataclass
class Side:
    """What one side ran: the code ref, its commit and scenario file, and the data it measured."""

    name: SideName
    ref: str  # as given: 'origin/main', 'working tree', or a scenario file for --base-scenario
    sha: str | None = None  # the commit; None outside git
    dirty: bool = False  # head only: the working tree has uncommitted changes
    scenario_file: str = ""
    data_fingerprint: str = ""


@dataclass
class Slot:
    """One load measurement of one side within a block: the figures the comparison pairs."""

    block: int  # 0-based
    side: SideName
    position: int  # 0 or 1: first or second in its block
    metrics: dict[str, float] = field(default_factory=dict)  # latency_p50_ms.., throughput_rps, error_rate
    requests: int = 0
    failures: int = 0
    started_s: float = 0.0  # since the first slot began
    restarted: bool = False  # restart mode: the side's server was started for this slot
    round: int = 0  # 0-based: which fresh start of both servers measured this block


@dataclass
class Comparison:
    """One metric of one variant, head against base, with the test that decided it.

    `change` is head relative to base: head/base - 1 for `relative` metrics (latency, throughput,
    size), head - base for `absolute` ones (accuracy, error rate). `ci_low`/`ci_high` bound it at
    the method's confidence. `threshold` is the change that counts: max(min_effect, noise_floor)."""

    variant: str
    metric: str
    base_value: float | None
    head_value: float | None
    change: float | None
    change_kind: Literal["relative", "absolute"]
    ci_low: float | None
    ci_high: float | None
    threshold: float
    min_effect: float
    noise_floor: float | None
    status: ChangeStatus
    test: str  # "block log-ratio bootstrap", "McNemar exact", "paired bootstrap", "Fisher exact", "exact"
    n: int  # blocks, or examples for quality metrics
    message: str
    p_value: float | None = None
    better: Literal["lower", "higher"] = "lower"


@dataclass
class VariantComparison:
    """One variant on both sides: model figures, the block slots, and the comparisons."""

    name: str
    base_metrics: dict[str, float] = field(default_factory=dict)  # model size, quality, pooled load
    head_metrics: dict[str, float] = field(default_factory=dict)
    slots: list[Slot] = field(default_factory=list)
    aa_slots: list[Slot] = field(default_factory=list)  # the optional A/A blocks (base against base)
    noise_floor: dict[str, float] = field(default_factory=dict)  # metric -> relative change noise alone gives
    noise_floor_source: NoiseFloorSource = "none"
    comparisons: list[Comparison] = field(default_factory=list)
    server_starts: dict[str, int] = field(default_factory=dict)  # side (or "base-twin") -> starts
    error: str = ""  # this variant could not be compared (a side failed to prepare or serve)
    warnings: list[str] = field(default_factory=list)


@dataclass
class AbMethod:
    """How the decision was made, so a reader can judge it: the test, alpha, blocks, servers."""

    alpha: float
    min_effect: float  # relative, unless the scenario gates the metric with its own threshold
    pairs: int  # blocks, over all rounds: each gives one value per metric per side
    order: str  # e.g. "AB BA BA | AB AB BA": the blocks as measured, rounds apart by " | "
    slot_s: float  # measured seconds of each slot (after warmup_s)
    warmup_s: float
    bootstrap_resamples: int
    best_reachable_alpha: float  # the smallest two-sided p-value `pairs` blocks can give
    servers: ServerMode
    servers_reason: str
    aa_pairs: int = 0
    rounds: int = 1  # both servers started afresh for each; the blocks of all rounds are pooled
    test: str = "paired block log-ratios, bootstrap confidence interval of the mean"
    slice_s: float = 0.0  # > 0: both sides loaded in turn, this long each, within one Locust run
    interleaving: str = ""  # how the sides' load was interleaved, or why only slot by slot


@dataclass
class AbResult:
    """A whole A/B comparison: sides, method, testbed, per-variant comparisons and the outcome."""

    run_id: str
    scenario_name: str
    started_at: str
    base: Side
    head: Side
    method: AbMethod
    testbed: str
    finished_at: str = ""
    environment: dict[str, Any] = field(default_factory=dict)
    environment_warnings: list[str] = field(default_factory=list)  # e.g. the sides' data or CPU differ
    variants: list[VariantComparison] = field(default_factory=list)
    inconclusive: InconclusivePolicy = "fail"
    failure: RunFailure | None = None
    run_dir: str = ""
    report_url: str = ""  # where the HTML report is published (CI artifact), for the PR comment
    format_version: int = AB_FORMAT_VERSION

    @property
    def comparisons(self) -> list[Comparison]:
        return [c for v in self.variants for c in v.comparisons]

    def counts(self) -> dict[ChangeStatus, int]:
        """How many comparisons regressed, were inconclusive, improved or did not change."""
        out: dict[ChangeStatus, int] = dict.fromkeys(CHANGE_STATUSES, 0)
        for c in self.comparisons:
            out[c.status] += 1
        return out

    @property
    def outcome(self) -> Outcome:
        """ERROR if the run broke or a variant could not be compared; REGRESSION if any metric
        regressed; INCONCLUSIVE if any could not be decided; else PASS."""
        if self.failure is not None:
            return Outcome.INTERRUPTED if self.failure.interrupted else Outcome.ERROR
        if any(v.error for v in self.variants) or not self.variants:
            return Outcome.ERROR
        counts = self.counts()
        if counts["regressed"]:
            return Outcome.REGRESSION
        if counts["inconclusive"]:
            return Outcome.INCONCLUSIVE
        return Outcome.PASS

    @property
    def exit_code(self) -> int:
        """The outcome's exit code, except that `--inconclusive=pass` turns 3 into 0."""
        outcome = self.outcome
        if outcome is Outcome.INCONCLUSIVE and self.inconclusive == "pass":
            return 0
        return outcome.exit_code

    def causes(self) -> list[str]:
        """Why it did not pass, one line each (the CLI prints these on stderr)."""
        if self.failure is not None:
            f = self.failure
            return [f"error: {f.stage}{f' ({f.variant})' if f.variant else ''}: {f.message}"]
        lines = [f"error: {v.name}: {v.error}" for v in self.variants if v.error]
        for status in ("regressed", "inconclusive"):
            lines += [f"{status}: {c.variant}: {c.message}" for c in self.comparisons if c.status == status]
        return lines

    # ---- serialization --------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        data = strict_json(asdict(self))
        data["outcome"] = self.outcome.value
        data["exit_code"] = self.exit_code
        data["counts"] = self.counts()
        return data

    def write(self, run_dir: Path) -> Path:
        return atomic_write_json(Path(run_dir) / AB_FILE, self.to_json(), indent=1)

    @classmethod
    def load(cls, path: str | Path) -> AbResult:
        """Read an ab.json (or the folder holding one)."""
        path, data = read_record(path, AB_FILE, AB_FORMAT_VERSION, "an A/B run folder", "A/B record")
        try:
            return _ab_from(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UserError(f"{path}: malformed A/B record: {type(exc).__name__}: {exc}") from None


def _variant_from(data: dict[str, Any]) -> VariantComparison:
    return build_record(
        VariantComparison,
        data,
        slots=[build_record(Slot, s) for s in data.get("slots", [])],
        aa_slots=[build_record(Slot, s) for s in data.get("aa_slots", [])],
        comparisons=[build_record(Comparison, c) for c in data.get("comparisons", [])],
    )


def _ab_from(data: dict[str, Any]) -> AbResult:
    failure = data.get("failure")
    return build_record(
        AbResult,
        data,
        base=build_record(Side, data["base"]),
        head=build_record(Side, data["head"]),
        method=build_record(AbMethod, data["method"]),
        variants=[_variant_from(v) for v in data.get("variants", [])],
        failure=None if failure is None else build_record(RunFailure, failure),
    )
