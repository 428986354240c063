"""Baselines on disk: one versioned JSON file per scenario, one entry per machine fingerprint.

`baselines/<scenario>.json`:
    {"format_version": 2, "scenario": "digits-mlp",
     "environments": {"<fingerprint_id>": {"environment": {...}, "recorded_at": "2025-...Z",
                                           "run_id": "...", "variants": {"int8": {...}}}}}
with one entry per variant:
    {"metrics": {"latency_p95_ms": 2.1, ...}, "config": "<config id>",
     "latency_histogram": "HISTFAAA...",            # optional: HdrHistogram, ns, 3 digits
     "latency_windows": {"latency_p95_ms": [0.91, 0.88, ...]},  # optional: per-window percentiles
     "predictions": {"labels_fingerprint": "<16 hex>", "encoding": "digits", "values": "0317..."}}
The histogram and predictions keep enough of the distribution for the statistical gates (rank
test or bootstrap on latency, McNemar on accuracy): 1.3-6 KB per variant, measured from 1,000 to
100,000 requests; the per-window percentiles for the window test add about 30 bytes per window.
Format 1 had only metrics and config; it reads as format 2 without distributions, so its gates
fall back to plain comparisons until the next recording.

Baselines from different machines live side by side: a laptop and a CI runner each compare with
their own numbers. Files are written atomically and a file this harness cannot read is an error,
never silently replaced, since a baseline is often the only record of past performance.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from harness.atomic import atomic_write_json
from harness.baselines import histogram
from harness.errors import UserError
from harness.gates.statistics import VariantSamples, labels_fingerprint

FORMAT_VERSION = 2

Document = dict[str, Any]


def _update_to_2(doc: Document) -> Document:
    """Format 2 adds optional per-variant `latency_histogram`, `latency_windows` and `predictions`.

    v1 entries stay valid; `latency_windows` came later within format 2 and is optional too.
    """
    return doc


# _UPDATES[n] turns a format n-1 document into format n (asv's update_to_N). To change the format:
# bump FORMAT_VERSION, write `def _update_to_N(doc: Document) -> Document` and register it as
# _UPDATES[N]; readers then upgrade older files in memory and `record` writes them back as vN.
_UPDATES: dict[int, Callable[[Document], Document]] = {2: _update_to_2}

_SCENARIO_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


class FileBaselineStore:
    """Reads and writes `<directory>/<scenario>.json`."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def path_for(self, scenario: str) -> Path:
        """Where the baseline of `scenario` lives (whether or not it exists yet)."""
        if not _SCENARIO_NAME.fullmatch(scenario):
            raise UserError(f"scenario name {scenario!r} cannot name a baseline file")
        return self.directory / f"{scenario}.json"

    def read(self, scenario: str) -> Document | None:
        """The whole document, upgraded to the current format in memory; None if there is no file."""
        path = self.path_for(scenario)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise UserError(f"cannot read baseline file {path}: {exc.strerror or exc}") from None
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(
                f"baseline file {path} is not valid JSON ({exc.msg} at line {exc.lineno}); "
                "fix or delete it (it is never overwritten automatically)"
            ) from None
        return _validate(_migrate(doc, path), path)

    def load(self, scenario: str, fingerprint_id: str) -> dict[str, Any] | None:
        """The entry recorded on machines with `fingerprint_id`, or None if there is none."""
        doc = self.read(scenario)
        if doc is None:
            return None
        entry: dict[str, Any] | None = doc["environments"].get(fingerprint_id)
        return entry

    def fingerprints(self, scenario: str) -> list[str]:
        """The fingerprint ids that have a baseline for `scenario` (to tell the user why none matched)."""
        doc = self.read(scenario)
        return sorted(doc["environments"]) if doc else []

    def record(
        self,
        scenario: str,
        fingerprint_id: str,
        environment: Mapping[str, Any],
        run_id: str,
        variants_metrics: Mapping[str, Mapping[str, float]],
        *,
        configs: Mapping[str, str] | None = None,
        recorded_at: str | None = None,
        distributions: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Path:
        """Store this run as the baseline for `fingerprint_id`, replacing that entry whole.

        Entries of other fingerprints are kept. Non-finite metric values are left out (NaN is not
        JSON and cannot serve as a reference). An unreadable existing file raises UserError.
        `distributions[variant]` may hold "latencies_ms" (per-request samples, stored as a
        histogram) and "predictions" (per-example labels, stored as text) together with "labels"
        or "labels_fingerprint" naming the examples they are for.
        """
        path = self.path_for(scenario)
        doc = self.read(scenario) or {
            "format_version": FORMAT_VERSION,
            "scenario": scenario,
            "environments": {},
        }
        doc["format_version"] = FORMAT_VERSION
        doc["scenario"] = scenario
        doc["environments"][fingerprint_id] = {
            "environment": dict(environment),
            "recorded_at": recorded_at or datetime.now(UTC).isoformat(timespec="seconds"),
            "run_id": run_id,
            "variants": {
                variant: _variant_entry(
                    metrics, (configs or {}).get(variant), (distributions or {}).get(variant)
                )
                for variant, metrics in variants_metrics.items()
            },
        }
        self.directory.mkdir(parents=True, exist_ok=True)
        return atomic_write_json(path, doc)


def variant_metrics(
    entry: Mapping[str, Any] | None, configs: Mapping[str, str] | None = None
) -> dict[str, dict[str, float]] | None:
    """{variant: {metric: value}} of a stored entry: the `baseline` argument of gates.evaluate.

    With `configs`, only variants recorded under the same configuration id are returned: numbers
    measured with other load or serving settings are no reference.
    """
    if entry is None:
        return None
    return {
        name: dict(v.get("metrics", {}))
        for name, v in entry.get("variants", {}).items()
        if configs is None or v.get("config") == configs.get(name)
    }


def variant_distributions(
    entry: Mapping[str, Any] | None, configs: Mapping[str, str] | None = None
) -> dict[str, VariantSamples] | None:
    """{variant: VariantSamples} of a stored entry: the `baseline_dist` argument of gates.evaluate.

    Latencies come back as the histogram's samples (bucket midpoints, within 0.05% of the values
    recorded); a variant stored without distributions gets empty VariantSamples. Same `configs`
    filter as `variant_metrics`. A histogram or prediction string that cannot be read is a
    UserError naming the variant: the file was edited by hand or truncated.
    """
    if entry is None:
        return None
    samples = {}
    for name, stored in entry.get("variants", {}).items():
        if configs is not None and stored.get("config") != configs.get(name):
            continue
        try:
            samples[name] = _read_samples(stored)
        except ValueError as exc:
            raise UserError(f"baseline of variant {name!r} cannot be read: {exc}") from None
    return samples


def _read_samples(stored: Mapping[str, Any]) -> VariantSamples:
    latencies = None
    if stored.get("latency_histogram"):
        latencies = histogram.expand(*histogram.decode(stored["latency_histogram"]))
    predictions = fingerprint = None
    if stored.get("predictions"):
        predictions = _decode_predictions(stored["predictions"])
        fingerprint = str(stored["predictions"].get("labels_fingerprint") or "") or None
    windows = {
        metric: np.asarray(values, dtype=np.float64)
        for metric, values in (stored.get("latency_windows") or {}).items()
    }
    return VariantSamples(
        latencies_ms=latencies,
        window_latencies=windows or None,
        predictions=predictions,
        labels_fingerprint=fingerprint,
    )


def _variant_entry(
    metrics: Mapping[str, float], config: str | None, distribution: Mapping[str, Any] | None
) -> dict[str, Any]:
    entry: dict[str, Any] = {"metrics": _clean_metrics(metrics)}
    if config is not None:
        entry["config"] = config
    distribution = distribution or {}
    latencies = distribution.get("latencies_ms")
    if latencies is not None and len(latencies) > 0:
        entry["latency_histogram"] = histogram.encode(latencies)
    stored_windows = distribution.get("window_latencies") or {}
    windows = {k: [float(x) for x in w] for k, w in stored_windows.items() if len(w)}
    if windows:
        entry["latency_windows"] = windows
    predictions = distribution.get("predictions")
    if predictions is not None and len(predictions) > 0:
        entry["predictions"] = _encode_predictions(
            predictions, distribution.get("labels"), distribution.get("labels_fingerprint")
        )
    return entry


def _encode_predictions(predictions: Any, labels: Any, fingerprint: str | None) -> dict[str, str]:
    """Per-example class ids as text: one digit each below 10 classes (450 bytes for digits), else CSV."""
    values = np.asarray(predictions).ravel()
    if values.size and (not np.issubdtype(values.dtype, np.integer) or values.min() < 0):
        raise ValueError("predictions must be non-negative integer class ids")
    if labels is not None:
        if len(labels) != values.size:
            raise ValueError(f"{values.size} predictions for {len(labels)} labels")
        fingerprint = labels_fingerprint(labels)
    if not fingerprint:
        raise ValueError("predictions need 'labels' or 'labels_fingerprint' to pair them with examples")
    as_text = [str(v) for v in values.tolist()]
    if values.max() < 10:
        return {"labels_fingerprint": fingerprint, "encoding": "digits", "values": "".join(as_text)}
    return {"labels_fingerprint": fingerprint, "encoding": "csv", "values": ",".join(as_text)}


def _decode_predictions(stored: Mapping[str, Any]) -> np.ndarray:
    encoding, text = stored.get("encoding"), stored.get("values")
    if not isinstance(text, str) or encoding not in ("digits", "csv"):
        raise ValueError("'predictions' needs 'encoding' ('digits' or 'csv') and a 'values' string")
    parts = list(text) if encoding == "digits" else text.split(",")
    if not all(part.isdigit() for part in parts):
        raise ValueError(f"'predictions' values are not {encoding}")
    return np.array([int(part) for part in parts], dtype=np.int64)


def _clean_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    cleaned = {}
    for name, value in metrics.items():
        number = float(value)  # numpy scalars become plain floats json can write
        if math.isfinite(number):
            cleaned[name] = number
    return cleaned


def _migrate(data: Any, path: Path) -> Document:
    """Refuse newer formats, upgrade older ones step by step through _UPDATES."""
    doc: Document = data if isinstance(data, dict) else {}
    found = doc.get("format_version")
    if not isinstance(found, int) or isinstance(found, bool) or found < 1:
        raise UserError(f"{path} is not a baseline file (no valid format_version); fix or delete it")
    if found > FORMAT_VERSION:
        raise UserError(
            f"{path} has format_version {found}; this harness reads up to {FORMAT_VERSION}: upgrade harness"
        )
    for version in range(found + 1, FORMAT_VERSION + 1):
        doc = _UPDATES[version](doc)
        doc["format_version"] = version
    return doc


def _validate(doc: Document, path: Path) -> Document:
    """Check the shape the rest of the harness relies on, so a hand-edited file fails here, clearly."""
    envs = doc.get("environments")
    if not isinstance(envs, dict):
        raise UserError(f"baseline file {path}: 'environments' must be an object")
    for fid, entry in envs.items():
        variants = entry.get("variants") if isinstance(entry, dict) else None
        if not isinstance(variants, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("metrics", {}), dict) for v in variants.values()
        ):
            shape = "{name: {'metrics': {...}}}"
            raise UserError(f"baseline file {path}: environment {fid!r} needs 'variants': {shape}")
        for name, v in variants.items():
            windows = v.get("latency_windows", {})
            windows_ok = isinstance(windows, dict) and all(
                isinstance(w, list) and all(isinstance(x, int | float) for x in w) for w in windows.values()
            )
            if not windows_ok:
                raise UserError(
                    f"baseline file {path}: variant {name!r} of environment {fid!r} needs "
                    "'latency_windows' as an object of number lists"
                )
            if not isinstance(v.get("latency_histogram", ""), str) or not isinstance(
                v.get("predictions", {}), dict
            ):
                raise UserError(
                    f"baseline file {path}: variant {name!r} of environment {fid!r} needs "
                    "'latency_histogram' as text and 'predictions' as an object"
                )
    return doc
