"""torch.half: weights and activations in bfloat16 or float16, float32 at the model's boundary.

The model's parameters and buffers are converted to the half dtype and it is wrapped so that its
float inputs are cast to that dtype on the way in and its float outputs back to float32 on the way
out (integer inputs such as token ids pass untouched). The variant therefore takes and returns
exactly what the float model did and serves through every target unchanged, while every layer
inside computes in the half dtype. The wrapper exports to .pt2 with the casts in the graph.

Whether this is faster depends on the CPU: oneDNN has native bfloat16 kernels on CPUs with
avx512_bf16 or amx_bf16 (float16: avx512_fp16 or amx_fp16); elsewhere the half values are
converted to float32 around each kernel and the variant is usually slower than float32, though
half the size. The report says which case this CPU is.
"""

from __future__ import annotations

import inspect
import keyword
import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from harness.compression.base import Recipe, RecipeContext, StepReport
from harness.compression.params import TorchHalfParams
from harness.compression.torch.program import is_pt2e_quantized
from harness.compression.torch.stats import is_quantized, refuse_torchscript, sparsity_stats
from harness.data.tensors import TensorSpec
from harness.errors import RunError, UserError
from harness.models.torch_io import model_outputs

if TYPE_CHECKING:
    import torch
    from torch import nn

# /proc/cpuinfo flags (x86 "flags", aarch64 "Features") that mean native arithmetic in the dtype
NATIVE_FLAGS: dict[str, tuple[str, ...]] = {
    "bfloat16": ("avx512_bf16", "amx_bf16", "bf16"),
    "float16": ("avx512_fp16", "amx_fp16", "asimdhp"),
}
CHECK_ROWS = 64  # test examples the half model is compared with the float model on


def half_precision(module: nn.Module, dtype: torch.dtype, inputs: tuple[TensorSpec, ...]) -> nn.Module:
    """`module` converted in place to `dtype` and wrapped: float32 in, float32 out.

    torch.export binds the example inputs to the forward's parameters, so the wrapper's forward
    is given one named parameter per model input (a class made for this model) rather than *args.
    """
    import torch

    class HalfPrecision(torch.nn.Module):
        """The wrapped model computing in `compute_dtype`, float32 at its inputs and outputs."""

        def __init__(self, inner: nn.Module, compute_dtype: torch.dtype) -> None:
            super().__init__()
            self.inner = inner.to(compute_dtype)
            self.compute_dtype = compute_dtype

        def forward(self, *args: torch.Tensor) -> Any:
            cast = [t.to(self.compute_dtype) if t.is_floating_point() else t for t in args]
            return _to_float32(self.inner(*cast))

    names = [_parameter_name(spec.name, i) for i, spec in enumerate(inputs)]
    if len(set(names)) < len(names):
        names = [f"input_{i}" for i in range(len(inputs))]
    parameter = inspect.Parameter
    kind = parameter.POSITIONAL_OR_KEYWORD
    forward = HalfPrecision.forward
    signature = inspect.Signature([parameter("self", kind), *(parameter(n, kind) for n in names)])

    def named_forward(self: Any, *args: Any) -> Any:
        return forward(self, *args)

    named_forward.__signature__ = signature  # type: ignore[attr-defined]
    cls = type("HalfPrecision", (HalfPrecision,), {"forward": named_forward})
    return cls(module, dtype)


def _to_float32(out: Any) -> Any:
    """The model's output(s) with every floating tensor cast to float32, structure kept."""
    import torch

    if isinstance(out, torch.Tensor):
        return out.float() if out.is_floating_point() else out
    if isinstance(out, dict):
        return {key: _to_float32(value) for key, value in out.items()}
    if isinstance(out, (list, tuple)):
        return type(out)(_to_float32(value) for value in out)
    return out


def _parameter_name(name: str, index: int) -> str:
    """The input's name as the wrapper's forward parameter, where it is a valid one."""
    usable = name.isidentifier() and not keyword.iskeyword(name) and name != "self"
    return name if usable else f"input_{index}"


