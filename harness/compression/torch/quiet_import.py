"""Import torchao without its import-time log noise.

On a CPU-only machine torchao logs that its CUDA kernels (mxfp8, cutlass) cannot load, and torch's
pytree logs a deprecation about torchao's Enum registration. Neither affects CPU int8, and both
would otherwise land in every `harness run` output.
"""

from __future__ import annotations

import logging
from types import ModuleType

_NOISY_LOGGERS = ("torchao", "torch.utils._pytree")


def import_torchao() -> ModuleType:
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        import torchao

        return torchao
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
