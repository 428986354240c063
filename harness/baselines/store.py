"""Baselines on disk: one versioned JSON file per scenario, one entry per machine fingerprint.

`baselines/<scenario>.json`:
    {"format_version": 1, "scenario": "digits-mlp",
     "environments": {"<fingerprint_id>": {"environment": {...}, "recorded_at": "2025-...Z",
                                           "run_id": "...", "variants": {"int8": {"metrics": {...}}}}}}
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

from harness.atomic import atomic_write_json
from harness.errors import UserError

FORMAT_VERSION = 1

Document = dict[str, Any]

# _UPDATES[n] turns a format n-1 document into format n (asv's update_to_N). To change the format:
# bump FORMAT_VERSION to 2, write `def _update_to_2(doc: Document) -> Document` and register it
# as _UPDATES[2]; readers then upgrade v1 files in memory and `record` writes them back as v2.
_UPDATES: dict[int, Callable[[Document], Document]] = {}

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
    ) -> Path:
        """Store this run as the baseline for `fingerprint_id`, replacing that entry whole.

        Entries of other fingerprints are kept. Non-finite metric values are left out (NaN is not
        JSON and cannot serve as a reference). An unreadable existing file raises UserError.
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
                variant: _variant_entry(metrics, (configs or {}).get(variant))
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


def _variant_entry(metrics: Mapping[str, float], config: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"metrics": _clean_metrics(metrics)}
    if config is not None:
        entry["config"] = config
    return entry


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
    return doc
