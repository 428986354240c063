"""Verdicts of one measurement of one variant, judged on that measurement alone.

An INVALID measurement (harness.load.validity) is never compared with a baseline as if it were a
result: its load gates are left out and one `validity` verdict, inconclusive, carries the reasons.
Gates on what the model itself is (accuracy, fidelity, size) are judged either way: load noise
cannot move them. Latency and quality gates get the stored distributions and per-example vectors
for their statistical tests.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from harness.gates.evaluate import evaluate
from harness.metrics.catalog import is_load_metric
from harness.metrics.quality import ExampleVectors
from harness.results import Measurement, Verdict
from harness.samples import VariantSamples
from harness.scenario.schema import GatePolicySpec

VALIDITY_METRIC = "validity"


def judge_measurement(
    variant: str,
    measurement: Measurement,
    gates: Mapping[str, str | int | float],
    policy: GatePolicySpec,
    baseline: Mapping[str, float] | None,
    baseline_samples: VariantSamples | None,
    labels: np.ndarray | None,
    *,
    examples_fingerprint: str | None = None,
    baseline_examples: ExampleVectors | None = None,
) -> list[Verdict]:
    """This measurement's verdicts: the scenario's gates, and `validity` when it is INVALID.

    `baseline` is the variant's stored metrics under the same configuration (None: nothing to
    compare with, so only bare limits apply). `labels` are the test labels (None: unlabelled).
    `examples_fingerprint` names the test examples this measurement's per-example vectors are
    for; the paired quality tests run only when the baseline's (`baseline_examples`) name the same."""
    valid = measurement.valid
    metrics = {k: x for k, x in measurement.metrics.items() if valid or not is_load_metric(k)}
    verdicts = evaluate(
        gates,
        {variant: metrics},
        None if baseline is None else {variant: dict(baseline)},
        policy=policy,
        current_dist={variant: current_samples(measurement, labels)},
        baseline_dist=None if baseline_samples is None else {variant: baseline_samples},
        current_examples={variant: current_examples(measurement, examples_fingerprint)},
        baseline_examples=None if baseline_examples is None else {variant: baseline_examples},
    )
    if not valid:
        verdicts = [v for v in verdicts if not is_load_metric(v.metric)]
        verdicts.insert(0, _invalid(variant, measurement))
    for v in verdicts:
        v.measurement = measurement.number
    return verdicts


def current_samples(measurement: Measurement, labels: np.ndarray | None) -> VariantSamples:
    """The measurement's distributions for the statistical gates, as a baseline would store them."""
    gated = measurement.gated
    latencies = gated.latencies_ms() if gated is not None else np.empty(0)
    windows = {
        k: np.asarray(w, dtype=np.float64) for k, w in (gated.window_latencies if gated else {}).items()
    }
    predictions = np.asarray(measurement.predictions) if measurement.predictions else None
    return VariantSamples(
        latencies_ms=latencies if len(latencies) else None,
        window_latencies=windows or None,
        predictions=predictions,
        labels=labels if predictions is not None else None,
    )


def current_examples(measurement: Measurement, fingerprint: str | None) -> ExampleVectors:
    """The measurement's per-example quality vectors for the paired tests, as a baseline would store them."""
    values = {key: np.asarray(v, dtype=np.float64) for key, v in measurement.per_example.items()}
    return ExampleVectors(values=values, fingerprint=fingerprint)


def _invalid(variant: str, measurement: Measurement) -> Verdict:
    gated = measurement.gated
    reasons = gated.validity.reasons if gated is not None else []
    return Verdict(
        variant=variant,
        metric=VALIDITY_METRIC,
        threshold="a VALID measurement",
        current=None,
        baseline=None,
        limit=None,
        status="inconclusive",
        message="measurement INVALID, not compared with the baseline: "
        + "; ".join(reasons or ["no reason recorded"]),
        measurement=measurement.number,
    )
