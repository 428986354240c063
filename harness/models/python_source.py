"""Import a user's `pkg.module:function` with the scenario's folder first on sys.path, and call it.

Used for `model.source: python:...` factories (torch and TensorFlow) and python data functions.
Importing runs the user's code, as pytest does with a conftest.py; that is the point of the
feature, and the scenario is the user's own file. Framework-free: what the function must return
is checked by the caller, which knows what it expects.

sys.path is restored afterwards so one scenario's folder does not shadow another's modules. A
module that the scenario's folder provides but that was imported earlier from somewhere else (two
scenarios each with a `models.py`) is imported again from this folder rather than reused.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import inspect
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from harness.errors import UserError

_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
_TARGET = re.compile(rf"^(?P<module>{_DOTTED}):(?P<attr>{_DOTTED})$")


def parse_target(target: str, where: str) -> tuple[str, str]:
    """('pkg.module', 'function') from 'pkg.module:function'; UserError naming `where` otherwise."""
    match = _TARGET.match(target.strip())
    if match is None:
        raise UserError(
            f"{where}: {target!r} is not 'pkg.module:function' (a module importable from the scenario's "
            "folder, a colon, then the name of a function in it)"
        )
    return match["module"], match["attr"]


def import_target(target: str, scenario_dir: Path, where: str) -> Callable[..., Any]:
    """The callable named by `target`; UserError (prefixed by `where`, e.g. 'model.source') if the
    module cannot be found or fails to import, or the attribute is missing or not callable."""
    module_name, attr = parse_target(target, where)
    module = import_module_from(module_name, Path(scenario_dir), where)
    value: Any = module
    for part in attr.split("."):
        if not hasattr(value, part):
            raise UserError(f"{where}: module {module_name!r} ({_origin(module)}) has no attribute {attr!r}")
        value = getattr(value, part)
    if not callable(value):
        raise UserError(f"{where}: {module_name}:{attr} is a {type(value).__name__}, not a function to call")
    return value


def call_target(function: Callable[..., Any], target: str, where: str) -> Any:
    """`function()` (called with no arguments); UserError if it needs arguments or raises."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # builtins and some C callables have no signature: just call
        signature = None
    if signature is not None:
        required = [
            name
            for name, p in signature.parameters.items()
            if p.default is inspect.Parameter.empty and p.kind not in _VARIADIC
        ]
        if required:
            raise UserError(
                f"{where}: {target} takes required arguments ({', '.join(required)}); it is called with "
                "none, so give them defaults"
            )
    try:
        return function()
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"{where}: {target} raised {_one_line(exc)}") from None


def load_target(target: str, scenario_dir: Path, where: str) -> Any:
    """Import `target` and return what calling it with no arguments returns."""
    return call_target(import_target(target, scenario_dir, where), target, where)


def import_module_from(module_name: str, scenario_dir: Path, where: str) -> ModuleType:
    """Import `module_name` with `scenario_dir` first on sys.path; UserError on any failure."""
    with _first_on_path(scenario_dir):
        _forget_shadowed(module_name, scenario_dir)
        try:
            return importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
                raise UserError(
                    f"{where}: no module named {exc.name!r} in {scenario_dir} (the scenario's folder) or "
                    "on sys.path"
                ) from None
            raise UserError(f"{where}: importing {module_name!r} failed: {_one_line(exc)}") from None
        except SyntaxError as exc:
            place = f"{exc.filename}:{exc.lineno}" if exc.filename else module_name
            raise UserError(f"{where}: syntax error in {place}: {exc.msg}") from None
        except Exception as exc:  # whatever the user's module raises at import time
            raise UserError(f"{where}: importing {module_name!r} raised {_one_line(exc)}") from None


@contextlib.contextmanager
def _first_on_path(folder: Path) -> Iterator[None]:
    entry = str(folder.resolve())
    sys.path.insert(0, entry)
    # a module file written since the last import (tests, a regenerated factory) must be found
    importlib.invalidate_caches()
    try:
        yield
    finally:
        # remove only our entry: paths the user's module added for its own imports stay
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def _forget_shadowed(module_name: str, folder: Path) -> None:
    """Drop cached modules of the top-level package `folder` provides but that came from elsewhere."""
    top = module_name.split(".", 1)[0]
    spec = importlib.machinery.PathFinder.find_spec(top, [str(folder.resolve())])
    cached = sys.modules.get(top)
    if spec is None or cached is None or _inside(cached, folder):
        return
    for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
        del sys.modules[name]


def _inside(module: ModuleType, folder: Path) -> bool:
    locations = [getattr(module, "__file__", None), *list(getattr(module, "__path__", []) or [])]
    root = folder.resolve()
    return any(location and Path(location).resolve().is_relative_to(root) for location in locations)


def _origin(module: ModuleType) -> str:
    return str(getattr(module, "__file__", None) or module.__name__)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
