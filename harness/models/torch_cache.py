"""A trained torch built-in in the model cache: its state_dict and training facts in one file.

The file is `torch.save({"state_dict": ..., "meta": {...}})`, written and read through
`harness.models.cache` so its sha256 sidecar is checked before torch sees a byte.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.models.cache import CacheIntegrityError, read_verified, write_verified

if TYPE_CHECKING:
    from torch import nn

logger = logging.getLogger(__name__)


def read_module(path: Path, build: Callable[[], nn.Module]) -> tuple[nn.Module, float] | None:
    """(module in eval mode, train_seconds) from the cache; None if absent, CacheIntegrityError if
    the file is damaged or does not fit the module `build` makes."""
    import torch

    data = read_verified(path)
    if data is None:
        return None
    try:
        # the verified bytes are loaded, not the path: a file replaced meanwhile is not read unchecked
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        module = build()
        module.load_state_dict(payload["state_dict"])
        seconds = float(payload["meta"]["train_seconds"])
    except Exception as exc:  # a foreign file with a matching checksum is retrained over too
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CacheIntegrityError(f"model cache {path} does not load ({detail})") from None
    module.eval()
    module.requires_grad_(False)
    return module, seconds


def write_module(path: Path, module: nn.Module, meta: dict[str, Any]) -> None:
    """Cache `module`'s weights with `meta` (which holds "train_seconds"); a cache that cannot be
    written is a warning, not an error: it only costs a retrain next time."""
    import torch

    buffer = io.BytesIO()
    torch.save({"state_dict": module.state_dict(), "meta": meta}, buffer)
    try:
        write_verified(path, buffer.getvalue())
    except OSError as exc:
        logger.warning("could not write model cache %s: %s", path, exc)
