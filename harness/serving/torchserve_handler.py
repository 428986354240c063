"""TorchServe handler for plain feature-vector classifiers, shipped inside the model archive.

It runs in TorchServe's Python worker, not in the harness process, so it imports nothing from
`harness`. Requests carry `{"instances": [[...], ...]}`; each gets `{"predictions": [labels]}`.
Under server-side batching the rows of all requests go through the model in one call and are
split back per request. A malformed request gets a 400 of its own; the worker never crashes and
the other requests of the batch are still answered.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import zipfile
from typing import Any

import numpy as np
import torch  # this module runs in TorchServe's worker, never in the harness

logger = logging.getLogger(__name__)

METADATA_FILE = "harness_model.json"
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


def _rows_of(request: Any, input_shape: tuple[int, ...]) -> np.ndarray:
    """The request's instances as float32 rows of `input_shape`; ValueError says what is wrong."""
    body = request.get("body", request.get("data")) if isinstance(request, dict) else None
    if isinstance(body, (bytes, bytearray)):
        try:
            body = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"request body is not JSON: {exc}") from None
    elif isinstance(body, str):
        try:
            body = json.loads(body)
        except json.JSONDecodeError as exc:
            raise ValueError(f"request body is not JSON: {exc}") from None
    if not isinstance(body, dict) or "instances" not in body:
        raise ValueError('expected a JSON object {"instances": [[...], ...]}')
    instances = body["instances"]
    if not isinstance(instances, list) or not instances:
        raise ValueError('"instances" must be a non-empty list')
    try:
        rows = np.asarray(instances, dtype=np.float32)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f'"instances" must be numbers of shape {list(input_shape)}: {exc}') from None
    if rows.shape[1:] != input_shape:
        width = int(np.prod(input_shape))
        if rows.ndim == 2 and rows.shape[1] == width:
            return rows.reshape((rows.shape[0], *input_shape))
        raise ValueError(f"each instance must have shape {list(input_shape)}, got {list(rows.shape[1:])}")
    return rows


class FeatureVectorHandler:
    """Loads a torch.export (.pt2) or TorchScript (.pt) classifier and answers argmax labels."""

    def __init__(self) -> None:
        self.model: Any = None
        self.input_shape: tuple[int, ...] = ()
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
        self.input_shape = tuple(int(d) for d in meta["input_shape"])
        self.inject_delay_s = float(meta.get("inject_delay_ms") or 0.0) / 1000.0
        threads = int(meta.get("torch_threads") or 0)
        if threads > 0:
            torch.set_num_threads(threads)
        serialized = context.manifest["model"]["serializedFile"]
        self.model = _load_program(os.path.join(model_dir, serialized), meta["format"])
        logger.info(
            "harness handler loaded %s (%s), input shape %s, torch %s, %d threads",
            serialized,
            meta["format"],
            self.input_shape,
            torch.__version__,
            torch.get_num_threads(),
        )
        self.initialized = True

    def _labels(self, rows: np.ndarray) -> list[int]:
        with torch.inference_mode():
            out = self.model(torch.from_numpy(rows))
        if isinstance(out, (tuple, list)):
            out = out[0]
        if out.ndim == 1 and not out.is_floating_point():
            labels = out  # the program already returns labels
        else:
            labels = out.reshape(out.shape[0], -1).argmax(dim=1)
        return [int(v) for v in labels.tolist()]

    def handle(self, data: list[Any], context: Any) -> list[Any]:
        """One answer per request of the batch, in order."""
        answers: list[Any] = [None] * len(data)
        parsed: list[tuple[int, np.ndarray]] = []
        for idx, request in enumerate(data):
            try:
                parsed.append((idx, _rows_of(request, self.input_shape)))
            except ValueError as exc:
                answers[idx] = {"error": str(exc)}
                context.set_response_status(400, "Bad Request", idx=idx)
        if parsed:
            batch = np.concatenate([rows for _, rows in parsed])
            # one line per server-side batch: shows in model_log.log how well batching fills up
            logger.info("harness batch: %d requests, %d rows", len(data), batch.shape[0])
            if self.inject_delay_s:
                # a known, deliberate regression (gate-validity runs), spent on the CPU like a heavier
                # model: a sleep this short costs the VM's ~1 ms wake-up latency on top
                until = time.perf_counter() + self.inject_delay_s
                while time.perf_counter() < until:
                    pass
            try:
                labels = self._labels(batch)
            except Exception as exc:  # answer every request of the batch instead of failing the worker
                logger.exception("model call failed on a batch of %d requests", len(parsed))
                for idx, _ in parsed:
                    answers[idx] = {"error": f"model call failed: {type(exc).__name__}: {exc}"}
                    context.set_response_status(500, "Internal Server Error", idx=idx)
                return answers
            start = 0
            for idx, rows in parsed:
                answers[idx] = {"predictions": labels[start : start + len(rows)]}
                start += len(rows)
        return answers
