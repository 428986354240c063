"""Load a scenario file and turn every problem into one line naming file, key and expectation.

Reading and parsing happen here; the schema (`schema`) checks types and bounds, and `checks` what
needs the registries, the file system or this machine. No torch or TensorFlow is imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from harness.errors import UserError
from harness.scenario.checks import check_scenario
from harness.scenario.messages import validated
from harness.scenario.schema import Scenario, resolve_source

MAX_FILE_BYTES = 1_000_000  # a scenario is a few KB; anything this large is the wrong file

__all__ = ["MAX_FILE_BYTES", "load_scenario", "resolve_source"]


def load_scenario(path: str | Path) -> Scenario:
    """Parse and fully validate a scenario file without importing torch or TensorFlow."""
    path = Path(path)
    raw = _parse_yaml(_read_text(path), path)
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of scenario keys at the top level, got {_kind(raw)}")
    scenario = validated(Scenario, raw, path)
    check_scenario(scenario, path)
    return scenario


def _read_text(path: Path) -> str:
    try:
        if path.is_dir():
            raise UserError(f"{path}: is a folder, not a scenario file")
        if not path.is_file():
            what = "scenario file not found" if not path.exists() else "not a regular file"
            raise UserError(f"{path}: {what}")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise UserError(
                f"{path}: expected a scenario file of at most {MAX_FILE_BYTES:,} bytes, got {size:,}"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read scenario file: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{path}: expected a UTF-8 text (YAML) file, got undecodable byte 0x{data[exc.start]:02x} at "
            f"offset {exc.start} (a binary file?)"
        ) from None


def _parse_yaml(text: str, path: Path) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise UserError(f"{path}: not valid YAML{where}: {problem}") from None
    except RecursionError:
        raise UserError(f"{path}: not valid YAML: nested too deeply") from None


def _kind(value: Any) -> str:
    return "nothing (empty file)" if value is None else type(value).__name__
