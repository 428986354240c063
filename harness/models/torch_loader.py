"""Load a user's torch model file: TorchScript (.pt/.ts, torch.jit.load) or torch.export (.pt2).

A missing or unreadable file is a UserError naming the path and what was expected. Such modules
are served as given; compression needs nn.Linear modules, which neither format keeps (a loaded
TorchScript module is a ScriptModule, a loaded .pt2 a GraphModule), so recipes refuse them.
"""

from __future__ import annotations

import logging
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import UserError
from harness.frameworks import TORCH

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

_EXPECTED = (
    "a TorchScript file (.pt/.ts, saved with torch.jit.save) or a torch.export file (.pt2, torch.export.save)"
)


@dataclass
class LoadedTorchModel:
    """A user model loaded on CPU in eval mode, and the format it came in."""

    module: nn.Module
    path: Path
    format: str  # "torchscript" | "torch.export"


def load_torch_model(path: str | Path) -> LoadedTorchModel:
    """Load `path` according to its suffix; UserError if it is missing, of another kind, or unreadable."""
    path = Path(path)
    fmt = TORCH.user_formats.get(path.suffix)  # "torchscript" or "torch.export"
    if fmt is None:
        raise UserError(f"model file {path}: unsupported suffix {path.suffix!r}; expected {_EXPECTED}")
    if not path.is_file():
        raise UserError(f"model file {path} does not exist; expected {_EXPECTED}")
    try:
        module = load_torchscript(path) if fmt == "torchscript" else load_exported_program(path)
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = (
            "expected a TorchScript archive from torch.jit.save (a torch.save'd state_dict or pickled "
            "module is not supported)"
            if fmt == "torchscript"
            else "expected an ExportedProgram saved with torch.export.save"
        )
        raise UserError(f"model file {path} could not be loaded as {fmt}: {detail}; {hint}") from None
    return LoadedTorchModel(module=module, path=path, format=fmt)


def load_torchscript(path: Path) -> Any:
    import torch

    with warnings.catch_warnings():
        # torch 2.13 deprecates TorchScript; user files in that format are still supported on purpose
        warnings.filterwarnings("ignore", r".*torch\.jit\.load.* is deprecated", DeprecationWarning)
        module = torch.jit.load(str(path), map_location="cpu")
    module.eval()
    return module


def load_exported_program(path: Path) -> Any:
    import torch

    if not zipfile.is_zipfile(path):
        raise ValueError("not a zip archive, as torch.export.save writes")
    # torch logs a traceback before its own fallback; the error we raise already says what failed
    export_log = logging.getLogger("torch.export")
    level = export_log.level
    export_log.setLevel(logging.ERROR)
    try:
        return torch.export.load(str(path)).module()
    finally:
        export_log.setLevel(level)


def check_classifier(module: Any, path: Path, x: np.ndarray, num_classes: int) -> None:
    """UserError unless `module` maps a batch of one and a full batch of `x` to (n, num_classes) scores."""
    import torch

    for batch in (x[:1], x):
        try:
            with torch.inference_mode():
                out = module(torch.from_numpy(batch.copy()))
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(
                f"model file {path} failed on a batch of {len(batch)} float32 inputs of shape "
                f"{list(batch.shape[1:])}: {first} (export it with a dynamic batch dimension)"
            ) from None
        shape = tuple(getattr(out, "shape", ()))
        if shape != (len(batch), num_classes):
            raise UserError(
                f"model file {path} returned {type(out).__name__} of shape {list(shape)} for a batch of "
                f"{len(batch)}; expected one row of {num_classes} class scores per input"
            )
