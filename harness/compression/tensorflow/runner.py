"""Run TensorFlow models in this process: SavedModels through their serving signature, TFLite
files through ai_edge_litert, tf_keras models by a direct call; named inputs in, float32 rows out.

A SavedModel runs through its `serving_default` concrete function, not `model.predict` (about
50 ms of Keras overhead per call at batch 1, against well under a millisecond here). TFLite runs
through `ai_edge_litert.interpreter.Interpreter` (tf.lite.Interpreter is deprecated); an
interpreter is not thread-safe, so each calling thread gets its own. Inputs are matched by the
TFLite signature's names. A float input that the file stores as int8/uint8 is quantized with the
tensor's scale and zero point, and an integer output is dequantized (harness.serving.quantized_io,
the arithmetic every client path shares), so callers always pass the model's own dtypes and get
float32; integer inputs that were never quantized (token ids, uint8 pixels) pass through as they are.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.artifacts import ServedArtifact
from harness.compression.tensorflow.model_io import (
    feed,
    first_line,
    keras_outputs,
    rows,
    spec_from_shape,
)
from harness.compression.tensorflow.tf_import import import_tf
from harness.compression.tensorflow.tflite_model import TFLiteModel
from harness.data.tensors import Batch, TensorSpec, batch_len, batch_slice
from harness.errors import RunError, UserError
from harness.serving.quantized_io import TensorQuantization, WireQuantization

SERVING_SIGNATURE = "serving_default"
# Which output to read when a signature returns several: the harness's own name first, then the
# names classifiers and regressors commonly give their one meaningful output.
PREFERRED_OUTPUTS = ("scores", "probs", "probabilities", "logits", "predictions", "outputs", "output_0")
CHUNK_ROWS = 4096  # rows per call when predicting a whole test set: bounds peak memory


@dataclass
class SavedModelSignature:
    """The serving signature of a loaded SavedModel: its named inputs and the output to read."""

    path: Path
    loaded: Any  # the object tf.saved_model.load returned (kept alive: the function needs it)
    fn: Any  # the signature's concrete function
    key: str
    all_keys: list[str]
    inputs: tuple[TensorSpec, ...]  # as recorded: -1 for dimensions the signature leaves open
    output_name: str
    output_names: list[str]
    output_dtype: str

    @classmethod
    def load(cls, path: Path) -> SavedModelSignature:
        """Load `path` and pick `serving_default` (or the only signature); UserError if there is
        none, or it has several outputs and none of the usual names."""
        tf, _ = import_tf()
        try:
            loaded = tf.saved_model.load(str(path))
        except Exception as exc:
            raise UserError(f"SavedModel {path} could not be loaded: {first_line(exc)}") from None
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
        where = f"SavedModel {path} signature {key!r}"
        specs = fn.structured_input_signature[1]
        if not specs:
            raise UserError(f"{where} takes no inputs")
        inputs = tuple(
            spec_from_shape(name, spec.shape.as_list(), spec.dtype.name, where)
            for name, spec in specs.items()
        )
        outputs = fn.structured_outputs
        output_name = pick_output(sorted(outputs), where)
        return cls(
            path=Path(path),
            loaded=loaded,
            fn=fn,
            key=key,
            all_keys=keys,
            inputs=inputs,
            output_name=output_name,
            output_names=sorted(outputs),
            output_dtype=outputs[output_name].dtype.name,
        )

    def outputs(self, batch: Batch | np.ndarray) -> np.ndarray:
        tf, _ = import_tf()
        fed = feed(batch, self.inputs)
        result = self.fn(**{name: tf.constant(array) for name, array in fed.items()})
        return rows(result[self.output_name].numpy())


@dataclass
class GenericSavedModel:
    """A user's SavedModel that tf_keras cannot load as a Keras model (no keras_metadata.pb):
    served and PTQ-converted as given; the tfmot recipes refuse it (no layers to wrap)."""

    path: Path
    signature: SavedModelSignature

    def outputs(self, batch: Batch | np.ndarray) -> np.ndarray:
        return self.signature.outputs(batch)


class TfliteRunner:
    """Runs a TFLite flatbuffer on named inputs; one interpreter per calling thread."""

    def __init__(self, content: bytes, num_threads: int = 1) -> None:
        self.content = content
        self.num_threads = num_threads
        self._local = threading.local()
        state = self._state()  # fail now, in the caller, if the bytes are not a model
        self.signature_key: str | None = state["key"]
        self.input_names: list[str] = list(state["inputs"])
        self.output_names: list[str] = list(state["outputs"])
        self.output_name: str = state["output"]
        self.input_dtypes = {n: np.dtype(d["dtype"]).name for n, d in state["inputs"].items()}
        self.output_dtype = np.dtype(state["outputs"][self.output_name]["dtype"]).name
        self.quantization = _wire_quantization(state["inputs"], state["outputs"])

    @property
    def input_dtype(self) -> str:
        """The file's dtype of the first input (what one-input callers and reports show)."""
        return self.input_dtypes[self.input_names[0]]

    def _state(self) -> dict[str, Any]:
        state: dict[str, Any] | None = getattr(self._local, "state", None)
        if state is None:
            from ai_edge_litert.interpreter import Interpreter

            try:
                interpreter = Interpreter(model_content=self.content, num_threads=self.num_threads)
            except ValueError as exc:
                raise RunError(f"the TFLite model cannot be loaded: {exc}") from exc
            key, inputs, outputs = _named_tensors(interpreter)
            state = {
                "interpreter": interpreter,
                "key": key,
                "inputs": inputs,
                "outputs": outputs,
                "output": pick_output(sorted(outputs), "TFLite model"),
                "shapes": None,
            }
            self._local.state = state
        return state

    def outputs(self, batch: Mapping[str, np.ndarray]) -> np.ndarray:
        """float32 (n, width) for a batch keyed by the file's input names (see `feed`)."""
        state = self._state()
        interpreter, inputs = state["interpreter"], state["inputs"]
        if len(inputs) == 1 and len(batch) == 1:
            batch = {next(iter(inputs)): next(iter(batch.values()))}
        missing = sorted(set(inputs) - set(batch))
        if missing:
            raise ValueError(f"missing TFLite inputs {missing}; the file takes {sorted(inputs)}")
        shapes = tuple((name, np.shape(batch[name])) for name in inputs)
        if state["shapes"] != shapes:  # resizing re-plans memory: only when the batch changes
            for name, detail in inputs.items():
                interpreter.resize_tensor_input(detail["index"], list(np.shape(batch[name])))
            interpreter.allocate_tensors()
            state["shapes"] = shapes
        for name, detail in inputs.items():
            interpreter.set_tensor(detail["index"], _quantize(np.asarray(batch[name]), detail))
        interpreter.invoke()
        detail = state["outputs"][state["output"]]
        return rows(_dequantize(interpreter.get_tensor(detail["index"]), detail))


