"""Facts about a torch model and its exported file: parameters, sparsity, size raw and gzipped.

Works on an nn.Module, a loaded ScriptModule and a loaded torch.export GraphModule alike, and on
quantized weights (torchao tensor subclasses and PT2E int8 buffers, counted through their
dequantized values), so the same numbers can be taken from the served file as from the in-memory
model.
"""

from __future__ import annotations

import gzip
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.compression.torch.program import graph_weights, is_graph_module, program_tensors
from harness.errors import UserError


def is_quantized(tensor: Any) -> bool:
    """True for torchao's quantized tensor subclasses (Int8Tensor, ...), False for plain tensors."""
    import torch

    return type(tensor) not in (torch.Tensor, torch.nn.Parameter) and hasattr(tensor, "dequantize")


def dense(tensor: Any) -> Any:
    """A plain float tensor with the values `tensor` represents (dequantized if quantized)."""
    return tensor.dequantize().detach() if is_quantized(tensor) else tensor.detach()


def refuse_torchscript(model: Any, recipe: str) -> None:
    """UserError if `model` is TorchScript: such files are served as given, never rewritten."""
    import torch

    if isinstance(model, torch.jit.ScriptModule):
        raise UserError(
            f"{recipe} cannot compress a TorchScript module (TorchScript files are served as given); "
            "give the model as a python: factory or a torch.export (.pt2) file"
        )


def layer_modules(model: Any) -> list[tuple[str, Any]]:
    """(name, module) of every nn.Linear and nn.Conv* of an nn.Module: the layers pruning targets."""
    import torch
    from torch import nn

    if not isinstance(model, nn.Module) or isinstance(model, torch.jit.ScriptModule):
        return []
    return [
        (name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear | nn.modules.conv._ConvNd)
    ]


def layer_weight_names(model: Any) -> set[str]:
    """Names (as `named_weights` gives them) of the linear/conv weights; empty for TorchScript,
    whose modules do not say what they are."""
    if is_graph_module(model):
        # torchao's int8 weights reach their linear through torchao ops, not aten.linear
        subclassed = {name for name, p in model.named_parameters() if is_quantized(p)}
        return {w.name for w in graph_weights(model)} | subclassed
    return {f"{name}.weight" if name else "weight" for name, _ in layer_modules(model)}


def linear_layers(model: Any) -> list[tuple[str, Any]]:
    """(name, module) of every nn.Linear in `model`, in definition order."""
    from torch import nn

    if not isinstance(model, nn.Module):
        return []
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]


def require_linear_layers(model: Any, recipe: str) -> list[tuple[str, Any]]:
    """The nn.Linear layers of an nn.Module that `recipe` applies to; UserError if there are none."""
    layers = linear_layers(model)
    if layers:
        return layers
    raise UserError(f"{recipe} needs nn.Linear layers to compress, but {type(model).__name__} contains none")


def named_weights(model: Any) -> Iterator[tuple[str, Any]]:
    """(name, float values) of every parameter: of an nn.Module or TorchScript module, or of a
    torch.export program including its PT2E int8 weights (dequantized)."""
    tensors = program_tensors(model) if is_graph_module(model) else model.named_parameters()
    for name, values in tensors:
        yield name, dense(values)


def param_count(model: Any) -> int:
    """Number of parameters (logical elements, so an int8 weight counts like the float one it replaces)."""
    return int(sum(values.numel() for _, values in named_weights(model)))


def sparsity_stats(model: Any) -> dict[str, Any]:
    """Zero fractions: over the linear/conv weights (what pruning targets; every weight of 2 or more
    dimensions for TorchScript, which does not say), over all parameters, and per such weight."""
    weight_zeros = weight_total = all_zeros = all_total = 0
    per_tensor: dict[str, float] = {}
    layers = layer_weight_names(model)
    for name, values in named_weights(model):
        zeros, total = int((values == 0).sum()), values.numel()
        all_zeros, all_total = all_zeros + zeros, all_total + total
        if (name in layers) if layers else values.ndim >= 2:
            weight_zeros, weight_total = weight_zeros + zeros, weight_total + total
            per_tensor[name] = round(zeros / total, 6) if total else 0.0
    return {
        "sparsity": weight_zeros / weight_total if weight_total else 0.0,
        "sparsity_all_params": all_zeros / all_total if all_total else 0.0,
        "per_tensor": per_tensor,
    }


def file_sizes(path: Path) -> tuple[int, int]:
    """(raw bytes, gzip -9 bytes) of a file. The .pt2/.pt zip stores entries uncompressed, so gzip
    shows what zeroed weights save on the wire and on disk."""
    data = Path(path).read_bytes()
    return len(data), len(gzip.compress(data, compresslevel=9, mtime=0))


def archive_breakdown(path: Path) -> dict[str, int]:
    """Uncompressed bytes of a .pt2/.pt zip by kind: weights, graph (program), other.

    For the small digits MLP the int8 graph description outweighs the weights it saves, which
    the raw size alone would hide.
    """
    out = {"weights_bytes": 0, "graph_bytes": 0, "other_bytes": 0}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                name = info.filename
                # .pt2 keeps tensors under data/weights and data/constants; TorchScript under data/<n>
                tensor_file = "/data/" in name and name.rsplit("/", 1)[-1].isdigit()
                if tensor_file or "/data/weights/" in name or "/data/constants/" in name:
                    out["weights_bytes"] += info.file_size
                elif "/models/" in name or "/code/" in name:
                    out["graph_bytes"] += info.file_size
                else:
                    out["other_bytes"] += info.file_size
    except zipfile.BadZipFile:
        return {}
    return out
