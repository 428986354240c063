"""Termination signals become KeyboardInterrupt, so `finally` blocks and context managers tear servers down.

Python's default for SIGTERM and SIGHUP is to die on the spot, skipping all cleanup: TorchServe's
Java and Locust run in their own sessions and would survive a cancelled CI job (GitHub Actions sends
SIGINT, then SIGTERM 7.5 s later, then SIGKILL). Both `harness run` and the pytest plugin use this.

Only the first signal raises. Once shutting down, further signals are absorbed: raised again, a
KeyboardInterrupt would cut teardown short or, landing after the CLI has caught the first one,
escape it and end the process by SIGINT (-2) instead of exit code 130. What a further signal
still does is hurry teardown: `teardown_hurried()` turns true and process stops skip their
grace wait and go straight to SIGKILL of the group. Once teardown is over, `ignore_interrupts()`
makes them SIG_IGN: at exit Python resets every handler written in Python to SIG_DFL, so a
signal in the last moments of shutdown would otherwise still end the process by that signal.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None

# Events, not bools: read from the main thread's handler and any thread that stops a process
_shutting_down = threading.Event()
_hurried = threading.Event()


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    if _shutting_down.is_set():
        _hurried.set()
        return
    _shutting_down.set()
    raise KeyboardInterrupt(f"received {signal.Signals(signum).name}")


def shutting_down() -> bool:
    """Whether an interrupt signal has arrived since the handlers were installed."""
    return _shutting_down.is_set()


def teardown_hurried() -> bool:
    """Whether a further signal arrived while shutting down: stops should not wait any longer."""
    return _hurried.is_set()


def _reset() -> None:
    _shutting_down.clear()
    _hurried.clear()


def install_interrupt_handlers() -> dict[signal.Signals, _Handler]:
    """Make SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt once; return the handlers they replace.

    Does nothing outside the main thread, where Python cannot set signal handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        return {}
    _reset()
    return {sig: signal.signal(sig, _raise_interrupt) for sig in INTERRUPT_SIGNALS}


def ignore_interrupts() -> None:
    """Ignore SIGINT, SIGTERM and SIGHUP from now on: for a process whose teardown is done and
    which is exiting because of an interrupt."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in INTERRUPT_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def restore_handlers(previous: dict[signal.Signals, _Handler]) -> None:
    """Put back the handlers `install_interrupt_handlers` replaced, unless shutting down.

    While shutting down the signals are ignored instead: the process is on its way out (pytest
    reporting the interrupt), and a restored default would end it by the signal.
    """
    if _shutting_down.is_set():
        ignore_interrupts()
        return
    for sig, handler in previous.items():
        # None means the handler was not installed from Python; the default is the closest match
        signal.signal(sig, signal.SIG_DFL if handler is None else handler)


@contextmanager
def interrupts_unwind() -> Iterator[None]:
    """While the block runs, SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt; the old handlers
    come back after, unless the block was interrupted."""
    previous = install_interrupt_handlers()
    try:
        yield
    finally:
        restore_handlers(previous)
