"""Load a user's torch model: a file (TorchScript .pt/.ts, torch.export .pt2) or a python: factory.

A missing or unreadable file, a factory that cannot be imported or returns something else than an
nn.Module, and weights that do not fit are UserErrors naming the scenario key and what was
expected. A .pt2 records its inputs (names, dtypes, shapes; dynamic dimensions read as -1); the
other sources record none and take `model.inputs` or the data's (`harness.data.signature`).
`check_model` then calls the model on a batch of one and a full batch, as servers will.
"""

from __future__ import annotations

import importlib
import logging
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.data.tensors import DTYPES, Batch, TensorSpec, batch_len, batch_slice
from harness.errors import UserError
from harness.frameworks import TORCH
from harness.models.python_source import load_target
from harness.models.torch_io import call_model, numpy_dtype_name
from harness.scenario.schema import ModelSpec, resolve_source

_EXPECTED = (
    "a TorchScript file (.pt/.ts, saved with torch.jit.save) or a torch.export file (.pt2, torch.export.save)"
)
# the module that registers torch.ops.quantized_decomposed, which PT2E int8 programs call; torch
# does not import it by itself, so a .pt2 using those ops fails to load without it
PT2E_OPS_MODULE = "torch.ao.quantization.fx._decomposed"
_PT2E_MARKER = b"quantized_decomposed"
_MAX_LISTED_KEYS = 5  # weights that do not fit: how many missing/unexpected keys a message lists


@dataclass
class LoadedTorchModel:
    """A user model loaded on CPU in eval mode, how it was obtained, and the inputs it records."""

    module: Any  # nn.Module, ScriptModule, or the GraphModule of an ExportedProgram
    path: Path | None  # the model file; None for a python: factory
    format: str  # "torchscript" | "torch.export" | "python"
    where: str  # how messages name it: "model file <path>" or "model.source python:..."
    recorded: tuple[TensorSpec, ...] | None = None  # a .pt2's input specs; None: the model records none
    info: dict[str, Any] = field(default_factory=dict)


def load_torch_model(path: str | Path) -> LoadedTorchModel:
    """Load `path` according to its suffix; UserError if it is missing, of another kind, or unreadable."""
    path = Path(path)
    fmt = TORCH.user_formats.get(path.suffix)  # "torchscript" or "torch.export"
    if fmt is None:
        raise UserError(f"model file {path}: unsupported suffix {path.suffix!r}; expected {_EXPECTED}")
    if not path.is_file():
        raise UserError(f"model file {path} does not exist; expected {_EXPECTED}")
    where = f"model file {path}"
    recorded = None
    try:
        if fmt == "torchscript":
            module = load_torchscript(path)
        else:
            program = read_exported_program(path)
            module = program.module()
    except Exception as exc:
        hint = (
            "expected a TorchScript archive from torch.jit.save (a torch.save'd state_dict or pickled "
            "module is not supported; give a state_dict as model.weights of a python: factory)"
            if fmt == "torchscript"
            else "expected an ExportedProgram saved with torch.export.save"
        )
        raise UserError(f"{where} could not be loaded as {fmt}: {_one_line(exc)}; {hint}") from None
    if fmt == "torch.export":
        recorded = recorded_inputs(program, where)
    info = {"source": str(path), "format": fmt}
    return LoadedTorchModel(module=module, path=path, format=fmt, where=where, recorded=recorded, info=info)


def load_python_model(model: ModelSpec, scenario_dir: Path) -> LoadedTorchModel:
    """Import and call the `python:` factory, load `model.weights` into what it returns."""
    import torch

    where = f"model.source {model.source}"
    module = load_target(model.python_target, scenario_dir, "model.source")
    if not isinstance(module, torch.nn.Module):
        raise UserError(
            f"model.source: {model.python_target} returned a {type(module).__name__}, not a torch.nn.Module"
        )
    if isinstance(module, torch.jit.ScriptModule):
        raise UserError(
            f"model.source: {model.python_target} returned a TorchScript module; return the nn.Module itself "
            "(a TorchScript file is named as model.source and served as given)"
        )
    info: dict[str, Any] = {"source": model.source, "format": "python"}
    if model.weights is not None:
        weights = resolve_source(model.weights, scenario_dir)
        load_weights(module, weights)
        info["weights"] = str(weights)
    module.eval()
    return LoadedTorchModel(module=module, path=None, format="python", where=where, info=info)


