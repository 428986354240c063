"""Import torchao (and its PT2E quantizer) without its import-time log and warning noise.

On a CPU-only machine torchao logs that its CUDA kernels (mxfp8, cutlass) cannot load, and torch's
pytree logs a deprecation about torchao's Enum registration. Neither affects CPU int8, and both
would otherwise land in every `harness run` output.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from types import ModuleType
from typing import Any

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


@dataclass(frozen=True)
class Pt2eApi:
    """The torchao PT2E entry points torch.int8 uses."""

    prepare_pt2e: Any
    convert_pt2e: Any
    X86InductorQuantizer: Any
    get_default_x86_inductor_quantization_config: Any


def import_pt2e() -> Pt2eApi:
    """torchao's PT2E flow and x86 quantizer. Importing the quantizer imports torch._inductor, whose
    torch.utils.mkldnn defines TorchScript methods and so warns that torch.jit.script_method is
    deprecated: torch's own code at import time, which neither the harness nor the user can change."""
    import_torchao()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r".*torch\.jit\.script_method.* is deprecated", DeprecationWarning)
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
            X86InductorQuantizer,
            get_default_x86_inductor_quantization_config,
        )
    return Pt2eApi(
        prepare_pt2e, convert_pt2e, X86InductorQuantizer, get_default_x86_inductor_quantization_config
    )
