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

A run calls `check` before it measures: the file is validated in full (`harness.baselines.document`)
so a corrupt baseline stops the run in seconds, and the returned `BaselineSnapshot` remembers what
the run saw. `record` does its read-modify-write under an exclusive fcntl lock on the sidecar
`<scenario>.json.lock` and refuses to overwrite an entry another run wrote meanwhile (see `record`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from harness.atomic import atomic_write_bytes
from harness.baselines import histogram
from harness.baselines.document import (
    Document,
    decode_per_example,
    decode_predictions,
    encode_per_example,
    validate_document,
)
from harness.errors import RunError, UserError
from harness.metrics.quality import ExampleVectors
from harness.samples import VariantSamples, labels_fingerprint

FORMAT_VERSION = 2


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
# errors that mean "this folder is not yours to write": the user's setup, not a broken run
_NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}


class BaselineConflictError(RunError):
    """Another run recorded the same environment's baseline while this run was measuring."""


@dataclass(frozen=True)
class BaselineSnapshot:
    """A baseline file as one run read it before measuring: what it compares with and what
    `record` later checks, under the lock, to notice a concurrent writer."""

    path: Path
    document: Document | None  # validated and migrated; None: there was no file
    sha256: str | None  # of the file's bytes; None: there was no file
    entry_digests: Mapping[str, str] = field(default_factory=dict)  # fingerprint id -> entry digest

    def entry(self, fingerprint_id: str) -> dict[str, Any] | None:
        """The entry recorded on machines with `fingerprint_id`, or None if there is none."""
        if self.document is None:
            return None
        found: dict[str, Any] | None = self.document["environments"].get(fingerprint_id)
        return found


