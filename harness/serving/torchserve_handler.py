"""TorchServe handler for any model with named tensor inputs, shipped inside the model archive.

It runs in TorchServe's Python worker, not in the harness process, so it imports only numpy,
torch and the standard library (TorchServe also wants exactly one class in this file). The
model's signature (input names, shapes, dtypes) comes from harness_model.json in the archive.

A request body is one of the formats of harness/serving/payloads.py, told apart by its first
bytes: .npy (one input), uncompressed .npz (one .npy per input name), or JSON `{"instances":
[...]}` (per example: its nested list, or an object by input name) or `{"inputs": ...}` (the
batch, or an object input name -> batch). Each input is cast to its declared dtype (a cast that
loses the kind, float to int, is refused) and the model is called positionally in signature
order. Each request gets `{"predictions": [[...], ...]}`: the model's first output, one row of
floats per example. Under server-side batching the rows of all requests go through the model in
one call and are split back per request. A malformed request gets a 400 of its own; the worker
never crashes and the other requests of the batch are still answered.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import math
import os
import sys
import time
import zipfile
from typing import Any

import numpy as np
import torch  # this module runs in TorchServe's worker, never in the harness

logger = logging.getLogger(__name__)

METADATA_FILE = "harness_model.json"
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
# serving.log_level -> Python logging level
_LOG_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARN": logging.WARNING, "ERROR": logging.ERROR}


def _mentions_torchao(path: str) -> bool | None:
    """Whether the .pt2 archive refers to torchao (its ops or tensor subclasses); None if unreadable."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(b"torchao" in archive.read(name) for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return None


def _import_torchao() -> bool:
    try:
        import torchao  # noqa: F401
    except ImportError:
        return False
    return True


def _load_program(path: str, fmt: str) -> Any:
    if fmt == "torch.export":
        # torchao registers its quantized ops on import; importing it costs seconds per worker,
        # so only when the program refers to it (or, as a fallback, when loading without it fails)
        mentions = _mentions_torchao(path)
        imported = bool(mentions) and _import_torchao()
        try:
            program = torch.export.load(path)
        except Exception:
            if mentions is None or imported or not _import_torchao():
                raise
            program = torch.export.load(path)
        return program.module()
    if fmt == "torchscript":
        module = torch.jit.load(path, map_location="cpu")
        module.eval()
        return module
    raise ValueError(f"unsupported artifact format {fmt!r}; expected 'torch.export' or 'torchscript'")


def _route_warnings_to_stderr() -> None:
    """Our warnings and errors go to stderr, which the frontend logs at WARN (stdout at INFO): a
    failed model call must stay in model_log.log at the default WARN level."""
    if logger.handlers:  # initialize() runs once per worker, but never add the handlers twice
        return
    below = logging.StreamHandler(sys.stdout)
    below.addFilter(lambda record: record.levelno < logging.WARNING)
    above = logging.StreamHandler(sys.stderr)
    above.setLevel(logging.WARNING)
    for handler in (below, above):
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.propagate = False


def _json_body(body: Any) -> Any:
    if isinstance(body, (bytes, bytearray)):
        try:
            return json.loads(bytes(body).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"request body is not JSON, .npy or .npz: {exc}") from None
    if isinstance(body, str):
        try:
            return json.loads(body)
        except json.JSONDecodeError as exc:
            raise ValueError(f"request body is not JSON: {exc}") from None
    return body