class TfArtifactRunner:
    """Runs a TensorFlow served artifact (SavedModel folder or .tflite file) in this process.

    Safe to call from several threads at once: concrete functions are, and TFLite gets a
    per-thread interpreter.
    """

    def __init__(self, artifact: ServedArtifact) -> None:
        if artifact.framework != "tensorflow":
            raise UserError(f"cannot run a {artifact.framework} artifact with TensorFlow: {artifact.path}")
        self.artifact = artifact
        self.inputs = artifact.signature.inputs
        path = Path(artifact.path)
        self.signature: SavedModelSignature | None = None
        self.tflite: TfliteRunner | None = None
        if artifact.format == "savedmodel":
            if not (path / "saved_model.pb").is_file():
                raise RunError(f"SavedModel not found: {path} has no saved_model.pb")
            self.signature = SavedModelSignature.load(path)
        elif artifact.format == "tflite":
            if not path.is_file():
                raise RunError(f"artifact file not found: {path}")
            self.tflite = TfliteRunner(path.read_bytes())
        else:
            raise UserError(f"unsupported TensorFlow artifact format {artifact.format!r} for {path}")

    def predict_outputs(self, batch: Batch | np.ndarray) -> np.ndarray:
        """float32 (n, output width); the batch in the signature's names (a one-input model takes
        any one name, or a bare array) and dtypes, large batches run in chunks."""
        fed = feed(batch, self.inputs)
        n = batch_len(fed)
        parts = [self._run(batch_slice(fed, i, i + CHUNK_ROWS)) for i in range(0, n, CHUNK_ROWS)]
        width = self.artifact.signature.output.width
        return np.concatenate(parts) if parts else np.empty((0, width), dtype=np.float32)

    def _run(self, fed: dict[str, np.ndarray]) -> np.ndarray:
        if self.signature is not None:
            return self.signature.outputs(fed)
        assert self.tflite is not None
        return self.tflite.outputs(fed)


