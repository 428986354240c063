"""Facts about the wire formats that option models check without numpy: the size above which
requests go binary, the request template's placeholders and the shape of an output path.

The encoders themselves are in payloads.py; this module stays light because `harness validate`
imports the option models, and those import it.
"""

from __future__ import annotations

import re

JSON = "application/json"
NPY = "application/x-npy"
NPZ = "application/x-npz"
# above this many numbers in one example (any input), `encoding: auto` sends binary: JSON costs
# about 20 bytes per float32 and the server parses every number (a 224x224x3 image: 150,528)
LARGE_EXAMPLE_NUMBERS = 1000
PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
# a dotted path of object keys and list indexes: "predictions", "outputs.0.probs"
OUTPUT_PATH_PATTERN = r"^[^.\s]+(\.[^.\s]+)*$"


def template_placeholders(template: str) -> list[str]:
    """The placeholder names in `template`, in order: 'instances', 'inputs' or 'inputs.NAME'."""
    return [match.group(1) for match in PLACEHOLDER.finditer(template)]


def template_problem(template: str) -> str | None:
    """What is wrong with a request template's placeholders (input names are checked later), or None."""
    names = template_placeholders(template)
    if not names:
        return "it has no placeholder: put {{instances}}, {{inputs}} or {{inputs.NAME}} where the data goes"
    for name in names:
        if name not in ("instances", "inputs") and not name.startswith("inputs."):
            return (
                f"unknown placeholder {{{{{name}}}}}; expected {{{{instances}}}}, {{{{inputs}}}} "
                "or {{inputs.NAME}}"
            )
    return None