def _arrays_of(body: Any, names: list[str]) -> dict[str, Any]:
    """Input name -> array-like as the body carries it (before casts and shape checks)."""
    if isinstance(body, (bytes, bytearray)) and bytes(body[:6]) == NPY_MAGIC:
        if len(names) != 1:
            raise ValueError(f"a .npy body holds one input; this model takes {names}: send an .npz")
        try:
            return {names[0]: np.load(io.BytesIO(body), allow_pickle=False)}
        except (OSError, ValueError, EOFError) as exc:
            raise ValueError(f"unreadable .npy body: {exc}") from None
    if isinstance(body, (bytes, bytearray)) and bytes(body[:4]) == ZIP_MAGIC:
        try:
            with np.load(io.BytesIO(body), allow_pickle=False) as npz:
                return {name: npz[name] for name in npz.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"unreadable .npz body: {exc}") from None
    payload = _json_body(body)
    if isinstance(payload, dict) and "instances" in payload:
        instances = payload["instances"]
        if not isinstance(instances, list) or not instances:
            raise ValueError('"instances" must be a non-empty list')
        if isinstance(instances[0], dict):
            if not all(isinstance(example, dict) for example in instances):
                raise ValueError('"instances" mixes objects and lists')
            missing = sorted({n for n in names for example in instances if n not in example})
            if missing:
                raise ValueError(f"instances lack input(s) {missing}; the model takes {names}")
            return {n: [example[n] for example in instances] for n in names}
        if len(names) != 1:
            raise ValueError(f"this model takes inputs {names}: each instance must be an object by name")
        return {names[0]: instances}
    if isinstance(payload, dict) and "inputs" in payload:
        inputs = payload["inputs"]
        if isinstance(inputs, dict):
            return dict(inputs)
        if len(names) != 1:
            raise ValueError(f'this model takes inputs {names}: "inputs" must be an object by name')
        return {names[0]: inputs}
    raise ValueError('expected a JSON object {"instances": [...]} or {"inputs": ...}, or an .npy/.npz body')


