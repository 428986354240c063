"""The shape of a baseline document, checked in full when the file is read.

A baseline file is often edited by hand, merged in git or truncated by a full disk. Everything
the gates will later rely on is checked here, before a run spends minutes measuring: every metric
a finite number, every histogram and prediction string decodable, every window list numeric.
A problem is a UserError of one line naming the file, the environment, the variant, the key,
what was found and what is expected; the file is never repaired or overwritten automatically.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from harness.baselines import histogram
from harness.errors import UserError

Document = dict[str, Any]

_HINT = "fix or delete it (it is never overwritten automatically)"


def validate_document(doc: Document, path: Path) -> Document:
    """`doc` itself if it has the shape the harness reads (format 2, migrated); else UserError."""
    _expect_type(doc.get("scenario", ""), str, "text", path, "scenario")
    envs = doc.get("environments")
    if not isinstance(envs, dict):
        _fail(path, "environments", envs, "an object {fingerprint id: entry}")
    for fid, entry in envs.items():
        where = f"environments.{fid}"
        if not isinstance(entry, dict):
            _fail(path, where, entry, "an object with 'variants'")
        _expect_type(entry.get("environment", {}), dict, "an object", path, f"{where}.environment")
        for key in ("run_id", "recorded_at"):
            _expect_type(entry.get(key, ""), str, "text", path, f"{where}.{key}")
        variants = entry.get("variants")
        if not isinstance(variants, dict):
            _fail(path, f"{where}.variants", variants, "an object {variant name: {'metrics': {...}}}")
        for name, variant in variants.items():
            _validate_variant(variant, path, f"environment {fid!r}, variant {name!r}")
    return doc


def decode_predictions(stored: Mapping[str, Any]) -> np.ndarray:
    """The per-example class ids of a stored 'predictions' object; ValueError if unreadable."""
    encoding, text = stored.get("encoding"), stored.get("values")
    if not isinstance(text, str) or encoding not in ("digits", "csv"):
        raise ValueError("'predictions' needs 'encoding' ('digits' or 'csv') and a 'values' string")
    parts = list(text) if encoding == "digits" else text.split(",")
    if not all(part.isascii() and part.isdigit() for part in parts):
        raise ValueError(f"'predictions' values are not {encoding}")
    return np.array([int(part) for part in parts], dtype=np.int64)


def _validate_variant(variant: Any, path: Path, owner: str) -> None:
    if not isinstance(variant, dict):
        _fail(path, "the entry", variant, "an object {'metrics': {...}}", owner)
    metrics = variant.get("metrics", {})
    if not isinstance(metrics, dict):
        _fail(path, "metrics", metrics, "an object {metric: number}", owner)
    for metric, value in metrics.items():
        if not _is_finite_number(value):
            _fail(path, f"metrics.{metric}", value, "a finite number", owner)
    _expect_type(variant.get("config", ""), str, "text (a config id)", path, "config", owner)

    encoded = variant.get("latency_histogram", "")
    if not isinstance(encoded, str):
        _fail(path, "latency_histogram", encoded, "text (an HdrHistogram encoding)", owner)
    try:
        histogram.decode(encoded)
    except ValueError as exc:
        _fail(path, "latency_histogram", encoded, f"an HdrHistogram encoding; {exc}", owner)

    windows = variant.get("latency_windows", {})
    if not isinstance(windows, dict):
        _fail(path, "latency_windows", windows, "an object of number lists {metric: [ms, ...]}", owner)
    for metric, values in windows.items():
        if not isinstance(values, list) or not all(_is_finite_number(x) and x >= 0 for x in values):
            _fail(path, f"latency_windows.{metric}", values, "a list of non-negative numbers (ms)", owner)

    predictions = variant.get("predictions", {})
    if not isinstance(predictions, dict):
        _fail(path, "predictions", predictions, "an object {labels_fingerprint, encoding, values}", owner)
    if predictions:
        fingerprint = predictions.get("labels_fingerprint")
        if not isinstance(fingerprint, str) or not fingerprint:
            _fail(path, "predictions.labels_fingerprint", fingerprint, "16 hex digits", owner)
        try:
            decode_predictions(predictions)
        except ValueError as exc:
            shown = predictions.get("values")
            _fail(path, "predictions.values", shown, f"class ids as encoded; {exc}", owner)


def _is_finite_number(value: Any) -> bool:
    # bool is an int to Python but true/false in a metric is a hand edit gone wrong
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _expect_type(
    value: Any, kind: type, expected: str, path: Path, key: str, owner: str | None = None
) -> None:
    if not isinstance(value, kind):
        _fail(path, key, value, expected, owner)


def _fail(path: Path, key: str, found: Any, expected: str, owner: str | None = None) -> NoReturn:
    where = f"{owner}: " if owner else ""
    raise UserError(f"baseline file {path}: {where}{key} is {_show(found)}; expected {expected}; {_HINT}")


def _show(value: Any) -> str:
    """A JSON value as the user wrote it, briefly."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = value if len(value) <= 24 else value[:24] + "..."
        return f"the text {shown!r}"
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
