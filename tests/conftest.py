"""Shared fixtures: paths and a helper to write scenario files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.errors import UserError
from harness.scenario.loader import load_scenario

ROOT = Path(__file__).resolve().parents[1]


def scenario_dict(**overrides: Any) -> dict[str, Any]:
    """A small valid scenario as a dict; tests override pieces of it."""
    data: dict[str, Any] = {
        "name": "tiny",
        "model": {"framework": "torch", "source": "builtin:mlp"},
        "variants": [
            {
                "name": "pruned-int8",
                "steps": [
                    {"recipe": "torch.prune", "params": {"amount": 0.5, "scope": "global"}},
                    {"recipe": "torch.int8", "params": {"mode": "weight_only"}},
                ],
            },
        ],
        "serving": {"target": "inprocess", "workers": 1},
        # validity is judged (and reported) but its stability limit is loose: these scenarios test
        # the pipeline, and 0.5 s windows on a shared 2-core machine are rarely within 10%
        "load": {"users": 2, "warmup_s": 0.5, "measure_s": 1.5, "validity": {"max_spread": 5.0}},
        "gates": {"latency_p95_ms": "+200%", "accuracy": "-0.01 abs", "error_rate": 0},
    }
    data.update(overrides)
    return data


@pytest.fixture
def write_scenario(tmp_path: Path):
    def write(data: dict[str, Any], name: str = "scenario.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


def load_error(path: Path) -> str:
    """The one-line UserError that loading the scenario at `path` gives, checked to name the file."""
    with pytest.raises(UserError) as info:
        load_scenario(path)
    message = str(info.value)
    assert "\n" not in message, "errors must be one line"
    assert message.startswith(str(path)), "errors must name the file"
    return message
