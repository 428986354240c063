"""Metrics: the catalog of names/units/directions, latency percentiles, accuracy.

Only the catalog is re-exported here: it is pure data, so `harness validate` can import it without
pulling in numpy. Import `harness.metrics.latency` (numpy) and `harness.metrics.accuracy` directly.
"""

from harness.metrics.catalog import METRICS, MetricSpec, format_value, get_metric

__all__ = ["METRICS", "MetricSpec", "format_value", "get_metric"]
