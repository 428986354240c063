"""What the three tfmot recipes (tf.prune, tf.cluster, tf.qat) share: checking and copying the
Keras model, wrapping its kernel layers, seeded fine-tuning on the digits training split, and
in-memory accuracy and weight statistics for the step report.

tfmot wraps the layer *instances* of the model it is given (cluster_weights even rewrites their
weights), so every recipe works on `clone_with_weights(model)` and leaves the caller's model alone.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from harness.compression.base import RecipeContext
from harness.compression.params import _FineTune
from harness.compression.tensorflow.tf_import import import_tf
from harness.errors import RunError, UserError
from harness.models.digits import DigitsSplit


def require_context(context: RecipeContext | None, recipe: str) -> RecipeContext:
    """The context; RunError without it, because every tfmot recipe fine-tunes on its training data."""
    if context is None:
        raise RunError(f"{recipe} fine-tunes on the training data: call it with a RecipeContext")
    return context


def clone_with_weights(model: Any, recipe: str) -> Any:
    """A copy of `model` with its own layers and the same weights (tfmot mutates what it wraps).

    UserError for subclassed models: they have no layer graph to clone or wrap (tfmot checks
    the same `_is_graph_network` flag before it wraps a model).
    """
    _, keras = import_tf()
    if not getattr(model, "_is_graph_network", False):
        raise UserError(
            f"{recipe} needs a Sequential or functional tf_keras model with a known input shape; "
            f"{type(model).__name__} is a subclassed (or unbuilt) model whose layers cannot be wrapped"
        )
    try:
        copy = keras.models.clone_model(model)
        copy.set_weights(model.get_weights())
    except ValueError as err:
        raise UserError(f"{recipe} cannot copy the model to compress it: {first_line(err)}") from None
    return copy


def kernel_layer_types() -> tuple[Any, ...]:
    """Layer classes whose `kernel` the tfmot recipes compress: Dense and the convolutions.

    Reshape, Flatten, pooling and the like carry no weights and are left as they are.
    """
    _, keras = import_tf()
    layers = keras.layers
    return (layers.Dense, layers.Conv1D, layers.Conv2D, layers.Conv3D)


def wrap_layers(model: Any, wrap: Callable[[Any], Any], select: Callable[[Any], bool]) -> Any:
    """A new model whose layers for which `select(layer)` holds are replaced by `wrap(layer)`.

    The other layer instances are reused as they are, so call it on a private clone.
    """
    _, keras = import_tf()
    return keras.models.clone_model(
        model, clone_function=lambda layer: wrap(layer) if select(layer) else layer
    )


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed TensorFlow (fit's shuffling, wrapper initialisers, k-means++ centroids) for a block.

    keras.utils.set_random_seed also reseeds Python's and NumPy's global generators; their states
    are restored afterwards so a recipe does not change what the caller draws next.
    """
    _, keras = import_tf()
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        keras.utils.set_random_seed(seed)
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def fine_tune_steps(n_train: int, batch_size: int, epochs: int) -> int:
    """Optimizer steps of a fine-tuning run: what pruning schedules count in."""
    return math.ceil(n_train / batch_size) * epochs


def outputs_probabilities(model: Any, x: np.ndarray) -> bool:
    """True if `model` ends in a softmax (rows non-negative, summing to 1), False for logits.

    Decides the loss's `from_logits`; the built-in models output logits, a user's may not.
    """
    out = predict(model, x[:32])
    return bool(np.all(out >= 0) and np.allclose(out.sum(axis=1), 1.0, atol=1e-3))


def fine_tune(
    model: Any, data: DigitsSplit, params: _FineTune, seed: int, callbacks: Sequence[Any] = ()
) -> float:
    """Compile `model` with Adam and sparse cross-entropy and train it on the training split.

    Returns the seconds spent in fit. Deterministic for a given seed on CPU.
    """
    import time

    _, keras = import_tf()
    check_classifier_output(model, data)
    from_logits = not outputs_probabilities(model, data.x_train)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=params.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
    )
    start = time.perf_counter()
    with seeded(seed):
        model.fit(
            data.x_train,
            data.y_train,
            epochs=params.fine_tune_epochs,
            batch_size=params.batch_size,
            shuffle=True,
            verbose=0,
            callbacks=list(callbacks),
        )
    return time.perf_counter() - start


def check_classifier_output(model: Any, data: DigitsSplit) -> None:
    """UserError unless `model` maps [n, 64] to [n, num_classes] scores."""
    out = predict(model, data.x_train[:2])
    if out.shape != (2, data.num_classes):
        raise UserError(
            f"the model must map [n, {data.input_shape[0]}] inputs to [n, {data.num_classes}] class "
            f"scores, but gives shape {list(out.shape)} for 2 examples"
        )


def predict(model: Any, x: np.ndarray) -> np.ndarray:
    """Model outputs as NumPy, by a direct call (model.predict costs a lot of per-call overhead)."""
    return np.asarray(model(np.ascontiguousarray(x), training=False))


def keras_accuracy(model: Any, data: DigitsSplit) -> float:
    """Fraction of the test split `model` classifies correctly, computed in memory."""
    labels = predict(model, data.x_test).argmax(axis=1)
    return float(np.mean(labels == data.y_test))


# Trained dense weights are never exactly zero; a larger zero fraction in the kernels means an
# earlier tf.prune step, whose zeros tf.cluster and tf.qat then keep instead of training them away.
SPARSE_INPUT = 0.05


def kernel_zero_fraction(layers: Sequence[Any]) -> float:
    """Fraction of exact zeros over the kernels of `layers` (Dense/convolution layers)."""
    kernels = [np.asarray(layer.kernel) for layer in layers]
    total = sum(k.size for k in kernels)
    return sum(int(np.count_nonzero(k == 0)) for k in kernels) / total if total else 0.0


def kernel_layers(model: Any) -> list[Any]:
    """The Dense/convolution layers of a (stripped) model, in order."""
    types = kernel_layer_types()
    return [layer for layer in model.layers if isinstance(layer, types)]


def first_line(err: BaseException) -> str:
    """The first line of an exception message (tfmot and the converter write paragraphs)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
