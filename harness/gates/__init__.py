"""Gates: parse per-metric thresholds and turn current vs baseline metrics into verdicts.

`thresholds` is pure Python (the scenario validator imports it); `evaluate` builds Verdicts.
"""

from harness.gates.thresholds import Threshold, parse_threshold

__all__ = ["Threshold", "parse_threshold"]
