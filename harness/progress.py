"""Stage progress for long runs: a rich spinner on a terminal, plain lines elsewhere, nothing in tests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol


class Progress(Protocol):
    def stage(self, label: str) -> AbstractContextManager[None]: ...  # pragma: no cover - protocol

    def note(self, message: str) -> None: ...  # pragma: no cover - protocol


class SilentProgress:
    """Reports nothing; what api callers get by default."""

    @contextmanager
    def stage(self, label: str) -> Iterator[None]:
        yield

    def note(self, message: str) -> None:
        pass


class ConsoleProgress:
    """A spinner per stage on a terminal (plain lines when output is not a terminal), with durations."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)
        if not self.console.is_terminal:
            # CI logs are not 80 columns wide; the summary table would truncate its headers
            self.console.width = 120

    @contextmanager
    def stage(self, label: str) -> Iterator[None]:
        start = time.perf_counter()
        if self.console.is_terminal:
            with self.console.status(label):
                yield
        else:
            yield
        self.console.print(f"[green]done[/] {label} [dim]({time.perf_counter() - start:.1f}s)[/]")

    def note(self, message: str) -> None:
        self.console.print(f"[yellow]note[/] {message}")
