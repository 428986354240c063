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

# One line per built-in target: what `harness list` prints and the JSON Schema's `serving.target`
# description quotes (one source).
TARGET_DESCRIPTIONS: dict[str, str] = {
    "torchserve": "TorchServe (Java) launched on free loopback ports, serving the torch.export program.",
    "tfserving": "TensorFlow Serving (binary, docker or a remote server) serving SavedModel or TFLite.",
    "inprocess": "No server: the exported artifact called from a thread pool in this process.",
}

# Parameter models of `serving.options` per target, kept apart from the targets so that
# `harness validate` checks options without importing a server's dependencies.
TARGET_OPTIONS: dict[str, str] = {
    "torchserve": "harness.serving.torchserve_config:TorchServeOptions",
    "tfserving": "harness.serving.tfserving_config:TfServingOptions",
    "inprocess": "harness.serving.inprocess:InProcessOptions",
}

__all__ = ["TARGETS", "TARGET_DESCRIPTIONS", "TARGET_OPTIONS"]
