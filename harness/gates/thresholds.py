"""Parse gate thresholds as written in a scenario (`latency_p95_ms: '+10%'`, `error_rate: 0`).

Three forms:
- '+10%' / '-5%'         relative to the baseline value;
- '+2 abs' / '-0.01 abs' an absolute change from the baseline value;
- 0 / 0.05 / '0'         a limit on the value itself (a maximum if lower is better, a minimum if
                         higher is better); needs no baseline. `agreement: 0.99` asks for at least
                         99 % agreement with the reference, `kl_divergence: 0.01` for at most 0.01
                         nats; a fraction's limit cannot exceed 1.
For the first two the sign states the allowed direction of worsening, and must agree with the
metric's direction: '+10%' on latency (lower is better) allows a rise of up to 10%, '-0.01 abs'
on accuracy (higher is better) allows a drop of up to 0.01. Pure Python, no heavy imports: the
scenario validator calls `parse_threshold` for every gate.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from harness.metrics.catalog import METRICS, Better, MetricSpec

Kind = Literal["relative", "absolute", "limit"]

# absolute tolerance for float noise: 0.95 - 0.01 must accept a current value of 0.94
_REL_TOL = 1e-9
_ABS_TOL = 1e-12

_PATTERN = re.compile(
    r"(?P<sign>[+-])?\s*(?P<num>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(?P<unit>%|abs)?",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Threshold:
    """A parsed gate on one metric; `amount` is non-negative (fraction for '%', delta, or the limit)."""

    metric: str
    text: str  # as written in the scenario
    kind: Kind
    amount: float
    better: Better

    @property
    def needs_baseline(self) -> bool:
        return self.kind != "limit"

    @property
    def worse_sign(self) -> int:
        """+1 if worsening means a larger value (lower is better), -1 otherwise."""
        return 1 if self.better == "lower" else -1

    def limit(self, baseline: float | None) -> float:
        """The value `current` is compared against; needs `baseline` unless this is a bare limit."""
        if self.kind == "limit":
            return self.amount
        if baseline is None:
            raise ValueError(f"gate {self.metric}: {self.text!r} needs a baseline value")
        if self.kind == "relative":
            # abs() keeps the allowed direction right even for a negative baseline
            return baseline + self.worse_sign * abs(baseline) * self.amount
        return baseline + self.worse_sign * self.amount

    def passes(self, current: float, limit: float) -> bool:
        """True if `current` is within `limit` in the allowed direction (NaN never passes)."""
        if math.isnan(current):
            return False
        if math.isclose(current, limit, rel_tol=_REL_TOL, abs_tol=_ABS_TOL):
            return True
        return current <= limit if self.better == "lower" else current >= limit

    @property
    def comparison(self) -> str:
        """The operator a passing value satisfies, for messages: '<=' or '>='."""
        return "<=" if self.better == "lower" else ">="


def parse_threshold(metric: str, text: str | int | float) -> Threshold:
    """Parse one gate; ValueError with a message fit for the user on any mistake."""
    spec = METRICS.get(metric)
    if spec is None:
        raise ValueError(f"unknown metric {metric!r} in gates; known metrics: {', '.join(METRICS)}")
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ValueError(f"gate {metric}: expected a string like '+10%' or a number, got {text!r}")
    if isinstance(text, int | float):
        return _bare_limit(spec, float(text), str(text))

    written = text.strip()
    match = _PATTERN.fullmatch(written)
    if match is None:
        raise ValueError(
            f"gate {metric}: cannot read {text!r}; write '+10%' or '-5%' (relative to the baseline), "
            "'+2 abs' or '-0.01 abs' (change from the baseline), or a number (a limit on the value)"
        )
    sign, number, unit = match["sign"], float(match["num"]), (match["unit"] or "").lower()
    if not unit:
        if sign:
            raise ValueError(
                f"gate {metric}: {written!r} is ambiguous; write '{sign}{match['num']} abs' for a change "
                f"from the baseline, or a bare {match['num']} for a limit on the value itself"
            )
        return _bare_limit(spec, number, written)

    worse = "+" if spec.better == "lower" else "-"
    direction = "rise" if spec.better == "lower" else "drop"
    if not sign:
        raise ValueError(
            f"gate {metric}: {written!r} needs a sign; {spec.better} is better for {metric}, so write "
            f"'{worse}{written}' to allow a {direction} of up to {written}"
        )
    if sign != worse:
        raise ValueError(
            f"gate {metric}: {written!r} points the improving direction; {spec.better} is better for "
            f"{metric}, so the sign states the allowed {direction}: write '{worse}{written[1:].strip()}'"
        )
    if not math.isfinite(number):
        raise ValueError(f"gate {metric}: {written!r} is not a finite number")
    kind: Kind = "relative" if unit == "%" else "absolute"
    amount = number / 100.0 if kind == "relative" else number
    return Threshold(metric=metric, text=written, kind=kind, amount=amount, better=spec.better)


def _bare_limit(spec: MetricSpec, value: float, written: str) -> Threshold:
    metric, better = spec.name, spec.better
    if not math.isfinite(value):
        raise ValueError(f"gate {metric}: {written!r} is not a finite number")
    if value < 0:
        worse = "+" if better == "lower" else "-"
        magnitude = written.lstrip("+- ")
        raise ValueError(
            f"gate {metric}: a bare number is a limit on the value itself and cannot be negative; "
            f"for a change from the baseline write '{worse}{magnitude} abs' or '{worse}{magnitude}%'"
        )
    if spec.unit == "fraction" and value > 1:
        # 'agreement: 99' meant 99 %, and as written no variant could ever reach it
        raise ValueError(
            f"gate {metric}: {written!r} is beyond 1; {metric} is a fraction (0..1): "
            f"write {value / 100:g} for {value:g} %"
        )
    return Threshold(metric=metric, text=written, kind="limit", amount=value, better=better)