class FileBaselineStore:
    """Reads and writes `<directory>/<scenario>.json`."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def path_for(self, scenario: str) -> Path:
        """Where the baseline of `scenario` lives (whether or not it exists yet)."""
        if not _SCENARIO_NAME.fullmatch(scenario):
            raise UserError(f"scenario name {scenario!r} cannot name a baseline file")
        return self.directory / f"{scenario}.json"

    def lock_path_for(self, scenario: str) -> Path:
        """The sidecar file `record` locks: `<scenario>.json.lock`, left in place between runs."""
        path = self.path_for(scenario)
        return path.with_name(f"{path.name}.lock")

    def check(self, scenario: str) -> BaselineSnapshot:
        """Read and fully validate the baseline of `scenario`: call it BEFORE measuring.

        A corrupt file (not UTF-8, not JSON, wrong types, a metric that is text, null or not
        finite, an unreadable histogram, predictions or window list) raises a one-line UserError
        naming the file, environment, variant and key. No file is fine: the snapshot is empty.
        Pass the snapshot to `record(..., seen=snapshot)` so a concurrent writer is noticed.
        """
        path = self.path_for(scenario)
        data = _read_bytes(path)
        if data is None:
            return BaselineSnapshot(path=path, document=None, sha256=None)
        doc = _parse(data, path)
        return BaselineSnapshot(
            path=path,
            document=doc,
            sha256=hashlib.sha256(data).hexdigest(),
            entry_digests={fid: _digest(entry) for fid, entry in doc["environments"].items()},
        )

    def read(self, scenario: str) -> Document | None:
        """The whole document, validated and upgraded to the current format in memory; None if no file."""
        return self.check(scenario).document

    def load(self, scenario: str, fingerprint_id: str) -> dict[str, Any] | None:
        """The entry recorded on machines with `fingerprint_id`, or None if there is none."""
        return self.check(scenario).entry(fingerprint_id)

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
        seen: BaselineSnapshot | None = None,
    ) -> Path:
        """Store this run as the baseline for `fingerprint_id`, replacing that entry whole.

        The read-modify-write holds an exclusive lock on `<scenario>.json.lock`, so two runs never
        interleave. Concurrency rule, given `seen` (the run's `check` before measuring):
        - entries of other fingerprints are taken from the file as it is under the lock, so runs
          of different machines sharing a folder both land (merge);
        - if the file now holds an entry for `fingerprint_id` that differs from the one in `seen`
          (another run of this environment recorded meanwhile), nothing is written and
          BaselineConflictError says which run wrote it: neither result silently replaces the
          other. Without `seen` (tools, tests) the last writer wins, still without interleaving.
        Non-finite metric values are left out (NaN is not JSON and cannot serve as a reference).
        `distributions[variant]` may hold "latencies_ms" (per-request samples, stored as a
        histogram) and "predictions" (per-example labels, stored as text) together with "labels"
        or "labels_fingerprint" naming the examples they are for.
        Errors are one line naming the file: an unreadable existing file or a folder that cannot
        be written is a UserError, any other failure to write a RunError; the file on disk is
        then left exactly as it was (writes are atomic).
        """
        path = self.path_for(scenario)
        try:
            new_entry = {
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
        except (TypeError, ValueError) as exc:
            raise RunError(f"cannot record baseline {path}: {exc}") from None
        with _locked(self.lock_path_for(scenario), path):
            current = self.check(scenario)
            _refuse_conflict(current, seen, fingerprint_id)
            doc = current.document or {
                "format_version": FORMAT_VERSION,
                "scenario": scenario,
                "environments": {},
            }
            doc["format_version"] = FORMAT_VERSION
            doc["scenario"] = scenario
            doc["environments"][fingerprint_id] = new_entry
            try:
                text = json.dumps(doc, indent=2, allow_nan=False, ensure_ascii=False) + "\n"
            except (TypeError, ValueError) as exc:
                raise RunError(f"cannot record baseline {path}: {exc}") from None
            try:
                return atomic_write_bytes(path, text.encode("utf-8"))
            except OSError as exc:
                raise _write_error(path, exc) from None


def _refuse_conflict(current: BaselineSnapshot, seen: BaselineSnapshot | None, fingerprint_id: str) -> None:
    if seen is None or current.sha256 == seen.sha256:
        return
    now = current.entry_digests.get(fingerprint_id)
    if now is None or now == seen.entry_digests.get(fingerprint_id):
        return  # only other environments changed (or this one was deleted): merge
    other = current.entry(fingerprint_id) or {}
    raise BaselineConflictError(
        f"baseline file {current.path}: environment {fingerprint_id} was recorded by run "
        f"{other.get('run_id', '?')} at {other.get('recorded_at', '?')} while this run was measuring; "
        "not overwritten: run again to compare with it, or with --update-baselines to replace it"
    )


@contextlib.contextmanager
def _locked(lock_path: Path, path: Path) -> Iterator[None]:
    """Hold an exclusive fcntl lock on `lock_path` (created if needed) for the block."""
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise _write_error(path, exc) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _write_error(path: Path, exc: OSError) -> UserError | RunError:
    cause = exc.strerror or str(exc)
    if exc.errno in _NOT_WRITABLE:
        return UserError(f"cannot record baseline {path}: {cause} (folder {path.parent} is not writable)")
    where = f" ({exc.filename})" if exc.filename else ""
    return RunError(f"cannot record baseline {path}: {cause}{where}")


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UserError(f"cannot read baseline file {path}: {exc.strerror or exc}") from None


def _parse(data: bytes, path: Path) -> Document:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"baseline file {path} is not UTF-8 text (byte {exc.start} is 0x{data[exc.start]:02x}); "
            "expected a JSON baseline file; fix or delete it (it is never overwritten automatically)"
        ) from None
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        detail = (
            f"{exc.msg} at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else "nested too deep"
        )
        raise UserError(
            f"baseline file {path} is not valid JSON ({detail}); "
            "fix or delete it (it is never overwritten automatically)"
        ) from None
    return validate_document(_migrate(doc, path), path)


def _digest(entry: Any) -> str:
    canonical = json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


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


def variant_examples(
    entry: Mapping[str, Any] | None, configs: Mapping[str, str] | None = None
) -> dict[str, ExampleVectors] | None:
    """{variant: ExampleVectors} of a stored entry, for the paired quality tests; same `configs`
    filter as `variant_metrics`. Unreadable vectors are a UserError naming the variant."""
    if entry is None:
        return None
    examples = {}
    for name, stored in entry.get("variants", {}).items():
        if configs is not None and stored.get("config") != configs.get(name):
            continue
        if not stored.get("per_example"):
            continue
        try:
            examples[name] = decode_per_example(stored["per_example"])
        except ValueError as exc:
            raise UserError(f"baseline of variant {name!r}: per_example cannot be read: {exc}") from None
    return examples


def _read_samples(stored: Mapping[str, Any]) -> VariantSamples:
    latencies = None
    if stored.get("latency_histogram"):
        latencies = histogram.expand(*histogram.decode(stored["latency_histogram"]))
    predictions = fingerprint = None
    if stored.get("predictions"):
        predictions = decode_predictions(stored["predictions"])
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
    examples = distribution.get("per_example")
    if isinstance(examples, ExampleVectors) and examples.values and examples.fingerprint:
        entry["per_example"] = encode_per_example(examples)
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
