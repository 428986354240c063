"""Baselines: versioned per-scenario JSON files keyed by a machine fingerprint."""

from harness.baselines.fingerprint import environment_fingerprint, fingerprint_id
from harness.baselines.store import (
    FORMAT_VERSION,
    BaselineConflictError,
    BaselineSnapshot,
    FileBaselineStore,
    variant_metrics,
)

__all__ = [
    "FORMAT_VERSION",
    "BaselineConflictError",
    "BaselineSnapshot",
    "FileBaselineStore",
    "environment_fingerprint",
    "fingerprint_id",
    "variant_metrics",
]
