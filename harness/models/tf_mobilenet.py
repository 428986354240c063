"""The built-in TensorFlow `builtin:mobilenet_v2`: tf_keras' MobileNetV2 trained here on digits_rgb.

The architecture is `tf_keras.applications.MobileNetV2(weights=None)` (nothing is downloaded):
depthwise-separable inverted residual blocks with batch norm and ReLU6, global average pooling and
a Dense layer returning logits, like the other built-ins. It is one flat functional model on an
Input named like the data's (no nested model), so the tfmot recipes can wrap its layers.

Training is seeded with op determinism on (as for `builtin:mlp`), from scratch, on the train
split with light augmentation: each epoch shifts every image by up to 1/16 of its side (half a
pixel of the 8x8 source digit) in each direction, zero-filled, drawn from the seed and the epoch.
Batch norm uses momentum 0.9 instead of the architecture's 0.999: a few hundred steps are far too
few for 0.999's moving averages to settle, and inference would then see the initial statistics.
The trained model is cached like the other built-ins, keyed by everything that determines it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.compression.tensorflow.tf_import import import_tf
from harness.data.dataset import Dataset
from harness.models.cache import CacheIntegrityError, cache_dir
from harness.models.tf_models import TrainedTfModel, logits_accuracy, read_model_cache, write_model_cache
from harness.scenario.schema import BuiltinOptions

logger = logging.getLogger(__name__)

KIND = "mobilenet_v2"
CACHE_FORMAT = 1  # bump when the training recipe or the cache layout changes
# width 1.0 at 96x96: 0.993 test accuracy after 6 epochs, trained in about 130 s on 2 cores
DEFAULT_EPOCHS = 6
BN_MOMENTUM = 0.9


@dataclass(frozen=True)
class MobileNetConfig:
    """Architecture and training hyperparameters; all of it goes into the cache key."""

    width: float
    image_size: int
    epochs: int
    batch_size: int = 32
    learning_rate: float = 2e-3  # Adam, cosine-decayed to 5% over the run
    max_shift: int = 0  # pixels; 0: image_size // 16, at least 1

    @classmethod
    def from_options(cls, options: BuiltinOptions) -> MobileNetConfig:
        epochs = options.epochs if options.epochs is not None else DEFAULT_EPOCHS
        return cls(width=options.width, image_size=options.image_size, epochs=epochs)

    @property
    def shift(self) -> int:
        return self.max_shift or max(1, self.image_size // 16)


def build_mobilenet_v2(
    image_size: int, width: float, classes: int = 10, input_name: str = "images", channels: int = 3
) -> Any:
    """An untrained flat tf_keras MobileNetV2 on [n, size, size, channels] float images -> logits."""
    _, keras = import_tf()
    inputs = keras.Input(shape=(image_size, image_size, channels), name=input_name)
    model = keras.applications.MobileNetV2(
        input_tensor=inputs,
        alpha=width,
        include_top=True,
        weights=None,
        classes=classes,
        classifier_activation=None,
    )
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM
    return model


def cache_key(data: Dataset, seed: int, config: MobileNetConfig) -> str:
    tf, keras = import_tf()
    spec = {
        "kind": KIND,
        "format": CACHE_FORMAT,
        "config": asdict(config),
        "bn_momentum": BN_MOMENTUM,
        "seed": seed,
        "tensorflow": tf.__version__,
        "tf_keras": keras.__version__,
    }
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode())
    digest.update(data.fingerprint().encode())
    return digest.hexdigest()


def get_tf_mobilenet(
    data: Dataset, seed: int = 0, options: BuiltinOptions | None = None, cache_root: Path | None = None
) -> TrainedTfModel:
    """The trained MobileNetV2 for `options`, from the cache if present and intact, else trained now
    and cached (a damaged cache is retrained over, with the reason in `cache_warning`)."""
    config = MobileNetConfig.from_options(options or BuiltinOptions())
    key = cache_key(data, seed, config)
    path = (cache_root or cache_dir()) / "models" / f"tf-{KIND}-{key[:24]}.keras"
    facts = {
        "architecture": f"tf_keras.applications.MobileNetV2(alpha={config.width:g}, weights=None)",
        "image_size": config.image_size,
        "width": config.width,
        "epochs": config.epochs,
        "augmentation": f"random shifts of up to {config.shift} px, zero-filled",
    }
    warning = None
    try:
        cached = read_model_cache(path)
    except CacheIntegrityError as exc:
        warning, cached = f"{exc}; retrained", None
        logger.warning("%s", warning)
    if cached is not None:
        model, seconds = cached
        accuracy = logits_accuracy(model, data.x_test, data.y_test)
        return TrainedTfModel(model, accuracy, seconds, True, path, key, KIND, facts=facts)

    logger.info(
        "training builtin:%s (%s, %d epochs); cached afterwards", KIND, facts["architecture"], config.epochs
    )
    start = time.perf_counter()
    model = train_mobilenet(config, data, seed)
    seconds = time.perf_counter() - start
    meta = {"train_seconds": seconds, "seed": seed, "config": asdict(config), "key": key}
    write_model_cache(path, model, meta)
    accuracy = logits_accuracy(model, data.x_test, data.y_test)
    return TrainedTfModel(model, accuracy, seconds, False, path, key, KIND, warning, facts=facts)


def train_mobilenet(config: MobileNetConfig, data: Dataset, seed: int = 0) -> Any:
    """Train from scratch, reproducibly for a given seed, data and TensorFlow build (op determinism
    on for the process, as for the other built-ins; Python's and numpy's global states restored)."""
    tf, keras = import_tf()
    if data.num_classes is None:
        raise ValueError("the built-in models are classifiers: the data needs labels and classes")
    x, y = np.asarray(data.x_train, dtype=np.float32), np.asarray(data.y_train)
    tf.config.experimental.enable_op_determinism()
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        keras.utils.set_random_seed(seed)
        model = build_mobilenet_v2(
            config.image_size,
            config.width,
            classes=data.num_classes,
            input_name=data.inputs[0].name,
            channels=x.shape[-1],
        )
        per_epoch = -(-len(x) // config.batch_size)
        schedule = keras.optimizers.schedules.CosineDecay(
            config.learning_rate, per_epoch * config.epochs, alpha=0.05
        )
        model.compile(
            optimizer=keras.optimizers.Adam(schedule),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        batches = shifted_batches(x, y, config.batch_size, config.shift, seed, config.epochs)
        model.fit(batches, steps_per_epoch=per_epoch, epochs=config.epochs, verbose=0)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return model


def shifted_batches(
    x: np.ndarray, y: np.ndarray, batch_size: int, max_shift: int, seed: int, epochs: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Training batches for every epoch in turn, each epoch shuffled and shifted from (seed, epoch)
    alone: one fit call covers the whole run (each extra call costs seconds of Keras setup). Every
    batch is full, the last one topped up from the epoch's start: a smaller one would be traced
    again (seconds, for this network)."""
    steps = -(-len(x) // batch_size)
    for epoch in range(epochs):
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(x))
        images, labels = shift_images(x[order], max_shift, rng), y[order]
        for step in range(steps):
            rows = np.arange(step * batch_size, (step + 1) * batch_size) % len(x)
            yield images[rows], labels[rows]


def shift_images(images: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """[n, h, w, c] images, each moved by its own (dy, dx) in [-max_shift, max_shift], zero-filled."""
    n, h, w = images.shape[:3]
    padded = np.pad(images, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)))
    offsets = rng.integers(0, 2 * max_shift + 1, size=(n, 2))
    out = np.empty_like(images)
    for i, (dy, dx) in enumerate(offsets):
        out[i] = padded[i, dy : dy + h, dx : dx + w]
    return out
