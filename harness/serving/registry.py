"""Serving targets, looked up by name; implementations are imported on first use.

Third parties add targets through the `harness.targets` entry point group.
"""

from __future__ import annotations

from harness.registry import Registry

TARGETS = Registry(
    "serving target",
    {
        "torchserve": "harness.serving.torchserve:TorchServeTarget",
        "inprocess": "harness.serving.inprocess:InProcessTarget",
    },
    "harness.targets",
)

__all__ = ["TARGETS"]
