"""The built-in image classifier `builtin:mobilenet_v2` in torch: MobileNetV2 trained on digits_rgb
(or any one-input NCHW float image data with class labels), cached by content hash.

Training is deterministic: seeded weights, batch order, dropout and augmentation (random shifts of
up to 1/16 of the image side, the digit moved over a zero background), on every CPU the process
may use with deterministic algorithms (`harness.models.torch_training`), in channels-last memory
format, which oneDNN runs about a third faster. Adam with a cosine-decaying learning rate. The
trained weights are cached under $HARNESS_CACHE_DIR like the MLP's (`harness.models.cache`: a
sha256 sidecar checked before loading, a damaged file retrained), keyed by the architecture, the
training settings, the seed, the data's fingerprint, the torch version and the thread count.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.data.dataset import Dataset
from harness.models.cache import CacheIntegrityError, cache_dir
from harness.models.torch_cache import read_module, write_module
from harness.models.torch_io import model_outputs
from harness.models.torch_mobilenet_arch import build_mobilenet_v2
from harness.models.torch_training import deterministic_torch, training_threads
from harness.scenario.schema import BUILTIN_MOBILENET, BuiltinOptions

if TYPE_CHECKING:
    import torch
    from torch import nn

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the cache file layout changes
# epochs when the scenario gives none: at width 1.0 and 96x96 they reach >= 95% test accuracy on
# digits_rgb in about 3 minutes on 2 cores (measured figures in the README)
DEFAULT_EPOCHS = 6
EVAL_CHUNK = 128  # test rows per forward pass: bounds the activations of a 96x96 batch


@dataclass(frozen=True)
class MobileNetConfig:
    """Architecture and training hyperparameters; all of it goes into the cache key."""

    num_classes: int
    in_channels: int = 3
    width: float = 1.0
    image_size: int = 96  # the data's image side; the network itself takes any size
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = 32
    learning_rate: float = 2e-3
    optimizer: str = "adam"
    dropout: float = 0.2
    max_shift: int = 6  # augmentation: pixels an image is moved by, at most, along each axis
    threads: int = 1  # intra-op threads of the training: the weights depend on it


@dataclass
class TrainedMobileNet:
    """The reference MobileNetV2 (eval mode) and how it was obtained."""

    module: nn.Module
    config: MobileNetConfig
    test_accuracy: float
    train_seconds: float  # time the training took when it actually ran (also on a cache hit)
    cache_hit: bool
    cache_path: Path
    cache_key: str
    cache_warning: str | None = None  # why a cached file was not used (damaged, unreadable)

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "source": BUILTIN_MOBILENET,
            "width": self.config.width,
            "image_size": self.config.image_size,
            "epochs": self.config.epochs,
            "train_threads": self.config.threads,
            "param_count": sum(p.numel() for p in self.module.parameters()),
            "test_accuracy": self.test_accuracy,
            "train_seconds": round(self.train_seconds, 3),
            "cache_hit": self.cache_hit,
            "cache_path": str(self.cache_path),
        }
        if self.cache_warning:
            info["cache_warning"] = self.cache_warning
        return info


def config_for(data: Dataset, options: BuiltinOptions, threads: int | None = None) -> MobileNetConfig:
    """The configuration for `data` (one NCHW float image input, class labels) and the scenario's
    `model.builtin` options; the image side is the data's own."""
    channels, height, width = data.inputs[0].shape
    side = min(height, width)
    return MobileNetConfig(
        num_classes=int(data.num_classes or 0),
        in_channels=int(channels),
        width=options.width,
        image_size=int(side),
        epochs=options.epochs or DEFAULT_EPOCHS,
        max_shift=max(1, side // 16),
        threads=threads or training_threads(),
    )


def cache_key(data: Dataset, seed: int, config: MobileNetConfig) -> str:
    import torch

    spec = {"format": CACHE_FORMAT, "config": asdict(config), "seed": seed, "torch": torch.__version__}
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode())
    digest.update(data.fingerprint().encode())
    return digest.hexdigest()


