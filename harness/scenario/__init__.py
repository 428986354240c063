"""Scenario files: schema, loading and validation (no torch or TensorFlow imported here)."""

from harness.scenario.loader import load_scenario
from harness.scenario.schema import Scenario

__all__ = ["Scenario", "load_scenario"]