def load_weights(module: Any, path: Path) -> None:
    """Load a state_dict (torch.save) or .safetensors file into `module`; UserError naming
    `model.weights` if it is missing, unreadable, or its keys or shapes do not match."""
    import torch

    if not path.is_file():
        raise UserError(f"model.weights: {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path), device="cpu")
        else:
            # weights_only: a state_dict needs no pickled code, and a pickle could run any
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(
            f"model.weights: {path} could not be read as a torch state_dict (torch.save of "
            f"model.state_dict()) or a .safetensors file: {_one_line(exc)}"
        ) from None
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]  # a training checkpoint that wraps the state_dict
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(
            f"model.weights: {path} holds a {type(state).__name__}, not a state_dict (a mapping of names "
            "to tensors, as model.state_dict() returns)"
        )
    try:
        result = module.load_state_dict(dict(state), strict=False)
    except RuntimeError as exc:  # shapes that do not fit
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else (lines[0] if lines else type(exc).__name__)
        raise UserError(f"model.weights: {path} does not fit the factory's model: {detail}") from None
    problems = []
    for label, keys in (("missing", result.missing_keys), ("unexpected", result.unexpected_keys)):
        if keys:
            more = f" (+{len(keys) - _MAX_LISTED_KEYS} more)" if len(keys) > _MAX_LISTED_KEYS else ""
            problems.append(f"{label} keys {', '.join(keys[:_MAX_LISTED_KEYS])}{more}")
    if problems:
        raise UserError(f"model.weights: {path} does not match the factory's model: {'; '.join(problems)}")


def load_torchscript(path: Path) -> Any:
    import torch

    with warnings.catch_warnings():
        # torch 2.13 deprecates TorchScript; user files in that format are still supported on purpose
        warnings.filterwarnings("ignore", r".*torch\.jit\.load.* is deprecated", DeprecationWarning)
        module = torch.jit.load(str(path), map_location="cpu")
    module.eval()
    return module


def read_exported_program(path: Path) -> Any:
    """The ExportedProgram in a .pt2 file, with the op libraries it needs imported first."""
    import torch

    if not zipfile.is_zipfile(path):
        raise ValueError("not a zip archive, as torch.export.save writes")
    for module in required_imports(path):
        importlib.import_module(module)
    # torch logs a traceback before its own fallback; the error we raise already says what failed
    export_log = logging.getLogger("torch.export")
    level = export_log.level
    export_log.setLevel(logging.ERROR)
    try:
        return torch.export.load(str(path))
    finally:
        export_log.setLevel(level)


def load_exported_program(path: Path) -> Any:
    """The callable GraphModule of the ExportedProgram in a .pt2 file."""
    return read_exported_program(path).module()


def required_imports(path: Path) -> list[str]:
    """Modules to import before `torch.export.load(path)`: the PT2E op library if the program
    calls quantized_decomposed ops (torchao tensor subclasses torch.export.load imports itself)."""
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            is_program = info.filename.endswith(".json") and "/models/" in f"/{info.filename}"
            if is_program and _PT2E_MARKER in archive.read(info):
                return [PT2E_OPS_MODULE]
    return []


def recorded_inputs(program: Any, where: str) -> tuple[TensorSpec, ...]:
    """The user inputs of an ExportedProgram in call order: name, dtype and per-example shape, with
    -1 for a dimension exported as dynamic. UserError if the batch dimension is fixed."""
    names = list(program.graph_signature.user_inputs)
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    specs = []
    for name in names:
        value: Any = placeholders[name].meta.get("val") if name in placeholders else None
        shape = getattr(value, "shape", None)
        if shape is None or len(shape) == 0:
            raise UserError(f"{where}: input {name!r} is not a batched tensor ({type(value).__name__})")
        dtype = numpy_dtype_name(value.dtype)
        if dtype not in DTYPES:
            raise UserError(f"{where}: input {name!r} has dtype {dtype}; supported: {', '.join(DTYPES)}")
        if isinstance(shape[0], int):
            raise UserError(
                f"{where}: input {name!r} was exported with a fixed batch size of {shape[0]}; export with a "
                "dynamic batch dimension (dynamic_shapes={0: torch.export.Dim('batch')}) so servers can "
                "batch requests"
            )
        dims = tuple(d if isinstance(d, int) else -1 for d in shape[1:])
        specs.append(TensorSpec(name, dims, dtype))
    return tuple(specs)


def check_model(module: Any, where: str, inputs: tuple[TensorSpec, ...], batch: Batch) -> np.ndarray:
    """The model's outputs on `batch` (float32, one row per example); UserError naming what the
    model expects unless it runs on a batch of one and on the whole batch with one row each."""
    width = None
    outputs = np.empty((0, 0), dtype=np.float32)
    for rows in sorted({1, batch_len(batch)}):
        try:
            outputs = call_model(module, batch_slice(batch, 0, rows), inputs)
        except Exception as exc:
            raise UserError(
                f"{where} failed on a batch of {rows} ({', '.join(s.describe() for s in inputs)}): "
                f"{_one_line(exc)}"
            ) from None
        if width is not None and outputs.shape[1] != width:
            raise UserError(
                f"{where} returns {width} values per example for a batch of 1 but {outputs.shape[1]} for "
                f"a batch of {rows}"
            )
        width = outputs.shape[1]
    return outputs


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