def _as_input(name: str, value: Any, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """`value` as a (n, *shape) array of `dtype`; ValueError says what is wrong."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"input {name!r} is not an array of numbers: {exc}") from None
    want = np.dtype(dtype)
    if array.dtype != want:
        # JSON has no dtypes: ints for a float or any int input are fine; a fraction for an int input,
        # or a number for a bool one, would be changed silently and is refused
        have = array.dtype.kind
        allowed = {"b": "b", "i": "biu", "u": "biu", "f": "biuf"}.get(want.kind, want.kind)
        if have not in allowed or have not in "biuf":
            raise ValueError(f"input {name!r} must hold {dtype} values, got {array.dtype}")
        if want.kind in "iu" and have in "iu" and array.size:
            info = np.iinfo(want)
            if array.min() < info.min or array.max() > info.max:
                raise ValueError(f"input {name!r} holds values outside the {dtype} range")
        array = array.astype(want)
    if array.ndim == 0 or array.shape[0] == 0:
        raise ValueError(f"input {name!r} holds no examples")
    if array.shape[1:] != shape:
        if array.ndim == 2 and array.shape[1] == math.prod(shape):
            return array.reshape((array.shape[0], *shape))  # flat rows of a multi-dimensional input
        raise ValueError(
            f"input {name!r}: each example must have shape {list(shape)}, got {list(array.shape[1:])}"
        )
    return array


def decode_request(request: Any, inputs: list[tuple[str, tuple[int, ...], str]]) -> dict[str, np.ndarray]:
    """The request's batch: input name -> (n, *shape) array of the declared dtype, in `inputs`
    order ((name, shape, dtype) each); ValueError says what is wrong with the request."""
    body = request.get("body", request.get("data")) if isinstance(request, dict) else request
    names = [name for name, _, _ in inputs]
    arrays = _arrays_of(body, names)
    unknown = sorted(set(arrays) - set(names))
    if unknown or len(arrays) != len(names):
        raise ValueError(f"inputs {sorted(arrays)}; the model takes {names}")
    batch = {name: _as_input(name, arrays[name], shape, dtype) for name, shape, dtype in inputs}
    rows = {len(array) for array in batch.values()}
    if len(rows) != 1:
        raise ValueError(f"inputs have different numbers of examples {sorted(rows)}")
    return batch


def output_rows(out: Any, rows: int) -> list[list[float]]:
    """The model's prediction as one list of floats per example: the tensor itself, or the first
    entry of a tuple, list or dict (as harness/models/torch_io.py reads it in process)."""
    while isinstance(out, (tuple, list, dict)):
        if not out:
            raise ValueError(f"the model returned an empty {type(out).__name__}")
        out = next(iter(out.values())) if isinstance(out, dict) else out[0]
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"the model returned {type(out).__name__}, not a tensor")
    if out.ndim == 0 or out.shape[0] != rows:
        raise ValueError(f"the model returned shape {list(out.shape)} for {rows} examples")
    return out.detach().reshape(rows, -1).float().tolist()


class TensorHandler:
    """Loads a torch.export (.pt2) or TorchScript (.pt) program and answers its outputs per example."""

    def __init__(self) -> None:
        self.model: Any = None
        self.inputs: list[tuple[str, tuple[int, ...], str]] = []
        self.initialized = False
        self.inject_delay_s = 0.0

    def initialize(self, context: Any) -> None:
        model_dir = context.system_properties.get("model_dir")
        with open(os.path.join(model_dir, METADATA_FILE)) as f:
            meta = json.load(f)
        # TorchServe's worker logs INFO to stdout, which the frontend reads line by line: our
        # per-batch line costs a pipe write and a log event per batch even when log4j drops it
        logger.setLevel(_LOG_LEVELS.get(str(meta.get("log_level", "WARN")), logging.WARNING))
        _route_warnings_to_stderr()
        self.inputs = [
            (str(spec["name"]), tuple(int(d) for d in spec["shape"]), str(spec["dtype"]))
            for spec in meta["signature"]["inputs"]
        ]
        self.inject_delay_s = float(meta.get("inject_delay_ms") or 0.0) / 1000.0
        threads = int(meta.get("torch_threads") or 0)
        if threads > 0:
            torch.set_num_threads(threads)
        # op libraries the program calls (PT2E's quantized_decomposed) register on import
        for module in meta.get("imports") or []:
            importlib.import_module(module)
        serialized = context.manifest["model"]["serializedFile"]
        self.model = _load_program(os.path.join(model_dir, serialized), meta["format"])
        logger.info(
            "harness handler loaded %s (%s), inputs %s, torch %s, %d threads",
            serialized,
            meta["format"],
            self.inputs,
            torch.__version__,
            torch.get_num_threads(),
        )
        self.initialized = True

    def _outputs(self, batch: dict[str, np.ndarray], rows: int) -> list[list[float]]:
        # concatenate copied every array: writable, so from_numpy shares it without a warning
        tensors = [torch.from_numpy(batch[name]) for name, _, _ in self.inputs]
        with torch.inference_mode():
            out = self.model(*tensors)
        return output_rows(out, rows)

    def handle(self, data: list[Any], context: Any) -> list[Any]:
        """One answer per request of the batch, in order."""
        answers: list[Any] = [None] * len(data)
        parsed: list[tuple[int, dict[str, np.ndarray]]] = []
        for idx, request in enumerate(data):
            try:
                parsed.append((idx, decode_request(request, self.inputs)))
            except ValueError as exc:
                answers[idx] = {"error": str(exc)}
                context.set_response_status(400, "Bad Request", idx=idx)
        if parsed:
            names = [name for name, _, _ in self.inputs]
            batch = {name: np.concatenate([arrays[name] for _, arrays in parsed]) for name in names}
            rows = len(batch[names[0]])
            # one line per server-side batch: shows in model_log.log how well batching fills up
            logger.info("harness batch: %d requests, %d rows", len(data), rows)
            if self.inject_delay_s:
                # a known, deliberate regression (gate-validity runs), spent on the CPU like a heavier
                # model: a sleep this short costs the VM's ~1 ms wake-up latency on top
                until = time.perf_counter() + self.inject_delay_s
                while time.perf_counter() < until:
                    pass
            try:
                outputs = self._outputs(batch, rows)
            except Exception as exc:  # answer every request of the batch instead of failing the worker
                logger.exception("model call failed on a batch of %d requests", len(parsed))
                for idx, _ in parsed:
                    answers[idx] = {"error": f"model call failed: {type(exc).__name__}: {exc}"}
                    context.set_response_status(500, "Internal Server Error", idx=idx)
                return answers
            start = 0
            for idx, arrays in parsed:
                count = len(arrays[names[0]])
                answers[idx] = {"predictions": outputs[start : start + count]}
                start += count
        return answers
