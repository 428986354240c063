"""The shape of a baseline document, checked in full when the file is read.

A baseline file is often edited by hand, merged in git or truncated by a full disk. Everything
the gates will later rely on is checked here, before a run spends minutes measuring: every metric
a finite number, every histogram and prediction string decodable, every window list numeric.
A problem is a UserError of one line naming the file, the environment, the variant, the key,
what was found and what is expected; the file is never repaired or overwritten automatically.

The per-example quality vectors the paired gates compare (`harness.metrics.quality`) are stored
per variant as
    "per_example": {"examples_fingerprint": "<hex>", "count": 500,
                    "values": {"agree": {"encoding": "bits", "data": "<base64>"},
                               "kl": {"encoding": "float32", "data": "<base64>"}}}
A vector of only 0s and 1s is packed to one bit per example; any other vector is little-endian
float32, 4 bytes per example (base64 adds a third): 10,000 examples take 1.7 KB per 0/1 vector and
53 KB per float vector. `encode_per_example` and `decode_per_example` are the format's only writer
and reader.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from harness.baselines import histogram
from harness.errors import UserError
from harness.metrics.quality import ExampleVectors

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


def encode_per_example(vectors: ExampleVectors) -> dict[str, Any]:
    """The stored form of one variant's per-example vectors (the shape in the module docstring).

    ValueError without a fingerprint (the vectors could never be paired with a later run's), for
    vectors of different lengths, or for non-finite values (JSON has no NaN, a test no use for it)."""
    if not vectors.fingerprint:
        raise ValueError("per-example values need the fingerprint of the examples they are for")
    arrays = {key: np.asarray(values, dtype=np.float64).ravel() for key, values in vectors.values.items()}
    counts = {array.size for array in arrays.values()}
    if len(counts) > 1:
        raise ValueError(f"per-example vectors of different lengths {sorted(counts)}")
    stored: dict[str, dict[str, str]] = {}
    for key, array in arrays.items():
        if not np.all(np.isfinite(array)):
            raise ValueError(f"per-example {key!r} values contain NaN or infinity")
        if np.all((array == 0) | (array == 1)):
            stored[key] = {"encoding": "bits", "data": _b64(np.packbits(array.astype(bool)).tobytes())}
        else:
            stored[key] = {"encoding": "float32", "data": _b64(array.astype("<f4").tobytes())}
    return {
        "examples_fingerprint": vectors.fingerprint,
        "count": counts.pop() if counts else 0,
        "values": stored,
    }


def decode_per_example(stored: Mapping[str, Any]) -> ExampleVectors:
    """The vectors of a stored 'per_example' object; ValueError naming what is wrong if unreadable."""
    fingerprint, count, values = stored.get("examples_fingerprint"), stored.get("count"), stored.get("values")
    if not isinstance(fingerprint, str) or not fingerprint:
        raise ValueError("'examples_fingerprint' must be the non-empty fingerprint of the examples")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise ValueError(f"'count' must be the number of examples, got {count!r}")
    if not isinstance(values, dict):
        raise ValueError("'values' must be an object {key: {'encoding', 'data'}}")
    decoded = {}
    for key, item in values.items():
        encoding = item.get("encoding") if isinstance(item, dict) else None
        data = item.get("data") if isinstance(item, dict) else None
        if encoding not in ("bits", "float32") or not isinstance(data, str):
            raise ValueError(f"{key!r} needs 'encoding' ('bits' or 'float32') and a base64 'data' string")
        try:
            raw = base64.b64decode(data.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise ValueError(f"{key!r} data is not base64") from None
        if encoding == "bits":
            if len(raw) != (count + 7) // 8:
                raise ValueError(f"{key!r} holds {len(raw)} bytes of bits, not {count} examples")
            array = np.unpackbits(np.frombuffer(raw, dtype=np.uint8))[:count].astype(np.float64)
        else:
            if len(raw) != 4 * count:
                raise ValueError(f"{key!r} holds {len(raw)} bytes of float32, not {count} examples")
            array = np.frombuffer(raw, dtype="<f4").astype(np.float64)
            if not np.all(np.isfinite(array)):
                raise ValueError(f"{key!r} values contain NaN or infinity")
        decoded[str(key)] = array
    return ExampleVectors(values=decoded, fingerprint=fingerprint)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


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

    per_example = variant.get("per_example", {})
    if not isinstance(per_example, dict):
        _fail(path, "per_example", per_example, "an object {examples_fingerprint, count, values}", owner)
    if per_example:
        try:
            decode_per_example(per_example)
        except ValueError as exc:
            _fail(path, "per_example", per_example, f"per-example vectors as encoded; {exc}", owner)


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
