"""Pydantic validation errors as one line: 'file: key.path: what is expected (got X)'."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from harness.errors import UserError

ModelT = TypeVar("ModelT", bound=BaseModel)

# pydantic adds the member type to the location of an error inside a union (users.int, users.list[int])
_UNION_TAG = re.compile(r"^(int|float|str|bool|none|(list|dict|function-\w+)\[.*\])$")
_MAX_SHOWN = 80  # characters of a bad value quoted in a message


def validated(model: type[ModelT], data: Any, path: Path, prefix: str = "") -> ModelT:
    """`model` validated from `data`; UserError naming the file and the first bad key otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        # a misspelt key also shows up as a missing one: name the typo, it is the cause
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        raise UserError(f"{path}: {describe(first, prefix)}") from None


def describe(error: Any, prefix: str = "") -> str:
    """One pydantic error as 'key.path: what is expected (got X)'."""
    key = prefix + _key_path(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{key}: unknown key (not part of the scenario schema)"
    if kind == "missing":
        return f"{key}: required key is missing"
    message = error["msg"]
    for noise in ("Value error, ", "Input should be "):
        message = message.removeprefix(noise)
    got = error.get("input")
    suffix = ""
    if not isinstance(got, dict | list):
        shown = repr(got)
        suffix = f" (got {shown if len(shown) <= _MAX_SHOWN else shown[: _MAX_SHOWN - 3] + '...'})"
    return f"{key or '<top level>'}: expected {message[0].lower()}{message[1:]}{suffix}"


def _key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, str) and _UNION_TAG.match(part):
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
