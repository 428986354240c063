"""tf.distill: train a small tf_keras MLP student on a teacher's softened outputs (Hinton et al. 2015).

The teacher is any tf_keras model mapping the flat [n, 64] float32 rows to [n, 10] scores (the
built-in MLP or CNN, or a user's .keras/.h5 model); a loaded SavedModel works through its
serving signature. The student is the built-in MLP architecture with other hidden widths
(`harness.models.tf_models.build_mlp`), a plain Sequential of Dense layers, so tf.prune,
tf.cluster, tf.qat and tf.ptq can compress it in later steps. It keeps the teacher's output
convention: logits, or a final Softmax layer when the teacher emits probabilities.

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
from harness.compression.tensorflow.tf_import import import_tf
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
        teacher = teacher_logits(_outputs(model, data.x_train, self.name), data.num_classes)
        teacher_accuracy = _accuracy(_outputs(model, data.x_test, self.name), data.y_test)

        layers = student_layers(data.input_shape[0], list(p.student_hidden), data.num_classes)
        t0 = time.perf_counter()
        student = train_student(layers, data.x_train, data.y_train, teacher.logits, p, context.seed)
        train_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        alone = train_student(layers, data.x_train, data.y_train, None, p, context.seed)
        alone_seconds = time.perf_counter() - t0

        if teacher.output_kind == "probabilities":
            student = _with_softmax(student)
        outcome = DistillOutcome(
            layers=layers,
            teacher_accuracy=teacher_accuracy,
            student_accuracy=_accuracy(_outputs(student, data.x_test, self.name), data.y_test),
            student_alone_accuracy=_accuracy(_outputs(alone, data.x_test, self.name), data.y_test),
            teacher_param_count=_param_count(model),
            student_param_count=int(student.count_params()),
            teacher_output=teacher.output_kind,
            train_seconds=train_seconds,
            alone_seconds=alone_seconds,
        )
        return student, distill_report(self.name, p, outcome, time.perf_counter() - start)


def train_student(
    layers: list[int],
    x: np.ndarray,
    y: np.ndarray,
    teacher_logits: np.ndarray | None,
    params: DistillParams,
    seed: int,
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
        student = build_mlp(layers[1:-1], input_dim=layers[0], classes=layers[-1])
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


def _with_softmax(student: Any) -> Any:
    """The trained student with a final Softmax layer, so it outputs probabilities like its teacher."""
    _, keras = import_tf()
    inputs = keras.Input(shape=student.input_shape[1:], name="inputs")
    layers = [*student.layers, keras.layers.Softmax(name="probabilities")]
    return keras.Sequential([inputs, *layers], name=student.name)


def _outputs(model: Any, x: np.ndarray, recipe: str) -> np.ndarray:
    """[n, classes] outputs of the teacher: a tf_keras model, or any callable taking float32 rows
    (the backend's GenericSavedModel, which runs a user's SavedModel through its serving signature)."""
    _, keras = import_tf()
    rows = np.ascontiguousarray(x, dtype=np.float32)
    if not callable(model):
        raise UserError(f"{recipe} needs a teacher model to call, got {type(model).__name__}")
    try:
        out = model(rows, training=False) if isinstance(model, keras.Model) else model(rows)
        return np.asarray(out, dtype=np.float32)
    except Exception as exc:  # a user's model with another input contract
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"{recipe}: the teacher could not be run on [n, 64] float32 inputs: {detail}"
        ) from None


def _accuracy(outputs: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(outputs.argmax(axis=1) == truth))


def _param_count(model: Any) -> int:
    """Parameters of a tf_keras model, or the variables of a user's SavedModel (the backend's
    GenericSavedModel keeps the loaded object at `.signature.loaded`); 0 if none can be found."""
    if hasattr(model, "count_params"):
        return int(model.count_params())
    loaded = getattr(getattr(model, "signature", None), "loaded", model)
    return int(sum(int(np.prod(v.shape)) for v in getattr(loaded, "variables", ())))
