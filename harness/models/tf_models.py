"""The built-in TensorFlow reference models on digits: `builtin:mlp` (64-128-64-10) and `builtin:cnn`.

Both are tf_keras (Keras 2) models, because tensorflow-model-optimization only wraps Keras 2
layers, and both take the flat [n, 64] float32 rows (one float vector input, named like the
data's) and return [n, 10] logits: the CNN starts with
a Reshape to 8x8x1, so every variant and every server takes identical requests, and logits (not
softmax) keep the teacher's outputs usable for distillation at any temperature; the label is the
argmax either way.

Training is seeded with op determinism on and takes one to two seconds; the trained model is cached
under $HARNESS_CACHE_DIR as a tf_keras `.keras` file keyed by everything that determines it (like
`harness.models.torch_mlp`), so reruns load instead of retraining. The model and its metadata file
are checked against their sha256 sidecars before loading (`harness.models.cache`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from harness.compression.tensorflow.tf_import import import_tf
from harness.data.dataset import Dataset
from harness.models.cache import CacheIntegrityError, cache_dir, read_verified, seal, write_verified

logger = logging.getLogger(__name__)

# the digits built-ins; `builtin:mobilenet_v2` (images) is harness.models.tf_mobilenet, on these caches
BUILTIN_TF_MODELS: dict[str, Literal["mlp", "cnn"]] = {"builtin:mlp": "mlp", "builtin:cnn": "cnn"}
CACHE_FORMAT = 2  # bump when the cache file layout changes; 2: sha256 sidecar next to each file


@dataclass(frozen=True)
class TfModelConfig:
    """Architecture and training hyperparameters of one built-in; all of it goes into the cache key."""

    kind: Literal["mlp", "cnn"]
    hidden: tuple[int, ...]  # mlp: Dense widths; cnn: Conv2D filters, then one Dense width last
    epochs: int
    batch_size: int = 64
    learning_rate: float = 2e-3


DEFAULT_CONFIGS: dict[str, TfModelConfig] = {
    # ~0.97-0.98 test accuracy on digits in about a second (mlp) or two (cnn) of CPU training
    "mlp": TfModelConfig(kind="mlp", hidden=(128, 64), epochs=40),
    "cnn": TfModelConfig(kind="cnn", hidden=(16, 32, 64), epochs=30),
}


@dataclass
class TrainedTfModel:
    """A built-in reference model (tf_keras, uncompiled) and how it was obtained."""

    model: Any  # tf_keras.Model
    test_accuracy: float
    train_seconds: float  # time the training took when it actually ran (also on a cache hit)
    cache_hit: bool
    cache_path: Path
    key: str
    kind: str
    cache_warning: str | None = None  # why a cached file was not used (damaged, unreadable)

    facts: dict[str, Any] = field(default_factory=dict)  # what else the report shows (architecture, training)

    @property
    def accuracy(self) -> float:
        return self.test_accuracy

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "source": f"builtin:{self.kind}",
            "test_accuracy": self.test_accuracy,
            "train_seconds": round(self.train_seconds, 3),
            "cache_hit": self.cache_hit,
            "cache_path": str(self.cache_path),
            "outputs": "logits",
            **self.facts,
        }
        if self.cache_warning:
            info["cache_warning"] = self.cache_warning
        return info


def build_mlp(
    hidden: list[int] | tuple[int, ...], input_dim: int = 64, classes: int = 10, input_name: str = "inputs"
) -> Any:
    """An untrained tf_keras MLP: Dense+ReLU per hidden width, then a Dense logits layer.

    Layers get fixed names (hidden_1.., logits) so reports and per-kernel stats read the same in
    every process, whatever Keras' global name counter says. Also the distillation students. The
    input is named like the data's, so the exported signature takes what clients already send.
    """
    _, keras = import_tf()
    layers: list[Any] = [keras.Input(shape=(input_dim,), name=input_name)]
    for i, width in enumerate(hidden, start=1):
        layers.append(keras.layers.Dense(int(width), activation="relu", name=f"hidden_{i}"))
    layers.append(keras.layers.Dense(classes, name="logits"))
    return keras.Sequential(layers, name="digits_mlp")


def build_cnn(
    filters: tuple[int, ...] = (16, 32),
    dense: int = 64,
    input_dim: int = 64,
    classes: int = 10,
    input_name: str = "inputs",
) -> Any:
    """An untrained small CNN on the flat rows: Reshape to (8, 8, 1), Conv2D+MaxPool per entry of
    `filters`, Flatten, Dense+ReLU, Dense logits."""
    _, keras = import_tf()
    side = round(input_dim**0.5)
    if side * side != input_dim:
        raise ValueError(f"the CNN needs a square image; {input_dim} inputs are not one")
    L = keras.layers
    layers: list[Any] = [
        keras.Input(shape=(input_dim,), name=input_name),
        L.Reshape((side, side, 1), name="image"),
    ]
    for i, count in enumerate(filters, start=1):
        layers.append(L.Conv2D(count, 3, padding="same", activation="relu", name=f"conv_{i}"))
        layers.append(L.MaxPooling2D(2, name=f"pool_{i}"))
    layers += [L.Flatten(name="flatten"), L.Dense(dense, activation="relu", name="hidden_1")]
    layers.append(L.Dense(classes, name="logits"))
    return keras.Sequential(layers, name="digits_cnn")


def build_model(
    config: TfModelConfig, input_dim: int = 64, classes: int = 10, input_name: str = "inputs"
) -> Any:
    if config.kind == "mlp":
        return build_mlp(config.hidden, input_dim, classes, input_name)
    return build_cnn(config.hidden[:-1], config.hidden[-1], input_dim, classes, input_name)


def cache_key(data: Dataset, seed: int, config: TfModelConfig) -> str:
    tf, keras = import_tf()
    spec = {
        "format": CACHE_FORMAT,
        "config": asdict(config),
        "seed": seed,
        "tensorflow": tf.__version__,
        "tf_keras": keras.__version__,
    }
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode())
    digest.update(data.fingerprint().encode())
    return digest.hexdigest()


def get_reference_tf_model(
    kind: str,
    data: Dataset,
    seed: int = 0,
    config: TfModelConfig | None = None,
    cache_root: Path | None = None,
) -> TrainedTfModel:
    """The trained built-in `kind` ("mlp" | "cnn"), from the cache if present and intact, else trained
    now and cached. A damaged cache is retrained over, with the reason in `cache_warning`."""
    if kind not in DEFAULT_CONFIGS:
        raise ValueError(
            f"unknown built-in TensorFlow model {kind!r}; expected one of {sorted(DEFAULT_CONFIGS)}"
        )
    config = config or DEFAULT_CONFIGS[kind]
    key = cache_key(data, seed, config)
    path = (cache_root or cache_dir()) / "models" / f"tf-{kind}-{key[:24]}.keras"
    warning = None
    try:
        cached = read_model_cache(path)
    except CacheIntegrityError as exc:
        warning, cached = f"{exc}; retrained", None
        logger.warning("%s", warning)
    if cached is not None:
        model, seconds = cached
        accuracy = logits_accuracy(model, data.x_test, data.y_test)
        return TrainedTfModel(model, accuracy, seconds, True, path, key, kind)

    start = time.perf_counter()
    model = train_tf_model(config, data, seed)
    seconds = time.perf_counter() - start
    write_model_cache(
        path, model, {"train_seconds": seconds, "seed": seed, "config": asdict(config), "key": key}
    )
    return TrainedTfModel(
        model, logits_accuracy(model, data.x_test, data.y_test), seconds, False, path, key, kind, warning
    )


def train_tf_model(config: TfModelConfig, data: Dataset, seed: int = 0) -> Any:
    """Train from scratch, reproducibly for a given seed, data and TensorFlow build.

    Op determinism is switched on for the whole process (TensorFlow cannot switch it off again);
    it also makes the fine-tuning of later recipes reproducible. The Python and numpy global
    random states that set_random_seed overwrites are restored afterwards.
    """
    tf, keras = import_tf()
    if data.num_classes is None:
        raise ValueError("the built-in models are classifiers: the data needs labels and classes")
    tf.config.experimental.enable_op_determinism()
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        keras.utils.set_random_seed(seed)
        model = build_model(
            config, input_dim=data.x_train.shape[1], classes=data.num_classes, input_name=data.inputs[0].name
        )
        model.compile(
            optimizer=keras.optimizers.Adam(config.learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        model.fit(
            data.x_train,
            data.y_train,
            epochs=config.epochs,
            batch_size=config.batch_size,
            shuffle=True,
            verbose=0,
        )
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return model


def logits_accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of a Keras model's [n, classes] outputs (calling the model, not `predict`)."""
    scores = np.asarray(model(np.asarray(x, dtype=np.float32), training=False))
    return float(np.mean(scores.argmax(axis=1) == np.asarray(y)))


