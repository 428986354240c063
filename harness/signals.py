"""Termination signals become KeyboardInterrupt, so `finally` blocks and context managers tear servers down.

Python's default for SIGTERM and SIGHUP is to die on the spot, skipping all cleanup: TorchServe's
Java and Locust run in their own sessions and would survive a cancelled CI job (GitHub Actions sends
SIGINT, then SIGTERM 7.5 s later, then SIGKILL). Both `harness run` and the pytest plugin use this.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

INTERRUPT_SIGNALS = (signal.SIGTERM, signal.SIGHUP)

_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"received {signal.Signals(signum).name}")


def install_interrupt_handlers() -> dict[signal.Signals, _Handler]:
    """Make SIGTERM and SIGHUP raise KeyboardInterrupt; return the handlers they replace.

    Does nothing outside the main thread, where Python cannot set signal handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, _raise_interrupt) for sig in INTERRUPT_SIGNALS}


def restore_handlers(previous: dict[signal.Signals, _Handler]) -> None:
    for sig, handler in previous.items():
        # None means the handler was not installed from Python; the default is the closest match
        signal.signal(sig, signal.SIG_DFL if handler is None else handler)


@contextmanager
def interrupts_unwind() -> Iterator[None]:
    """While the block runs, SIGTERM and SIGHUP raise KeyboardInterrupt; the old handlers come back after."""
    previous = install_interrupt_handlers()
    try:
        yield
    finally:
        restore_handlers(previous)
