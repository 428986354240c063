"""Name -> "module:Class" registries that import their entries on first use.

Keeping the table as strings lets `harness validate` and `harness list` work without importing
torch or TensorFlow; third parties add entries through the entry point group of each registry.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Any

from harness.errors import UserError


class Registry:
    """A lazily importing table of named implementations."""

    def __init__(self, kind: str, entries: dict[str, str], entry_point_group: str) -> None:
        self.kind = kind
        self._entries = dict(entries)
        self._group = entry_point_group
        self._plugins_loaded = False

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=self._group):
            self._entries.setdefault(ep.name, ep.value)

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def target(self, name: str) -> str:
        """The "module:Class" string for `name`, without importing it."""
        self._load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(self.names())
            raise UserError(f"unknown {self.kind} {name!r}; expected one of: {known}") from None

    def resolve(self, name: str) -> Any:
        """Import and return the implementation registered as `name`."""
        module_name, _, attr = self.target(name).partition(":")
        module = importlib.import_module(module_name)
        return getattr(module, attr)