def get_reference_mobilenet(
    data: Dataset,
    seed: int = 0,
    options: BuiltinOptions | None = None,
    cache_root: Path | None = None,
    threads: int | None = None,
) -> TrainedMobileNet:
    """The trained MobileNetV2 for `data`, from the cache if present and intact, else trained now
    and cached. A damaged cache file is retrained over; the reason is logged as a warning and kept
    in `cache_warning` (and `info()`) for the report."""
    config = config_for(data, options or BuiltinOptions(), threads)
    key = cache_key(data, seed, config)
    name = f"mobilenet_v2-w{config.width:g}-{config.image_size}px-{key[:24]}.pt"
    path = (cache_root or cache_dir()) / "models" / name
    warning = None
    try:
        cached = read_module(path, lambda: _build(config))
    except CacheIntegrityError as exc:
        warning, cached = f"{exc}; retrained", None
        logger.warning("%s", warning)
    if cached is not None:
        module, seconds = cached
        return TrainedMobileNet(module, config, accuracy_on_test(module, data), seconds, True, path, key)

    logger.info(
        "training %s (width %g, %dpx, %d epochs, %d threads); cached at %s",
        BUILTIN_MOBILENET,
        config.width,
        config.image_size,
        config.epochs,
        config.threads,
        path,
    )
    start = time.perf_counter()
    module = train_mobilenet(data, seed, config)
    seconds = time.perf_counter() - start
    write_module(path, module, {"train_seconds": seconds, "seed": seed, "config": asdict(config)})
    trained = TrainedMobileNet(module, config, accuracy_on_test(module, data), seconds, False, path, key)
    trained.cache_warning = warning
    return trained


def train_mobilenet(data: Dataset, seed: int, config: MobileNetConfig) -> nn.Module:
    """Train from scratch, reproducibly for a given seed, data, torch build and thread count."""
    import torch
    from torch import nn

    if config.optimizer != "adam":
        raise ValueError(f"unsupported optimizer {config.optimizer!r}")
    with deterministic_torch(config.threads):
        torch.manual_seed(seed)
        model = _build(config)
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        # torch.tensor copies: the dataset's arrays are read-only
        x = torch.tensor(data.x_train, dtype=torch.float32)
        y = torch.tensor(data.y_train, dtype=torch.int64)
        steps_per_epoch = math.ceil(len(x) / config.batch_size)
        total = steps_per_epoch * config.epochs
        optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
        # cosine decay to zero over all steps: the last steps settle the weights and BN statistics
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
        )
        order = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(config.epochs):
            permutation = torch.randperm(len(x), generator=order)
            for i in range(0, len(x), config.batch_size):
                batch = permutation[i : i + config.batch_size]
                images = shifted(x[batch], config.max_shift, order)
                optimizer.zero_grad()
                logits = model(images.contiguous(memory_format=torch.channels_last))
                nn.functional.cross_entropy(logits, y[batch]).backward()
                optimizer.step()
                schedule.step()
    # served and cached models are contiguous: a loaded copy then runs the very same kernels
    model = model.to(memory_format=torch.contiguous_format)
    model.eval()
    model.requires_grad_(False)
    return model


def shifted(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Each image of an NCHW batch moved by its own random offset of up to `max_shift` pixels along
    each axis, the uncovered border filled with zeros (the digits' background)."""
    import torch
    from torch import nn

    n, _, height, width = images.shape
    offsets = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=generator).tolist()
    padded = nn.functional.pad(images, (max_shift, max_shift, max_shift, max_shift))
    crops = [padded[i, :, dy : dy + height, dx : dx + width] for i, (dy, dx) in enumerate(offsets)]
    return torch.stack(crops)


def accuracy_on_test(module: nn.Module, data: Dataset) -> float:
    """Top-1 accuracy on the test split."""
    outputs = model_outputs(module, {"x": data.x_test}, data.inputs, chunk=EVAL_CHUNK)
    return float((outputs.argmax(axis=1) == np.asarray(data.test.labels)).mean())


def _build(config: MobileNetConfig) -> nn.Module:
    return build_mobilenet_v2(config.num_classes, config.width, config.in_channels, config.dropout)
