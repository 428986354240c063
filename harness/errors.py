"""Errors that map to exit codes: bad input and run failures exit 2, regressions exit 1."""

from __future__ import annotations


class HarnessError(Exception):
    """Base class for every error the harness reports to the user as one line."""

    exit_code = 2


class UserError(HarnessError):
    """Bad input (scenario, model file, CLI arguments): one line, exit 2, no traceback."""


class RunError(HarnessError):
    """The run itself failed (server did not start, load generator crashed): exit 2."""


class RegressionFound(HarnessError):
    """At least one gate failed against the baseline: exit 1."""

    exit_code = 1
