"""Run TensorFlow artifacts in this process: SavedModels through their serving signature, TFLite
files through ai_edge_litert.

A SavedModel runs through its `serving_default` concrete function, not `model.predict` (about
50 ms of Keras overhead per call at batch 1, against well under a millisecond here). TFLite runs
through `ai_edge_litert.interpreter.Interpreter` (tf.lite.Interpreter is deprecated); an
interpreter is not thread-safe, so each calling thread gets its own, and int8 inputs and outputs
are (de)quantized with the tensor's scale and zero point so callers always pass and get float32.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.artifacts import ServedArtifact
from harness.compression.tensorflow.tf_import import import_tf
from harness.errors import RunError, UserError

SERVING_SIGNATURE = "serving_default"


@dataclass
class SavedModelSignature:
    """The serving signature of a loaded SavedModel: which input to feed and which output to read."""

    path: Path
    loaded: Any  # the object tf.saved_model.load returned (kept alive: the function needs it)
    fn: Any  # the signature's concrete function
    key: str
    all_keys: list[str]
    input_name: str
    output_name: str
    input_dtype: str
    output_dtype: str
    input_spec: Any  # tf.TensorSpec of the input

    @classmethod
    def load(cls, path: Path) -> SavedModelSignature:
        """Load `path` and pick `serving_default` (or the only signature); UserError if there is none
        with exactly one input, or no single output (or one named `scores`) to read."""
        tf, _ = import_tf()
        try:
            loaded = tf.saved_model.load(str(path))
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"SavedModel {path} could not be loaded: {first}") from None
        keys = sorted(loaded.signatures.keys())
        if SERVING_SIGNATURE in keys:
            key = SERVING_SIGNATURE
        elif len(keys) == 1:
            key = keys[0]
        else:
            raise UserError(
                f"SavedModel {path}: expected a '{SERVING_SIGNATURE}' signature, found {keys or 'none'}"
            )
        fn = loaded.signatures[key]
        inputs = fn.structured_input_signature[1]
        outputs = fn.structured_outputs
        if len(inputs) != 1:
            raise UserError(
                f"SavedModel {path}: signature {key!r} takes inputs {sorted(inputs)}; expected exactly one "
                "float32 tensor of shape [batch, 64]"
            )
        ((input_name, spec),) = inputs.items()
        if len(outputs) == 1:
            output_name = next(iter(outputs))
        elif "scores" in outputs:
            output_name = "scores"
        else:
            raise UserError(
                f"SavedModel {path}: signature {key!r} returns {sorted(outputs)}; expected one output "
                "(or one named 'scores') of shape [batch, 10]"
            )
        return cls(
            path=Path(path),
            loaded=loaded,
            fn=fn,
            key=key,
            all_keys=keys,
            input_name=input_name,
            output_name=output_name,
            input_dtype=spec.dtype.name,
            output_dtype=outputs[output_name].dtype.name,
            input_spec=spec,
        )

    def scores(self, rows: np.ndarray) -> np.ndarray:
        tf, _ = import_tf()
        outputs = self.fn(**{self.input_name: tf.constant(rows, dtype=self.input_spec.dtype)})
        return np.asarray(outputs[self.output_name].numpy(), dtype=np.float32)


@dataclass
class GenericSavedModel:
    """A user's SavedModel that tf_keras cannot load as a Keras model (no keras_metadata.pb):
    served and PTQ-converted as given; the tfmot recipes refuse it (no layers to wrap)."""

    path: Path
    signature: SavedModelSignature

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        return self.signature.scores(np.asarray(rows, dtype=np.float32))


class TfliteScorer:
    """Scores float32 rows with a TFLite flatbuffer; one interpreter per calling thread."""

    def __init__(self, content: bytes, num_threads: int = 1) -> None:
        self.content = content
        self.num_threads = num_threads
        self._local = threading.local()
        self._check = self._interpreter()  # fail now, in the caller, if the bytes are not a model
        self.input_dtype = np.dtype(self._check["input"]["dtype"]).name
        self.output_dtype = np.dtype(self._check["output"]["dtype"]).name

    def _interpreter(self) -> dict[str, Any]:
        state: dict[str, Any] | None = getattr(self._local, "state", None)
        if state is None:
            from ai_edge_litert.interpreter import Interpreter

            try:
                interpreter = Interpreter(model_content=self.content, num_threads=self.num_threads)
            except ValueError as exc:
                raise RunError(f"the TFLite model cannot be loaded: {exc}") from exc
            inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
            if len(inputs) != 1 or len(outputs) != 1:
                raise UserError(
                    f"TFLite model has {len(inputs)} inputs and {len(outputs)} outputs; expected one each"
                )
            state = {"interpreter": interpreter, "input": inputs[0], "output": outputs[0], "shape": None}
            self._local.state = state
        return state

    def scores(self, rows: np.ndarray) -> np.ndarray:
        state = self._interpreter()
        interpreter = state["interpreter"]
        if state["shape"] != rows.shape:  # resizing re-plans memory: only when the batch changes
            interpreter.resize_tensor_input(state["input"]["index"], list(rows.shape))
            interpreter.allocate_tensors()
            state["input"] = interpreter.get_input_details()[0]
            state["output"] = interpreter.get_output_details()[0]
            state["shape"] = rows.shape
        feed = _quantize(rows, state["input"])
        interpreter.set_tensor(state["input"]["index"], feed)
        interpreter.invoke()
        return _dequantize(interpreter.get_tensor(state["output"]["index"]), state["output"])


class TfArtifactRunner:
    """Runs a TensorFlow served artifact (SavedModel folder or .tflite file) in this process.

    Safe to call from several threads at once: concrete functions are, and TFLite gets a
    per-thread interpreter.
    """

    def __init__(self, artifact: ServedArtifact) -> None:
        if artifact.framework != "tensorflow":
            raise UserError(f"cannot run a {artifact.framework} artifact with TensorFlow: {artifact.path}")
        self.artifact = artifact
        path = Path(artifact.path)
        self.signature: SavedModelSignature | None = None
        self.tflite: TfliteScorer | None = None
        if artifact.format == "savedmodel":
            if not (path / "saved_model.pb").is_file():
                raise RunError(f"SavedModel not found: {path} has no saved_model.pb")
            self.signature = SavedModelSignature.load(path)
        elif artifact.format == "tflite":
            if not path.is_file():
                raise RunError(f"artifact file not found: {path}")
            self.tflite = TfliteScorer(path.read_bytes())
        else:
            raise UserError(f"unsupported TensorFlow artifact format {artifact.format!r} for {path}")

    def _as_batch(self, batch: np.ndarray) -> np.ndarray:
        rows = np.asarray(batch, dtype=np.float32)
        shape = tuple(self.artifact.input_shape)
        if rows.shape == shape:  # a single example
            rows = rows[None]
        if rows.shape[1:] != shape:
            raise ValueError(f"expected a batch of shape (n, {', '.join(map(str, shape))}), got {rows.shape}")
        return np.ascontiguousarray(rows)

    def predict_scores(self, batch: np.ndarray) -> np.ndarray:
        rows = self._as_batch(batch)
        if self.signature is not None:
            return self.signature.scores(rows)
        assert self.tflite is not None
        return self.tflite.scores(rows)

    def predict_labels(self, batch: np.ndarray, chunk: int = 4096) -> np.ndarray:
        rows = self._as_batch(batch)
        parts = [self.predict_scores(rows[i : i + chunk]).argmax(axis=1) for i in range(0, len(rows), chunk)]
        return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, dtype=np.int64)


def _quantize(rows: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype == np.float32:
        return rows
    scale, zero_point = detail["quantization"]
    if not scale:
        raise RunError(f"TFLite input is {dtype.name} without quantization parameters; cannot feed floats")
    info = np.iinfo(dtype)
    return np.clip(np.round(rows / scale + zero_point), info.min, info.max).astype(dtype)


def _dequantize(values: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return values.astype(np.float32, copy=False)
    scale, zero_point = detail["quantization"]
    if not scale:
        raise RunError(f"TFLite output is {dtype.name} without quantization parameters")
    return (values.astype(np.float32) - zero_point) * np.float32(scale)
