"""Option values that end up in a server's config file or command line: no control characters.

A line break in `vmargs` would start a new key in TorchServe's config.properties (seen: a
`metrics_address` on 0.0.0.0 while the report said 127.0.0.1). Checked twice: in the option
models, so that `harness validate` refuses it naming the key, and again where a file is written.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

from harness.errors import UserError

# C0 controls, DEL, C1 controls (NEL among them) and the Unicode line and paragraph separators
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def control_char_problem(value: str) -> str | None:
    """What is wrong with `value` (its first control character and where), or None."""
    match = _CONTROL.search(value)
    if match is None:
        return None
    return f"found {match.group()!r} at position {match.start()}"


def _refuse_control_chars(value: str) -> str:
    problem = control_char_problem(value)
    if problem:
        raise ValueError(
            f"text without control characters such as line breaks ({problem}): "
            "it would change the server's config file"
        )
    return value


ConfigText = Annotated[str, AfterValidator(_refuse_control_chars)]
"""A str option that is written into a config file or argv verbatim."""


def check_config_value(key: str, value: str) -> str:
    """`value` unchanged, or UserError naming `key`: the last guard before a config file is written."""
    problem = control_char_problem(value)
    if problem:
        raise UserError(f"{key}: refusing to write a control character into a config file ({problem})")
    return value
