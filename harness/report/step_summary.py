"""Publish a Markdown summary on the GitHub Actions job page ($GITHUB_STEP_SUMMARY).

GitHub shows what a step appends to the file named by GITHUB_STEP_SUMMARY on the job's page, and
refuses the whole step summary when it passes 1 MiB. Several summaries may be appended in one step
(`harness run` of two scenarios), so each append is cut to what leaves the file under
STEP_SUMMARY_BUDGET, a margin below GitHub's cap, rather than risk losing them all. Outside
GitHub Actions the variable is unset and nothing happens.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"
GITHUB_LIMIT_BYTES = 1024 * 1024  # GitHub's cap per step
STEP_SUMMARY_BUDGET = 512 * 1024  # what the harness lets the file grow to: well under the cap
TRUNCATED_NOTE = (
    "\n\n… the summary was cut here to stay under GitHub's step summary limit; the report has it all.\n"
)

_log = logging.getLogger(__name__)


def publish_step_summary(markdown: str, env: Mapping[str, str] | None = None) -> Path | None:
    """Append `markdown` to $GITHUB_STEP_SUMMARY and return that path; None when the variable is
    unset or empty, or the file could not be written (logged: a run's outcome must not depend on
    the job page). Text that would take the file past STEP_SUMMARY_BUDGET is cut at a line break."""
    env = os.environ if env is None else env
    name = env.get(STEP_SUMMARY_ENV, "")
    if not name:
        return None
    path = Path(name)
    try:
        used = path.stat().st_size if path.exists() else 0
        text = _fit(markdown, STEP_SUMMARY_BUDGET - used)
        if not text:
            _log.warning("%s is full (%d bytes); the summary was not added", path, used)
            return None
        with path.open("a", encoding="utf-8") as fh:
            # a summary appended after another must start on its own line and paragraph
            fh.write(("\n" if used else "") + text)
    except OSError as exc:
        _log.warning("could not write the step summary %s: %s", path, exc)
        return None
    return path


def _fit(markdown: str, budget: int) -> str:
    """`markdown` ending with a newline if it fits in `budget` bytes (plus a separator); else its
    longest prefix of whole lines that fits together with TRUNCATED_NOTE; '' if not even that."""
    text = markdown if markdown.endswith("\n") else markdown + "\n"
    room = budget - 1  # the separating newline
    data = text.encode()
    if len(data) <= room:
        return text
    room -= len(TRUNCATED_NOTE.encode())
    if room <= 0:
        return ""
    head = data[:room].decode(errors="ignore")
    cut = head.rfind("\n")
    head = head[:cut] if cut > 0 else head
    return head + TRUNCATED_NOTE if head else ""
