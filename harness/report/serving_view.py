"""The report's view of how each variant was served: the serving target's facts per measurement
(`Measurement.serving`, what the target's describe() said after teardown), with the facts every
measurement shares listed once, paths shown relative to the run folder and the size of the server
logs. Numbers are formatted by what their name says they are (seconds, bytes, catalog metrics).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

from harness.metrics.catalog import METRICS, format_bytes, format_value
from harness.report.evidence import measurement_label
from harness.results import RunResult

LOG_BYTES = "log_bytes"  # Measurement.serving: total bytes of the server logs, or bytes per log


def serving_panel(result: RunResult) -> dict[str, Any]:
    """What the template's serving section shows: `shared`, the (key, text) facts every measurement
    has in common; `columns`, the timing facts that differ (startup_s, ...); `entries`, one row per
    measurement with those timings, its server log size and its other own facts (ports, files);
    `log_total`, the size of every server log of the run ('' when no target reported sizes)."""
    entries = [
        (variant.name, measurement_label(m.number) if len(variant.measurements) > 1 else "", m.serving)
        for variant in result.variants
        for m in variant.measurements
        if m.serving
    ]
    if not entries:
        target = dict(flatten(result.target))
        return {"shared": _texts(target, result.run_dir), "columns": [], "entries": [], "log_total": ""}
    flat = [dict(flatten({k: v for k, v in facts.items() if k != LOG_BYTES})) for _, _, facts in entries]
    keys = list(dict.fromkeys(k for facts in flat for k in facts))
    if len(flat) == 1:
        shared_keys = [k for k in keys if not _per_run(k)]
    else:
        shared_keys = [k for k in keys if all(k in f and f[k] == flat[0][k] for f in flat)]
    columns = [k for k in keys if k not in shared_keys and _is_timing(k)]
    views, total = [], 0
    for (name, label, facts), own in zip(entries, flat, strict=True):
        sizes = _log_sizes(facts.get(LOG_BYTES))
        total += sum(sizes.values())
        rest = {k: v for k, v in own.items() if k not in shared_keys and k not in columns}
        views.append(
            {
                "name": name,
                "measurement": label,
                "times": [fact_text(k, own.get(k), result.run_dir) for k in columns],
                "log_size": format_bytes(sum(sizes.values())) if sizes else "-",
                "facts": [(k, _with_size(k, text, sizes)) for k, text in _texts(rest, result.run_dir)],
            }
        )
    has_sizes = any(_log_sizes(facts.get(LOG_BYTES)) for _, _, facts in entries)
    return {
        "shared": _texts({k: flat[0][k] for k in shared_keys}, result.run_dir),
        "columns": columns,
        "entries": views,
        "log_total": format_bytes(total) if has_sizes else "",
    }


def _is_timing(key: str) -> bool:
    return key.rsplit(".", 1)[-1].endswith(("_s", "_seconds"))


def _per_run(key: str) -> bool:
    """Facts that belong to one measurement (its timings, ports, files) even when it is the only one."""
    leaf = key.rsplit(".", 1)[-1]
    return key.startswith(("logs.", "ports.")) or leaf.endswith(("_s", "_path", "_url")) or leaf in ("logs",)


def _log_sizes(value: Any) -> dict[str, int]:
    """{log name: bytes} from `serving["log_bytes"]` (a total comes back as {"": total})."""
    if isinstance(value, bool):
        return {}
    if isinstance(value, int | float) and math.isfinite(value):
        return {"": int(value)}
    if isinstance(value, Mapping):
        return {
            str(k): int(v) for k, v in value.items() if isinstance(v, int | float) and not isinstance(v, bool)
        }
    return {}


def _with_size(key: str, text: str, sizes: dict[str, int]) -> str:
    name = key.removeprefix("logs.")
    if key.startswith("logs.") and name in sizes:
        return f"{text} ({format_bytes(sizes[name])})"
    return text


def flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts as dotted keys ('logs.console'), leaves kept as they are."""
    rows: list[tuple[str, Any]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            rows += flatten(value, f"{name}.")
        else:
            rows.append((name, value))
    return rows


def _texts(facts: Mapping[str, Any], run_dir: str) -> list[tuple[str, str]]:
    return [(key, fact_text(key, value, run_dir)) for key, value in facts.items()]


def fact_text(key: str, value: Any, run_dir: str = "") -> str:
    """A fact as a short string: paths inside the run folder relative to it, seconds as '5.92 s',
    sizes in binary units, catalog metrics with their unit, other floats to four digits."""
    leaf = key.rsplit(".", 1)[-1]
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return "-"
        if leaf in METRICS:
            return format_value(leaf, value)
        if leaf.endswith(("_s", "_seconds")):
            return f"{value:.2f} s"
        if leaf.endswith("_ms"):
            return f"{value:.2f} ms" if isinstance(value, float) else f"{value} ms"
        if leaf.endswith("_bytes"):
            return format_bytes(value)
        return str(value) if isinstance(value, int) else f"{value:.4g}"
    if isinstance(value, str):
        return relative_path(value, run_dir)
    if isinstance(value, list | tuple):
        return ", ".join(fact_text(key, v, run_dir) for v in value) if value else "-"
    return json.dumps(value, default=str, sort_keys=True)


def relative_path(text: str, run_dir: str) -> str:
    """`text` relative to the run folder when it is a path inside it, else unchanged."""
    if not run_dir or not os.path.isabs(text) or not os.path.isabs(run_dir):
        return text
    root = os.path.normpath(run_dir)
    path = os.path.normpath(text)
    if path == root:
        return "."
    if path.startswith(root + os.sep):
        return os.path.relpath(path, root)
    return text