def read_model_cache(path: Path) -> tuple[Any, float] | None:
    """(model, train_seconds) from the cache; None if absent, CacheIntegrityError if damaged."""
    _, keras = import_tf()
    meta_path = path.with_suffix(".json")
    meta_bytes = read_verified(meta_path)  # written last: present means the model was written too
    if meta_bytes is None:
        return None
    model_bytes = read_verified(path)
    if model_bytes is None:
        raise CacheIntegrityError(f"model cache {path} is missing but its metadata is there")
    # Keras loads from a path; the verified bytes go to a private copy so that a file replaced
    # between the check and the load is never read unchecked (and a read-only cache still loads)
    with tempfile.TemporaryDirectory(prefix="harness-cache-") as private:
        copy = Path(private) / path.name
        try:
            copy.write_bytes(model_bytes)
            seconds = float(json.loads(meta_bytes)["train_seconds"])
            model = keras.models.load_model(copy, compile=False)
        except Exception as exc:  # a foreign file with a matching checksum is retrained over too
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CacheIntegrityError(f"model cache {path} does not load ({detail})") from None
    return model, seconds


def write_model_cache(path: Path, model: Any, meta: dict[str, Any]) -> None:
    # The model goes to a temporary name first (tf_keras wants the .keras suffix) and is renamed
    # into place, then sealed with the digest of the bytes this process wrote; the metadata and its
    # sidecar come last, so a reader never sees metadata without a model.
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save(tmp)
        data = tmp.read_bytes()
        os.replace(tmp, path)
        seal(path, data)
        write_verified(path.with_suffix(".json"), json.dumps(meta, indent=2).encode() + b"\n")
    except OSError as exc:  # a read-only cache must not fail the run: it only costs a retrain
        logger.warning("could not write model cache %s: %s", path, exc)
        tmp.unlink(missing_ok=True)
