"""Every comparison of one variant, head against base: load metrics from the blocks, the model's
own figures (quality, fidelity, size) from one evaluation per side.

Which load metrics: the latency percentiles and throughput the scenario gates, and p95 and
throughput always. Their minimum effect is the scenario's relative threshold where it states one
(`latency_p95_ms: '+10%'` means 10 %), else `--min-effect`. The model's figures go through the
same gates as `harness run`, with base in the baseline's place, so accuracy and fidelity are
paired per example (McNemar) and the rest are compared with the scenario's thresholds; accuracy
and agreement are compared even when not gated, with a minimum effect of DEFAULT_QUALITY_EFFECT,
and so is the model's size, with `--min-effect`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from harness.ab.decide import compare_blocks, compare_errors
from harness.ab.record import ChangeStatus, Comparison, Slot
from harness.evidence import AccuracyEvidence, BootstrapEvidence
from harness.gates.evaluate import evaluate, parse_gates
from harness.metrics.catalog import METRICS, is_load_metric
from harness.metrics.latency import PERCENTILES
from harness.metrics.quality import ExampleVectors
from harness.results import Verdict
from harness.samples import VariantSamples
from harness.scenario.bounds import REFERENCE_VARIANT
from harness.scenario.schema import GatePolicySpec

ALWAYS_COMPARED = ("latency_p95_ms", "throughput_rps")
DEFAULT_QUALITY_EFFECT = 0.01  # absolute: one point of accuracy or agreement
SIZE_METRICS = ("model_size_bytes", "model_size_gzip_bytes")

Gates = Mapping[str, str | int | float]


@dataclass(frozen=True)
class SideFigures:
    """What one side's served outputs and artifact gave: metrics and per-example data."""

    metrics: dict[str, float]
    predictions: np.ndarray | None
    per_example: dict[str, np.ndarray]
    labels: np.ndarray | None
    examples_fingerprint: str


def load_metrics(gates: Gates) -> list[str]:
    """The load metrics compared block by block, latency first."""
    gated = [m for m in gates if m in PERCENTILES or m == "throughput_rps"]
    wanted = set(gated) | set(ALWAYS_COMPARED)
    latency = sorted((m for m in wanted if m in PERCENTILES), key=lambda m: PERCENTILES[m])
    return [*latency, *(["throughput_rps"] if "throughput_rps" in wanted else [])]


def min_effect_for(metric: str, gates: Gates, default: float) -> float:
    """The scenario's relative threshold on `metric`, else `default`."""
    for gate in parse_gates({k: v for k, v in gates.items() if k == metric}):
        if gate.kind == "relative":
            return gate.amount
    return default


def compare_load(
    variant: str,
    slots: Sequence[Slot],
    gates: Gates,
    *,
    alpha: float,
    min_effect: float,
    noise_floor: Mapping[str, float],
    resamples: int,
) -> list[Comparison]:
    """Each load metric from the paired block values, then the error rate from pooled counts."""
    blocks = sorted({s.block for s in slots})
    by = {(s.block, s.side): s for s in slots}
    out = []
    for metric in load_metrics(gates):
        base = [by[(b, "base")].metrics.get(metric, float("nan")) for b in blocks]
        head = [by[(b, "head")].metrics.get(metric, float("nan")) for b in blocks]
        out.append(
            compare_blocks(
                variant,
                metric,
                base,
                head,
                better=METRICS[metric].better,
                alpha=alpha,
                min_effect=min_effect_for(metric, gates, min_effect),
                noise_floor=noise_floor.get(metric),
                resamples=resamples,
            )
        )
    count = {side: [s for s in slots if s.side == side] for side in ("base", "head")}
    out.append(
        compare_errors(
            variant,
            sum(s.failures for s in count["base"]),
            sum(s.requests for s in count["base"]),
            sum(s.failures for s in count["head"]),
            sum(s.requests for s in count["head"]),
            alpha=alpha,
        )
    )
    return out