def run_model(model: Any, batch: Batch | np.ndarray, inputs: tuple[TensorSpec, ...]) -> np.ndarray:
    """float32 (n, width) of any in-memory TensorFlow variant: tf_keras, GenericSavedModel or TFLiteModel."""
    if isinstance(model, TFLiteModel):
        return TfliteRunner(model.content).outputs(feed(batch, inputs))
    if isinstance(model, GenericSavedModel):
        return model.outputs(batch)
    return keras_outputs(model, batch, inputs)


def pick_output(names: list[str], where: str) -> str:
    """The output to read: the only one, else the first of PREFERRED_OUTPUTS; UserError otherwise."""
    if len(names) == 1:
        return names[0]
    for name in PREFERRED_OUTPUTS:
        if name in names:
            return name
    raise UserError(
        f"{where} returns {names or 'nothing'}; expected one output, or one named "
        f"{' / '.join(PREFERRED_OUTPUTS[:4])}"
    )


def _named_tensors(interpreter: Any) -> tuple[str | None, dict[str, Any], dict[str, Any]]:
    """(signature key, input details by name, output details by name) of a TFLite interpreter.

    Names are the signature's (what the SavedModel called them); a file without signatures falls
    back to tensor names without the converter's `serving_default_` prefix and `:0` suffix.
    """
    signatures = interpreter.get_signature_list()
    if signatures:
        key = SERVING_SIGNATURE if SERVING_SIGNATURE in signatures else sorted(signatures)[0]
        runner = interpreter.get_signature_runner(key)
        return key, runner.get_input_details(), runner.get_output_details()

    def plain(detail: dict[str, Any]) -> str:
        return str(detail["name"]).removeprefix(f"{SERVING_SIGNATURE}_").split(":")[0]

    inputs = {plain(d): d for d in interpreter.get_input_details()}
    outputs = {plain(d): d for d in interpreter.get_output_details()}
    return None, inputs, outputs


def _wire_quantization(inputs: dict[str, Any], outputs: dict[str, Any]) -> WireQuantization:
    """The file's quantized (integer, with a scale) inputs and outputs, by signature name."""

    def quantized(details: dict[str, Any]) -> dict[str, TensorQuantization]:
        found = {name: TensorQuantization.from_tflite(detail) for name, detail in details.items()}
        return {name: q for name, q in found.items() if q is not None}

    return WireQuantization(quantized(inputs), quantized(outputs))


def _quantize(values: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if values.dtype == dtype:
        return values
    if dtype.kind in "iu" and values.dtype.kind == "f":
        quantization = TensorQuantization.from_tflite(detail)
        if quantization is None:
            raise RunError(
                f"TFLite input is {dtype.name} without quantization parameters; cannot feed floats"
            )
        return quantization.quantize(values)
    return values.astype(dtype)  # token ids int64 -> int32, uint8 pixels as given


def _dequantize(values: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    if np.dtype(detail["dtype"]).kind == "f":
        return values.astype(np.float32, copy=False)
    quantization = TensorQuantization.from_tflite(detail)
    if quantization is None:
        return values.astype(np.float32)  # an integer output that was never quantized (class ids)
    return quantization.dequantize(values)
