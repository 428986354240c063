"""Train-once weights for the example models, cached under $HARNESS_CACHE_DIR.

Example user code. The shipped scenarios carry no binary weights: each factory trains its model
deterministically (see `training`; a few seconds) and keeps the state_dict in the harness's model
cache, keyed by everything that determines it (model name, hyperparameters, the exact training
data, the torch version). It reuses the harness's cache convention: every file has a sha256
sidecar checked before loading, and a damaged or foreign file is retrained over (with a logged
warning), never trusted.
"""

# user code that saves and loads torch weights: torch is imported at module level on purpose
# ruff: noqa: TID253

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from examples.training import C, M, seeded_model
from harness.models.cache import CacheIntegrityError, cache_dir, read_verified, write_verified

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CachedWeights:
    """Where a model's weights came from: the cache file, whether it was a hit, the training time."""

    path: Path
    cache_hit: bool
    train_seconds: float  # the time training took when it ran (read back from the file on a hit)


def cache_key(name: str, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 over the model name, its hyperparameters, the torch version and the exact training data."""
    digest = hashlib.sha256()
    spec = {"name": name, "config": dict(config), "torch": torch.__version__}
    digest.update(json.dumps(spec, sort_keys=True).encode())
    for key in sorted(arrays):
        array = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}:{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def cached_model(
    name: str,
    build: Callable[[C], M],
    train: Callable[[M, C], None],
    config: C,
    arrays: Mapping[str, np.ndarray],
) -> tuple[M, CachedWeights]:
    """`build(config)` with trained weights, read from the cache or trained by `train` (and cached) now.

    The key is `cache_key(name, asdict(config), arrays)`, `arrays` being the training data; the
    initial weights come from `config.seed` when training runs. Returned in eval mode, gradients off.
    """
    key = cache_key(name, asdict(config), arrays)
    model = seeded_model(build, config)
    weights = load_or_train(model, key, lambda m: train(m, config))
    model.eval()
    model.requires_grad_(False)
    return model, weights


def load_or_train(model: M, key: str, train: Callable[[M], None]) -> CachedWeights:
    """Fill `model` with cached weights for `key`, or call `train(model)` and cache what it learnt."""
    path = cache_dir() / "models" / f"example-{key[:24]}.pt"
    try:
        payload = _read(path)
    except CacheIntegrityError as exc:
        logger.warning("%s; retrained", exc)
        payload = None
    if payload is not None:
        try:
            model.load_state_dict(payload["state_dict"])
            return CachedWeights(path, True, float(payload["train_seconds"]))
        except (KeyError, RuntimeError, TypeError, ValueError) as exc:
            logger.warning("model cache %s does not fit the model (%s); retrained", path, exc)

    start = time.perf_counter()
    train(model)
    seconds = time.perf_counter() - start
    buffer = io.BytesIO()
    torch.save({"state_dict": model.state_dict(), "train_seconds": seconds}, buffer)
    try:
        write_verified(path, buffer.getvalue())
    except OSError as exc:  # a read-only cache costs a retrain next time, nothing more
        logger.warning("could not write model cache %s: %s", path, exc)
    return CachedWeights(path, False, seconds)


def _read(path: Path) -> dict[str, Any] | None:
    data = read_verified(path)
    if data is None:
        return None
    try:
        # the verified bytes are loaded, not the path: a file replaced meanwhile is never read unchecked
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CacheIntegrityError(f"model cache {path} does not load ({exc})") from None
    if not isinstance(payload, dict):
        raise CacheIntegrityError(f"model cache {path} holds {type(payload).__name__}, not a dict")
    return payload
