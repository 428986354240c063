"""What the three tfmot recipes (tf.prune, tf.cluster, tf.qat) share: checking and copying the
Keras model, wrapping its kernel layers, seeded fine-tuning on the data's training split, and
in-memory test quality and weight statistics for the step report.

tfmot wraps the layer *instances* of the model it is given (cluster_weights even rewrites their
weights), so every recipe works on `clone_with_weights(model)` and leaves the caller's model alone.
Fine-tuning feeds the model its named inputs in its own order and picks the loss from the task:
sparse cross-entropy for classification (from logits unless the model ends in a softmax), mean
squared error for regression.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from harness.compression.base import RecipeContext
from harness.compression.params import _FineTune
from harness.compression.tensorflow.model_io import feed, first_line, keras_args, keras_outputs, model_inputs
from harness.compression.tensorflow.tf_import import import_tf
from harness.data.dataset import Dataset, Split
from harness.errors import RunError, UserError


def require_context(context: RecipeContext | None, recipe: str) -> RecipeContext:
    """The context; RunError without it, because every tfmot recipe fine-tunes on its training data."""
    if context is None:
        raise RunError(f"{recipe} fine-tunes on the training data: call it with a RecipeContext")
    return context


def train_split(data: Dataset, recipe: str) -> Split:
    """The labelled training split; UserError naming the recipe when there is none."""
    if data.train is None or data.train.labels is None:
        raise UserError(
            f"{recipe} fine-tunes on labelled training data; the data has no labelled train split"
        )
    return data.train


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


def outputs_probabilities(model: Any, data: Dataset, split: Split) -> bool:
    """True if `model` ends in a softmax (rows non-negative, summing to 1), False for logits.

    Decides the loss's `from_logits`; the built-in models output logits, a user's may not.
    """
    out = predict(model, data, split.head(32))
    return bool(np.all(out >= 0) and np.allclose(out.sum(axis=1), 1.0, atol=1e-3))


def fine_tune(
    model: Any, data: Dataset, params: _FineTune, seed: int, callbacks: Sequence[Any] = ()
) -> float:
    """Compile `model` with Adam and the task's loss and train it on the training split.

    Returns the seconds spent in fit. Deterministic for a given seed on CPU.
    """
    _, keras = import_tf()
    split = train_split(data, "fine-tuning")
    check_output(model, data, split)
    if data.task == "classification":
        from_logits = not outputs_probabilities(model, data, split)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
    else:
        loss = keras.losses.MeanSquaredError()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=params.learning_rate), loss=loss)
    x = keras_args(model, feed(split.inputs, model_inputs(model, data)))
    y = np.asarray(split.labels)
    start = time.perf_counter()
    with seeded(seed):
        model.fit(
            x,
            y,
            epochs=params.fine_tune_epochs,
            batch_size=params.batch_size,
            shuffle=True,
            verbose=0,
            callbacks=list(callbacks),
        )
    return time.perf_counter() - start


def check_output(model: Any, data: Dataset, split: Split) -> None:
    """UserError unless `model` returns one row per example, as wide as the labels need."""
    out = predict(model, data, split.head(2))
    labels = np.asarray(split.labels)
    width = (
        data.num_classes if data.task == "classification" else (labels.shape[1] if labels.ndim == 2 else 1)
    )
    if out.shape != (len(out), width):
        what = "class scores" if data.task == "classification" else "values"
        raise UserError(
            f"the model must map its inputs to [n, {width}] {what}, "
            f"but gives shape {list(out.shape)} for {len(out)} examples"
        )


def predict(model: Any, data: Dataset, split: Split) -> np.ndarray:
    """Model outputs (n, width) as NumPy, by a direct call (model.predict costs per-call overhead)."""
    return keras_outputs(model, split.inputs, model_inputs(model, data))


def quality_on_test(model: Any, data: Dataset) -> tuple[str, float] | None:
    """('accuracy', top-1) for classification, ('mse', mean squared error) for regression, on the
    test split computed in memory; None for unlabelled test data."""
    labels = data.test.labels
    if labels is None:
        return None
    out = predict(model, data, data.test)
    return quality_of(out, labels, data)


def quality_of(outputs: np.ndarray, labels: np.ndarray, data: Dataset) -> tuple[str, float]:
    """The test quality of given outputs: accuracy for classification, mse for regression."""
    if data.task == "classification":
        return "accuracy", float(np.mean(outputs.argmax(axis=1) == labels))
    values = np.asarray(labels, dtype=np.float32).reshape(len(labels), -1)
    return "mse", float(np.mean((outputs - values) ** 2))


def quality_details(before: tuple[str, float] | None, after: tuple[str, float] | None) -> dict[str, float]:
    """{'accuracy_before': .., 'accuracy_after': ..} (or mse_*) for a step report."""
    out: dict[str, float] = {}
    if before is not None:
        out[f"{before[0]}_before"] = before[1]
    if after is not None:
        out[f"{after[0]}_after"] = after[1]
    return out


def quality_note(before: tuple[str, float] | None, after: tuple[str, float] | None) -> str:
    """'; test accuracy 0.9711 -> 0.9689' for a step's note, or '' without test labels."""
    if before is None or after is None:
        return ""
    return f"; test {before[0]} {before[1]:.4f} -> {after[1]:.4f}"


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
