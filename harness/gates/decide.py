"""The one rule that turns a variant's measurements into its final verdicts and outcome.

Both the re-measure loop (harness.run) and everything downstream (CLI exit code, pytest plugin,
JUnit, report) use `decide`; nothing else merges measurements.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from harness.gates.judge import VALIDITY_METRIC
from harness.metrics.catalog import is_load_metric
from harness.results import Measurement, Outcome, Verdict

GateKey = tuple[str, str]  # (metric, threshold as written)


def decide(measurements: Sequence[Measurement]) -> tuple[list[Verdict], Outcome]:
    """A variant's final verdicts and outcome, from all of its measurements.

    The rule:
    - A measurement judges a gate when it is VALID, or when the gated metric comes from the model
      (accuracy, size), which load noise cannot move. INVALID measurements judge no load gate.
    - A gate FAILS when it failed in every measurement that judged it: one slow measurement on a
      shared machine is not a regression, so a failure must hold in every re-measure. It passes
      when any measurement that judged it passed it.
    - The final verdict is the gate's verdict in the latest measurement that judged it; when the
      measurements disagreed, its message says so.
    - With no VALID measurement, one `validity` verdict is INCONCLUSIVE with the latest reasons.
    - Outcome: REGRESSION if any gate failed; else INCONCLUSIVE if no measurement was VALID;
      else PASS.
    """
    history: dict[GateKey, list[Verdict]] = {}
    for m in measurements:
        for v in m.verdicts:
            if v.metric != VALIDITY_METRIC:
                history.setdefault((v.metric, v.threshold), []).append(v)
    final = [_final(judged) for judged in history.values()]
    any_valid = any(m.valid for m in measurements)
    if measurements and not any_valid:
        latest = measurements[-1]
        validity = next((v for v in latest.verdicts if v.metric == VALIDITY_METRIC), None)
        if validity is not None:
            n = len(measurements)
            note = f" (INVALID in all {n} measurements)" if n > 1 else ""
            final.insert(0, replace(validity, message=validity.message + note))
    if any(v.failed for v in final):
        return final, Outcome.REGRESSION
    if measurements and not any_valid:
        return final, Outcome.INCONCLUSIVE
    return final, Outcome.PASS


def needs_remeasure(measurements: Sequence[Measurement]) -> bool:
    """Whether another measurement could change the decision: no VALID measurement yet, or a load
    gate that has failed in every measurement so far (gates on the model itself cannot change)."""
    if not measurements:
        return False
    if not any(m.valid for m in measurements):
        return True
    verdicts, _ = decide(measurements)
    return any(v.failed and is_load_metric(v.metric) for v in verdicts)


def _final(judged: list[Verdict]) -> Verdict:
    latest = judged[-1]
    failed = [v for v in judged if v.failed]
    if len(judged) == 1 or len(failed) in (0, len(judged)):
        if len(judged) > 1 and failed:
            return replace(latest, message=f"{latest.message} [failed in all {len(judged)} measurements]")
        return latest
    numbers = ", ".join(str(v.measurement) for v in failed)
    note = f" [measurement {numbers} failed this gate but another passed it: not confirmed]"
    if latest.failed:
        passing = next(v for v in reversed(judged) if v.passed)
        return replace(passing, message=passing.message + note)
    return replace(latest, message=latest.message + note)
