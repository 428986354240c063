"""tf.distill: train a small tf_keras MLP student on a teacher's softened outputs (Hinton et al. 2015).

The teacher is any in-memory TensorFlow model with one input: a tf_keras model (built-in, user
file or python: factory) or a user's SavedModel without Keras metadata, run through its serving
signature. The student is the built-in MLP architecture with other hidden widths
(`harness.models.tf_models.build_mlp`), so tf.prune, tf.cluster, tf.qat and tf.ptq can compress
it in later steps; several inputs (token ids next to features) have no MLP reading of them, so
the recipe refuses such models, and regression teachers too (the loss is a softmax KL).

The student takes the teacher's input as it is: an image or any other multi-dimensional input
goes through a Flatten layer, an integer input (uint8 pixels) is cast to float by its first
Dense layer, and inputs beyond [-1, 1] are trained on scaled by one factor, 1 / max |x| over the
training split, which is then folded into the first kernel (no normalisation layer for the
later recipes to trip over). It keeps the teacher's output convention: logits, or a final Softmax
layer when the teacher emits probabilities.

Training is a custom GradientTape loop (one compiled step function), because Keras' fit has no
place for per-example teacher targets next to the labels without packing them into y. The same
student is also trained on the labels alone, from the same initial weights and batch order.
"""

from __future__ import annotations

import random
import time
from typing import Any, ClassVar

import numpy as np

from harness.compression.base import Recipe, RecipeContext, StepReport
from harness.compression.distillation import (
    DistillOutcome,
    distill_report,
    student_layers,
    teacher_logits,
)
from harness.compression.params import DistillParams
from harness.compression.tensorflow.model_io import (
    feed,
    fill_dynamic,
    first_line,
    keras_outputs,
    model_inputs,
)
from harness.compression.tensorflow.runner import GenericSavedModel, run_model
from harness.compression.tensorflow.stats import is_keras_model, savedmodel_tensors
from harness.compression.tensorflow.tf_import import import_tf
from harness.data.dataset import Dataset, Split
from harness.data.tensors import TensorSpec
from harness.errors import RunError, UserError
from harness.models.tf_models import build_mlp


class TfDistillRecipe(Recipe):
    """Replace the model by an MLP student trained on alpha * soft teacher targets + (1 - alpha) * labels."""

    name: ClassVar[str] = "tf.distill"
    framework: ClassVar[str] = "tensorflow"
    params_model = DistillParams
    params: DistillParams

    def apply(self, model: Any, context: RecipeContext | None = None) -> tuple[Any, StepReport]:
        if context is None:
            raise RunError(f"{self.name} needs the training data: call it with a RecipeContext")
        start = time.perf_counter()
        data, p = context.data, self.params
        spec = teacher_input(model, data, self.name)
        train, test = _labelled(data, self.name)
        classes = int(data.num_classes or 0)
        teacher = teacher_logits(_outputs(model, train, spec, self.name), classes)
        teacher_accuracy = _accuracy(_outputs(model, test, spec, self.name), test)

        x_train, x_test = features(train, spec), features(test, spec)
        peak = float(np.max(np.abs(x_train))) if x_train.size else 1.0
        scale = 1.0 / peak if peak > 1.0 else 1.0
        layers = student_layers(x_train.shape[1], list(p.student_hidden), classes)
        y_train = np.asarray(train.labels)
        t0 = time.perf_counter()
        trained = train_student(layers, x_train * scale, y_train, teacher.logits, p, context.seed, spec.name)
        train_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        alone = train_student(layers, x_train * scale, y_train, None, p, context.seed, spec.name)
        alone_seconds = time.perf_counter() - t0
        alone_accuracy = _accuracy(np.asarray(alone(x_test * scale, training=False)), test)

        student = served_student(trained, spec, scale, softmax=teacher.output_kind == "probabilities")
        outcome = DistillOutcome(
            layers=layers,
            teacher_accuracy=teacher_accuracy,
            student_accuracy=_accuracy(keras_outputs(student, test.inputs, (spec,)), test),
            student_alone_accuracy=alone_accuracy,
            teacher_param_count=_param_count(model),
            student_param_count=int(student.count_params()),
            teacher_output=teacher.output_kind,
            train_seconds=train_seconds,
            alone_seconds=alone_seconds,
        )
        report = distill_report(self.name, p, outcome, time.perf_counter() - start)
        report.details["student_input"] = spec.describe()
        report.details["input_scale"] = scale
        if len(spec.shape) != 1 or scale != 1.0 or not spec.dtype.startswith("float"):
            report.notes.append(
                f"the student reads {spec.describe()} flattened to {layers[0]} float features"
                + (f", scaled by 1/{peak:g} (folded into its first layer)" if scale != 1.0 else "")
            )
        return student, report


def teacher_input(model: Any, data: Dataset, recipe: str) -> TensorSpec:
    """The teacher's one input (its recorded spec, dynamic sizes from the data); UserError for a
    model with several inputs or for regression data."""
    if isinstance(model, GenericSavedModel):
        inputs = fill_dynamic(model.signature.inputs, data)
    elif is_keras_model(model):
        inputs = model_inputs(model, data)
    else:
        raise UserError(
            f"{recipe} needs a tf_keras model or a SavedModel as teacher, got {type(model).__name__}"
        )
    if len(inputs) != 1:
        raise UserError(
            f"{recipe} trains an MLP student on one input; this model takes "
            f"{', '.join(s.describe() for s in inputs)} (compress it with tf.ptq instead)"
        )
    if data.task != "classification":
        raise UserError(f"{recipe} distils class scores; this is a {data.task} model (use tf.ptq instead)")
    return inputs[0]


