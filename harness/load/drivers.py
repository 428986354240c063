"""The load driver a scenario's `load.generator` names."""

from __future__ import annotations

import importlib

from harness.load.locust_driver import LocustDriver
from harness.scenario.load_spec import LoadSpec

# "module:Class"; imported on use, so a run with Locust never loads the native engine's module
GENERATORS = {
    "locust": "harness.load.locust_driver:LocustDriver",
    "native": "harness.load.native_driver:NativeDriver",
}


def http_driver(load: LoadSpec) -> LocustDriver:
    """A new driver for `load.generator` (both share LocustDriver's run and result)."""
    module, _, name = GENERATORS[load.generator].partition(":")
    driver: LocustDriver = getattr(importlib.import_module(module), name)()
    return driver
