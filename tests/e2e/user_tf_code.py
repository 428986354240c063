"""TensorFlow models and data a user brings, for the end-to-end tests (see user_code.py for torch).

Copied next to the scenario as `user_tf_models.py` for `python:` sources; TensorFlow is imported
through the harness's shim because tfmot needs legacy Keras (tf_keras) set before the first import.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.compression.tensorflow.tf_import import import_tf
from tests.e2e.user_code import as_uint8, split

tf, keras = import_tf()


def as_pixels(x: np.ndarray) -> np.ndarray:
    """Digits rows (0..1 floats) as uint8 8x8x1 images, the way a camera pipeline hands them over."""
    return as_uint8(x).reshape(-1, 8, 8, 1)


def make_pixels_model() -> Any:
    """uint8 NHWC `pixels` -> softmax `probs`, scaling inside the model."""
    layers = keras.layers
    pixels = keras.Input((8, 8, 1), dtype="uint8", name="pixels")
    x = layers.Rescaling(1 / 255)(pixels)  # casts the uint8 pixels to float32 itself
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(32, activation="relu")(x)
    return keras.Model(pixels, layers.Dense(10, activation="softmax", name="probs")(x), name="pixels_cnn")


def make_mlp() -> Any:
    return keras.Sequential(
        [
            keras.Input((64,), name="features"),
            keras.layers.Dense(48, activation="relu"),
            keras.layers.Dense(10),
        ]
    )


def load_pixels() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A python: data function: the user's split as uint8 images."""
    return {name: (as_pixels(x), y) for name, (x, y) in split().items()}


def train(model: Any, x: np.ndarray, y: np.ndarray, *, logits: bool, epochs: int = 15) -> Any:
    keras.utils.set_random_seed(0)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=logits)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=loss)
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model


def save_generic(model: Any, folder: str) -> None:
    """A SavedModel of a tf.Module with an explicit `pixels` -> `probs` signature: no Keras metadata."""
    module = tf.Module()
    module.weights = list(model.variables)

    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.uint8, name="pixels")])
    def serve(pixels: Any) -> dict[str, Any]:
        return {"probs": model(pixels, training=False)}

    module.serve = serve
    tf.saved_model.save(module, folder, signatures={"serving_default": serve})
