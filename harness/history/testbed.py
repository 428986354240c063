"""Which machine a history series belongs to, and which commit a run measured.

A testbed id is part of the series key, so it must be stable from night to night on one machine
and readable in a chart title: a runner label when the user gives one, else "<cpu model> x<cores>".
It is deliberately coarser than the baseline fingerprint (which hashes library versions too): a
library upgrade must show up as a step inside one series, annotated, not start a new series.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

_SHA = re.compile(r"^[0-9a-f]{7,64}$")
GIT_TIMEOUT_S = 5.0


def testbed_id(environment: dict[str, Any], label: str | None) -> str:
    """The user's label (a runner label) when given and not blank, else "<cpu model> x<logical cores>"."""
    if label is not None and label.strip():
        return " ".join(label.split())
    cpu = " ".join(str(environment.get("cpu_model") or "unknown cpu").split())
    cores = environment.get("logical_cores")
    return f"{cpu} x{cores}" if cores else cpu


def current_commit(cwd: Path) -> str | None:
    """$GITHUB_SHA when set (CI checks out detached or shallow), else `git rev-parse HEAD` in `cwd`;
    None outside a git repository or without git. Never raises: a commit is an annotation only."""
    sha = os.environ.get("GITHUB_SHA", "").strip()
    if sha:
        return sha
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    out = done.stdout.strip()
    return out if done.returncode == 0 and _SHA.match(out) else None
