"""What `harness run --history DIR --testbed LABEL --acks FILE` asks for, passed to the run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class HistoryOptions:
    """Append the run to `directory`'s store under `testbed` (default: CPU model and cores), and
    find change points with the acknowledgements in `acks` (default: ./perf-acks.yaml if present)."""

    directory: Path
    testbed: str | None = None
    acks: Path | None = None