def features(split: Split, spec: TensorSpec) -> np.ndarray:
    """The split's input as float32 rows (n, d): what the MLP student trains on."""
    array = feed(split.inputs, (spec,))[spec.name]
    return np.ascontiguousarray(array.reshape(len(array), -1), dtype=np.float32)


def served_student(trained: Any, spec: TensorSpec, scale: float, *, softmax: bool) -> Any:
    """The trained student taking the teacher's input as it is: Flatten for a multi-dimensional
    input, the scale folded into the first kernel, a Softmax when the teacher emits probabilities.
    The trained student itself when none of that applies (a float vector input, logits)."""
    _, keras = import_tf()
    flatten = len(spec.shape) != 1
    if not (flatten or softmax or scale != 1.0 or not spec.dtype.startswith("float")):
        return trained
    if scale != 1.0:
        first = trained.layers[0]  # the private student: its kernel is ours to rescale
        first.kernel.assign(first.kernel * scale)
    layers: list[Any] = [keras.Input(shape=spec.shape, dtype=spec.dtype, name=spec.name)]
    if flatten:
        layers.append(keras.layers.Flatten(name="flatten"))
    layers += list(trained.layers)
    if softmax:
        layers.append(keras.layers.Softmax(name="probabilities"))
    return keras.Sequential(layers, name=trained.name)


def train_student(
    layers: list[int],
    x: np.ndarray,
    y: np.ndarray,
    teacher_logits: np.ndarray | None,
    params: DistillParams,
    seed: int,
    input_name: str = "inputs",
) -> Any:
    """Train a fresh tf_keras student (logits output); with `teacher_logits` None, on the labels alone.

    Loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(labels).
    The initial weights come from the seed (Keras' global seeds, with Python's and NumPy's global
    random states restored afterwards) and the batch order from a private NumPy generator. Op
    determinism is not switched on here: it is process-wide and cannot be switched off again, and
    the Dense matmuls and batch reductions of a model this small run the same way every time on
    CPU (the tests check that two trainings give identical weights).
    """
    tf, keras = import_tf()

    temperature = float(params.temperature)
    alpha = float(params.alpha) if teacher_logits is not None else 0.0
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        keras.utils.set_random_seed(seed)
        student = build_mlp(layers[1:-1], input_dim=layers[0], classes=layers[-1], input_name=input_name)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    optimizer = keras.optimizers.Adam(learning_rate=params.learning_rate)
    optimizer.build(student.trainable_variables)  # create the slots outside the compiled step

    soft_targets = (
        tf.nn.softmax(tf.constant(teacher_logits) / temperature) if teacher_logits is not None else None
    )
    x_all = tf.constant(np.asarray(x, dtype=np.float32))
    y_all = tf.constant(np.asarray(y, dtype=np.int64))
    targets = soft_targets if soft_targets is not None else tf.zeros((len(x), layers[-1]))

    @tf.function(reduce_retracing=True)
    def step(batch: Any) -> None:
        xb, yb, tb = tf.gather(x_all, batch), tf.gather(y_all, batch), tf.gather(targets, batch)
        with tf.GradientTape() as tape:
            logits = student(xb, training=True)
            hard = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=yb, logits=logits))
            loss = (1.0 - alpha) * hard
            if alpha > 0.0:
                # KL(p_t || p_s) per example = sum p_t * (log p_t - log p_s); batch mean as in torch's
                # "batchmean". xlogy keeps 0 * log 0 at 0 for targets that underflowed.
                log_student = tf.nn.log_softmax(logits / temperature)
                kl = tf.reduce_sum(tf.math.xlogy(tb, tb) - tb * log_student, axis=1)
                loss += alpha * temperature**2 * tf.reduce_mean(kl)
        grads = tape.gradient(loss, student.trainable_variables)
        optimizer.apply_gradients(zip(grads, student.trainable_variables, strict=True))

    order = np.random.default_rng(seed)
    for _ in range(params.epochs):
        permutation = order.permutation(len(x))
        for i in range(0, len(x), params.batch_size):
            step(tf.constant(permutation[i : i + params.batch_size]))
    return student


def _outputs(model: Any, split: Split, spec: TensorSpec, recipe: str) -> np.ndarray:
    """(n, classes) outputs of the teacher on a split: a tf_keras model called directly, a user's
    SavedModel through its serving signature."""
    try:
        return run_model(model, split.inputs, (spec,))
    except UserError:
        raise
    except Exception as exc:  # a user's model with another input contract
        raise UserError(
            f"{recipe}: the teacher could not be run on {spec.describe()}: {first_line(exc)}"
        ) from None


def _labelled(data: Dataset, recipe: str) -> tuple[Split, Split]:
    if data.train is None or data.train.labels is None or data.test.labels is None:
        raise UserError(
            f"{recipe} needs labelled train and test splits (the student also learns from labels)"
        )
    return data.train, data.test


def _accuracy(outputs: np.ndarray, split: Split) -> float:
    return float(np.mean(np.asarray(outputs).argmax(axis=1) == split.labels))


def _param_count(model: Any) -> int:
    """Parameters of a tf_keras model, or of the variables a user's SavedModel's serving signature
    computes with (what the SavedModel itself holds may include optimizer slots)."""
    if hasattr(model, "count_params"):
        return int(model.count_params())
    if isinstance(model, GenericSavedModel):
        return int(sum(t.values.size for t in savedmodel_tensors(model.signature.fn)))
    return 0