def model_gates(
    variant: str, gates: Gates, base: SideFigures, head: SideFigures, min_effect: float
) -> dict[str, str | int | float]:
    """The scenario's gates on the model itself, plus, when not gated, accuracy and agreement
    (a drop of DEFAULT_QUALITY_EFFECT) and the model's size (a rise of `min_effect`)."""
    chosen = {m: t for m, t in gates.items() if not is_load_metric(m)}
    if "model_size_bytes" in base.metrics and "model_size_bytes" in head.metrics:
        chosen.setdefault("model_size_bytes", f"+{min_effect * 100:g}%")
    defaults = [m for m in ("accuracy", "agreement") if m in base.metrics and m in head.metrics]
    if variant == REFERENCE_VARIANT and "agreement" in defaults:
        defaults.remove("agreement")  # the reference agrees with itself by definition
    for metric in defaults:
        chosen.setdefault(metric, f"-{DEFAULT_QUALITY_EFFECT} abs")
    return chosen


def compare_model(
    variant: str,
    gates: Gates,
    policy: GatePolicySpec,
    base: SideFigures,
    head: SideFigures,
    *,
    min_effect: float,
) -> list[Comparison]:
    """Quality, fidelity and size gates with base in the baseline's place (harness.gates.evaluate)."""
    chosen = model_gates(variant, gates, base, head, min_effect)
    if not chosen:
        return []
    verdicts = evaluate(
        chosen,
        {variant: head.metrics},
        {variant: base.metrics},
        policy=policy,
        current_dist={variant: _samples(head)},
        baseline_dist={variant: _samples(base)},
        current_examples={variant: ExampleVectors(head.per_example, head.examples_fingerprint)},
        baseline_examples={variant: ExampleVectors(base.per_example, base.examples_fingerprint)},
    )
    thresholds = {g.metric: g for g in parse_gates(chosen)}
    return [_from_verdict(v, thresholds[v.metric].amount, policy.alpha) for v in verdicts]


def _samples(side: SideFigures) -> VariantSamples:
    return VariantSamples(
        predictions=side.predictions, labels=side.labels if side.predictions is not None else None
    )


def _from_verdict(verdict: Verdict, amount: float, alpha: float) -> Comparison:
    """A gate verdict as a comparison row: fail is regressed; a pass is improved when the paired
    test found the change significant in the better direction, else unchanged."""
    base, head = verdict.baseline, verdict.current
    relative = verdict.metric in SIZE_METRICS
    change = None
    if base is not None and head is not None:
        change = (head / base - 1.0) if relative and base else head - base
    evidence = verdict.evidence
    ci_low = ci_high = p_value = None
    test = "exact" if relative else "threshold"
    # a size is exact: it improved when it shrank by at least the threshold
    better_significant = relative and change is not None and change <= -amount
    if isinstance(evidence, AccuracyEvidence):
        test, p_value, ci_low, ci_high = "McNemar exact", evidence.p_value, evidence.ci_low, evidence.ci_high
        better_significant = evidence.c > evidence.b and evidence.p_value_two_sided <= alpha
    elif isinstance(evidence, BootstrapEvidence):
        test, ci_low, ci_high = "paired bootstrap", evidence.ci_low, evidence.ci_high
        spec = METRICS.get(verdict.metric)
        lower = spec is not None and spec.better == "lower"
        better_significant = (ci_high < 0) if lower else (ci_low > 0)
    status: ChangeStatus = {"fail": "regressed", "inconclusive": "inconclusive"}.get(
        verdict.status, "improved" if better_significant else "unchanged"
    )  # type: ignore[assignment]
    spec = METRICS.get(verdict.metric)
    return Comparison(
        variant=verdict.variant,
        metric=verdict.metric,
        base_value=base,
        head_value=head,
        change=change,
        change_kind="relative" if relative else "absolute",
        ci_low=ci_low,
        ci_high=ci_high,
        threshold=amount,
        min_effect=amount,
        noise_floor=None,
        status=status,
        test=test,
        n=int(getattr(evidence, "n", 0) or 0),
        message=verdict.message,
        p_value=p_value,
        better="higher" if spec is not None and spec.better == "higher" else "lower",
    )
