"""Errors that stop a run or a command: bad input and run failures, both exit 2.

The whole exit-code table (0 pass, 1 regression, 2 bad input or broken run, 3 inconclusive) is
`harness.results.Outcome`; a regression or an inconclusive run is an outcome, not an exception.
"""

from __future__ import annotations

from pathlib import Path


class HarnessError(Exception):
    """Base class for every error the harness reports to the user as one line."""

    exit_code = 2


class UserError(HarnessError):
    """Bad input (scenario, model file, CLI arguments): one line, exit 2, no traceback."""


class RunError(HarnessError):
    """The run itself failed (server did not start, load generator crashed): exit 2.

    The message is one line. `log` names the file to read and `log_tail` keeps its last lines for
    the report, so the terminal gets one line and the report gets the detail.
    """

    def __init__(self, message: str, *, log: str | Path | None = None, log_tail: str = "") -> None:
        super().__init__(message)
        self.log = str(log) if log else ""
        self.log_tail = log_tail


class RunInterrupted(KeyboardInterrupt):
    """An interrupted run, after its run folder was written: `report` is its index.html."""

    def __init__(self, message: str, report: Path) -> None:
        super().__init__(message)
        self.report = report


def first_line(exc: BaseException | str) -> str:
    """The first non-empty line of an error, for one-line messages."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else (type(exc).__name__ if isinstance(exc, BaseException) else "")
