"""Serving targets, looked up by name; implementations are imported on first use.

Third parties add targets through the `harness.targets` entry point group.
"""

from __future__ import annotations

from harness.registry import Registry

TARGETS = Registry(
    "serving target",
    {
        "torchserve": "harness.serving.torchserve:TorchServeTarget",
        "tfserving": "harness.serving.tfserving:TfServingTarget",
        "inprocess": "harness.serving.inprocess:InProcessTarget",
    },
    "harness.targets",
)

# Parameter models of `serving.options` per target, kept apart from the targets so that
# `harness validate` checks options without importing a server's dependencies.
TARGET_OPTIONS: dict[str, str] = {
    "torchserve": "harness.serving.torchserve_config:TorchServeOptions",
    "tfserving": "harness.serving.tfserving_config:TfServingOptions",
    "inprocess": "harness.serving.inprocess:InProcessOptions",
}

__all__ = ["TARGETS", "TARGET_OPTIONS"]