class TorchHalfRecipe(Recipe):
    """Run the whole model in bfloat16 or float16, casting float32 inputs in and outputs out."""

    name: ClassVar[str] = "torch.half"
    framework: ClassVar[str] = "torch"
    params_model = TorchHalfParams
    params: TorchHalfParams

    def apply(self, model: Any, context: RecipeContext | None = None) -> tuple[Any, StepReport]:
        import torch

        refuse_torchscript(model, self.name)
        if not isinstance(model, torch.nn.Module):
            raise UserError(f"{self.name} needs a torch module, got {type(model).__name__}")
        if is_pt2e_quantized(model) or any(is_quantized(p) for _, p in model.named_parameters()):
            raise UserError(f"{self.name}: the weights are quantized; put torch.half instead of torch.int8")
        floats = [p for p in model.parameters() if p.is_floating_point()]
        if not floats:
            raise UserError(f"{self.name}: {type(model).__name__} has no float weights to convert")
        if any(p.dtype in (torch.float16, torch.bfloat16) for p in floats):
            raise UserError(f"{self.name}: the weights are already half precision (torch.half twice?)")
        inputs = _inputs(context, self.name)
        assert context is not None
        check = context.data.test.head(CHECK_ROWS).inputs
        before = model_outputs(model, check, inputs)
        start = time.perf_counter()
        dtype = getattr(torch, self.params.dtype)
        half = half_precision(model, dtype, inputs)
        seconds = time.perf_counter() - start

        fast, found = cpu_fast_path(self.params.dtype)
        converted = sum(p.numel() for p in half.parameters() if p.dtype == dtype)
        details: dict[str, Any] = {
            "dtype": self.params.dtype,
            "converted_params": converted,
            "cpu_native_flags": found,
            "cpu_fast_path": fast,
            "onednn_kernels": onednn_supports(self.params.dtype),
        }
        notes = [
            f"weights, buffers and activations in {self.params.dtype} ({converted:,} parameters); float "
            "inputs cast to it on the way in, outputs cast to float32 on the way out"
        ]
        after = model_outputs(half, check, inputs)
        details["max_abs_output_difference"] = float(np.abs(after - before).max())
        details["checked_examples"] = len(before)
        if fast:
            notes.append(f"this CPU has native {self.params.dtype} arithmetic ({', '.join(found)})")
        else:
            flags = " or ".join(NATIVE_FLAGS[self.params.dtype][:2])
            notes.append(
                f"this CPU has no fast path for {self.params.dtype} (no {flags}): its kernels convert to "
                "float32 and back, so expect this variant to be slower than float32; it is half the size"
            )
        stats = sparsity_stats(half)
        return half, StepReport(
            recipe=self.name,
            params=self.params.model_dump(),
            seconds=seconds,
            sparsity=stats["sparsity"],
            sparsity_all_params=stats["sparsity_all_params"],
            notes=notes,
            details=details,
        )


def _inputs(context: RecipeContext | None, recipe: str) -> tuple[TensorSpec, ...]:
    """The model's inputs in call order: the wrapper takes the same ones."""
    if context is None:
        raise RunError(f"{recipe} wraps the model for its inputs: call it with a RecipeContext")
    return context.signature.inputs if context.signature is not None else context.data.inputs


def cpu_fast_path(dtype: str) -> tuple[bool, list[str]]:
    """(whether this CPU computes natively in `dtype`, the CPU flags that say so)."""
    flags = cpu_flags()
    found = [flag for flag in NATIVE_FLAGS[dtype] if flag in flags]
    return bool(found) and onednn_supports(dtype), found


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU feature flags of the first processor listed; empty where there is no /proc/cpuinfo."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def onednn_supports(dtype: str) -> bool:
    """Whether torch's oneDNN build runs `dtype` kernels on this CPU (False off x86/arm64)."""
    import torch

    if not torch.backends.mkldnn.is_available() or platform.machine().lower() not in (
        "x86_64",
        "amd64",
        "aarch64",
        "arm64",
    ):
        return False
    check = (
        torch.ops.mkldnn._is_mkldnn_bf16_supported
        if dtype == "bfloat16"
        else torch.ops.mkldnn._is_mkldnn_fp16_supported
    )
    try:
        return bool(check())
    except (AttributeError, RuntimeError):
        return False
