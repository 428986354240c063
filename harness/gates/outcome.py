"""How a statistical test turns a gate's plain verdict into the final one, in one place for every test.

The rule (see `harness.gates.statistics`): a gate fails only when the change is beyond its
threshold (the plain comparison failed) AND the test finds it significant; the message says which
of the four cases it was. When no test can run, the plain comparison stands and says why.
"""

from __future__ import annotations

import math
from dataclasses import replace

from harness.results import Evidence, ThresholdEvidence, Verdict


def decided(verdict: Verdict, beyond: bool, significant: bool, test: str, evidence: Evidence) -> Verdict:
    """Fail only when the change is beyond the threshold AND significant; the message says which."""
    if beyond and significant:
        outcome = "significant: regression"
    elif beyond:
        outcome = "not significant: passed"
    elif significant:
        outcome = "significant but within the threshold"
    else:
        outcome = "within the threshold, not significant"
    return replace(
        verdict,
        status="fail" if beyond and significant else "pass",
        message=f"{verdict.message}; {test}: {outcome}",
        evidence=evidence,
    )


def plain(verdict: Verdict, reason: str) -> Verdict:
    """The plain comparison decides; `reason` says why no test ran."""
    message = f"{verdict.message}; plain comparison: {reason}"
    return replace(verdict, message=message, evidence=ThresholdEvidence(reason=reason))


def finite(value: float | None) -> float | None:
    """results.json is strict JSON: NaN and infinity become None."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None
