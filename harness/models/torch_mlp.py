"""The built-in reference model: an MLP 64-128-64-10 trained on digits (or sized to any data with
one flat float input and class labels), cached by content hash.

Training is deterministic (seeded, one CPU thread, deterministic algorithms) and takes one to
two seconds; the trained weights are cached under $HARNESS_CACHE_DIR (default ~/.cache/harness) keyed
by everything that determines them, so reruns load instead of retraining and a changed
architecture, hyperparameter, seed, dataset or torch version retrains. The cached file is checked
against its sha256 sidecar before loading (`harness.models.cache`); a damaged one is retrained.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.data.dataset import Dataset
from harness.models.cache import CacheIntegrityError, cache_dir
from harness.models.torch_cache import read_module, write_module

if TYPE_CHECKING:
    from torch import nn

logger = logging.getLogger(__name__)

BUILTIN_MLP = "builtin:mlp"
CACHE_FORMAT = 2  # bump when the cache file layout changes; 2: sha256 sidecar next to each file


@dataclass(frozen=True)
class MlpConfig:
    """Architecture and training hyperparameters; all of it goes into the cache key."""

    layers: tuple[int, ...] = (64, 128, 64, 10)
    epochs: int = 50
    batch_size: int = 64
    learning_rate: float = 2e-3
    optimizer: str = "adam"


@dataclass
class TrainedMlp:
    """The reference MLP (eval mode) and how it was obtained."""

    module: nn.Module
    test_accuracy: float
    train_seconds: float  # time the training took when it actually ran (also on a cache hit)
    cache_hit: bool
    cache_path: Path
    cache_key: str
    cache_warning: str | None = None  # why a cached file was not used (damaged, unreadable)

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "source": BUILTIN_MLP,
            "test_accuracy": self.test_accuracy,
            "train_seconds": round(self.train_seconds, 3),
            "cache_hit": self.cache_hit,
            "cache_path": str(self.cache_path),
        }
        if self.cache_warning:
            info["cache_warning"] = self.cache_warning
        return info


def build_mlp(config: MlpConfig = MlpConfig()) -> nn.Sequential:
    """An untrained MLP: Linear + ReLU between every pair of sizes in `config.layers`."""
    from torch import nn

    parts: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(config.layers, config.layers[1:], strict=False)):
        parts.append(nn.Linear(n_in, n_out))
        if i < len(config.layers) - 2:
            parts.append(nn.ReLU())
    return nn.Sequential(*parts)


def config_for(data: Dataset) -> MlpConfig:
    """The default architecture sized to `data`: its flat input width in, its classes out (digits:
    64-128-64-10). The data must have one 1-D float input and class labels."""
    hidden = MlpConfig().layers[1:-1]
    return replace(MlpConfig(), layers=(data.input_shape[0], *hidden, int(data.num_classes or 0)))


def cache_key(data: Dataset, seed: int, config: MlpConfig = MlpConfig()) -> str:
    import torch

    spec = {"format": CACHE_FORMAT, "config": asdict(config), "seed": seed, "torch": torch.__version__}
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode())
    digest.update(data.fingerprint().encode())
    return digest.hexdigest()


def get_reference_mlp(
    data: Dataset, seed: int = 0, config: MlpConfig | None = None, cache_root: Path | None = None
) -> TrainedMlp:
    """The trained reference MLP (default: `config_for(data)`), from the cache if present and
    intact, else trained now and cached.

    A cached file that fails its checksum or does not load is retrained over; the reason is
    logged as a warning and kept in `TrainedMlp.cache_warning` (and `info()`) for the report.
    """
    config = config or config_for(data)
    key = cache_key(data, seed, config)
    path = (cache_root or cache_dir()) / "models" / f"mlp-{key[:24]}.pt"
    warning = None
    try:
        cached = read_module(path, lambda: build_mlp(config))
    except CacheIntegrityError as exc:
        warning, cached = f"{exc}; retrained", None
        logger.warning("%s", warning)
    if cached is not None:
        module, seconds = cached
        return TrainedMlp(module, _accuracy(module, data), seconds, True, path, key)

    start = time.perf_counter()
    module = train_mlp(data, seed, config)
    seconds = time.perf_counter() - start
    write_module(path, module, {"train_seconds": seconds, "seed": seed, "config": asdict(config)})
    return TrainedMlp(module, _accuracy(module, data), seconds, False, path, key, warning)


def train_mlp(data: Dataset, seed: int = 0, config: MlpConfig = MlpConfig()) -> nn.Sequential:
    """Train from scratch, bit-for-bit reproducibly for a given seed, data and torch build."""
    import torch
    from torch import nn

    if config.optimizer != "adam":
        raise ValueError(f"unsupported optimizer {config.optimizer!r}")
    # Reductions split across threads can sum in a different order from run to run; one thread
    # and deterministic algorithms make the weights (and so the cache) reproducible. The tiny
    # model trains in about a second on one thread anyway. Global settings are restored after.
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(seed)
        model = build_mlp(config)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
        # torch.tensor copies (the dataset's arrays are read-only) and casts float64 features
        x = torch.tensor(data.x_train, dtype=torch.float32)
        y = torch.tensor(data.y_train, dtype=torch.int64)
        order = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(config.epochs):
            permutation = torch.randperm(len(x), generator=order)
            for i in range(0, len(x), config.batch_size):
                batch = permutation[i : i + config.batch_size]
                optimizer.zero_grad()
                nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
                optimizer.step()
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    model.eval()
    model.requires_grad_(False)
    return model


def _accuracy(module: nn.Module, data: Dataset) -> float:
    import torch

    with torch.inference_mode():
        labels = module(torch.tensor(data.x_test, dtype=torch.float32)).argmax(dim=1).numpy()
    return float((labels == data.y_test).mean())
