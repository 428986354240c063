"""tf.ptq on the built-in TF models: real TFLite conversion, accuracy on the written .tflite file."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter
from pydantic import ValidationError

from harness.compression.base import RecipeContext
from harness.compression.pipeline import prepare_variant
from harness.compression.tensorflow.export import export_savedmodel
from harness.compression.tensorflow.ptq import TfPtqRecipe, tflite_converter
from harness.compression.tensorflow.runner import GenericSavedModel, TfArtifactRunner
from harness.compression.tensorflow.stats import read_tflite
from harness.compression.tensorflow.tflite_model import TFLiteModel
from harness.data.tensors import OutputSpec, Signature, TensorSpec
from harness.errors import RunError, UserError
from harness.frameworks import TENSORFLOW
from harness.models.digits import load_digits_split
from harness.models.tf_models import get_reference_tf_model
from harness.scenario.schema import ModelSpec, RecipeStep, ServingSpec, VariantSpec
from harness.serving.inprocess import InProcessTarget

KINDS = ["mlp", "cnn"]
MODES = [("dynamic", "float"), ("float16", "float"), ("int8", "float"), ("int8", "int8"), ("int8", "uint8")]
TOLERANCE = 0.02
DIGITS = Signature(
    inputs=(TensorSpec("inputs", (64,), "float32"),), output=OutputSpec("logits", 10), task="classification"
)


def file_accuracy(artifact: Any, data: Any) -> float:
    """Accuracy of the written file, loaded back from disk."""
    outputs = TfArtifactRunner(artifact).predict_outputs(data.test.inputs)
    return float(np.mean(outputs.argmax(axis=1) == data.y_test))


def memory_accuracy(backend: Any, model: Any, data: Any) -> float:
    outputs = backend.in_memory_outputs(model, data.test.inputs, DIGITS)
    return float(np.mean(outputs.argmax(axis=1) == data.y_test))


@pytest.fixture(scope="module")
def data():
    return load_digits_split(seed=0)


@pytest.fixture(scope="module")
def references(data) -> dict[str, Any]:
    # the default model cache ($HARNESS_CACHE_DIR or ~/.cache/harness), shared with the other TF
    # test files; test_tf_models_and_export covers training into an empty cache
    return {kind: get_reference_tf_model(kind, data, seed=0) for kind in KINDS}


@pytest.fixture(scope="module")
def backend():
    return TENSORFLOW.backend()


@pytest.fixture(scope="module")
def float_tflite_bytes(references, data) -> dict[str, int]:
    """Size of the plain (unquantized) float32 TFLite conversion of each built-in."""
    return {kind: len(tflite_converter(references[kind].model, "test", data)[0].convert()) for kind in KINDS}


@pytest.fixture(scope="module")
def quantized(
    references, data, backend, tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, str, str], Any]:
    """Every (kind, mode, io) converted once and exported: (TFLiteModel, StepReport, artifact)."""
    root = tmp_path_factory.mktemp("tf-ptq")
    context = RecipeContext(data=data, seed=0, work_dir=root / "work")
    out = {}
    for kind in KINDS:
        for mode, io in MODES:
            # conversion only traces the model, so the shared reference can be converted directly
            tflite, report = TfPtqRecipe({"mode": mode, "io": io}).apply(references[kind].model, context)
            artifact = backend.export(tflite, root / f"{kind}-{mode}-{io}", DIGITS)
            out[(kind, mode, io)] = (tflite, report, artifact)
    return out


def cases() -> list[Any]:
    return [pytest.param(kind, mode, io, id=f"{kind}-{mode}-{io}") for kind in KINDS for mode, io in MODES]


@pytest.mark.parametrize(("kind", "mode", "io"), cases())
def test_quantized_file_keeps_accuracy_within_tolerance(
    quantized, references, data, backend, kind, mode, io
) -> None:
    tflite, _, artifact = quantized[(kind, mode, io)]
    served = file_accuracy(artifact, data)
    reference = references[kind].test_accuracy
    assert abs(served - reference) <= TOLERANCE
    assert abs(memory_accuracy(backend, tflite, data) - served) <= 0.005


@pytest.mark.parametrize(("kind", "mode", "io"), cases())
def test_quantized_file_is_smaller_than_the_float_tflite(
    quantized, float_tflite_bytes, kind, mode, io
) -> None:
    _, report, artifact = quantized[(kind, mode, io)]
    size = Path(artifact.path).stat().st_size
    assert size == report.details["tflite_bytes"]
    assert size < 0.7 * float_tflite_bytes[kind]


@pytest.mark.parametrize(("kind", "io"), [(k, io) for k in KINDS for io in ("float", "int8", "uint8")])
def test_int8_mode_stores_every_kernel_as_int8(quantized, kind: str, io: str) -> None:
    tflite, report, artifact = quantized[(kind, "int8", io)]
    contents = read_tflite(Path(artifact.path).read_bytes())
    assert contents.tensor_dtypes.get("INT8", 0) > 0
    assert report.details["int8_tensors"] == contents.tensor_dtypes["INT8"]
    kernels = contents.kernel_dtypes()
    assert len(kernels) == (3 if kind == "mlp" else 4)
    assert set(kernels.values()) == {"int8"}
    assert tflite.quantization == "int8"
    assert report.details["calibration_examples"] == 200
    assert report.details["calibration_split"] == "train"  # digits has no separate calibration split


@pytest.mark.parametrize("kind", KINDS)
def test_int8_io_gives_int8_input_and_output_tensors(quantized, kind: str) -> None:
    for io, expected in (("int8", np.int8), ("uint8", np.uint8), ("float", np.float32)):
        tflite, report, artifact = quantized[(kind, "int8", io)]
        interpreter = Interpreter(model_path=str(artifact.path))
        assert interpreter.get_input_details()[0]["dtype"] == expected
        assert interpreter.get_output_details()[0]["dtype"] == expected
        assert tflite.input_dtype == artifact.extra["input_dtype"] == np.dtype(expected).name
        # integer I/O: the scale and zero point clients convert with, in the artifact and the report
        quantized_io = {
            k: artifact.extra[k] for k in ("input_quantization", "output_quantization") if k in artifact.extra
        }
        assert bool(quantized_io) == (io != "float")
        assert {k: report.details[k] for k in quantized_io} == quantized_io
        if quantized_io:
            assert quantized_io["input_quantization"]["inputs"]["dtype"] == np.dtype(expected).name
            assert quantized_io["output_quantization"]["scores"]["dtype"] == np.dtype(expected).name


@pytest.mark.parametrize("kind", KINDS)
def test_float16_mode_stores_float16_weights(quantized, kind: str) -> None:
    _, report, artifact = quantized[(kind, "float16", "float")]
    contents = read_tflite(Path(artifact.path).read_bytes())
    assert set(contents.kernel_dtypes().values()) == {"float16"}
    assert "INT8" not in contents.tensor_dtypes
    assert report.details["float16_tensors"] > 0


@pytest.mark.parametrize("kind", KINDS)
def test_dynamic_mode_stores_large_kernels_as_int8_with_float_io(quantized, kind: str) -> None:
    tflite, _, artifact = quantized[(kind, "dynamic", "float")]
    contents = read_tflite(Path(artifact.path).read_bytes())
    assert "int8" in contents.kernel_dtypes().values()
    assert (tflite.input_dtype, tflite.output_dtype) == ("float32", "float32")
    assert artifact.extra["quantization"] == "dynamic"


def test_tflite_artifact_keeps_the_serving_default_signature(quantized) -> None:
    _, _, artifact = quantized[("cnn", "int8", "int8")]
    assert artifact.format == "tflite"
    assert Path(artifact.path).name == "model.tflite"
    assert artifact.extra["signatures"] == ["serving_default"]
    assert (artifact.extra["input_name"], artifact.extra["output_name"]) == ("inputs", "scores")
    assert artifact.extra["input_dtypes"] == {"inputs": "int8"}
    assert artifact.signature == DIGITS


@pytest.mark.parametrize("io", ["float", "int8", "uint8"])
def test_tflite_runner_gives_the_same_outputs_from_many_threads_and_batch_sizes(
    quantized, data, io: str
) -> None:
    runner = TfArtifactRunner(quantized[("cnn", "int8", io)][2])
    expected = runner.predict_outputs(data.test.inputs)
    # batch sizes vary per call so the per-thread interpreters resize while others run
    slices = [(i, i + 1 + i % 5) for i in range(0, len(data.x_test), 3)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parts = list(pool.map(lambda s: (s, runner.predict_outputs(data.x_test[s[0] : s[1]])), slices))
    for (start, stop), outputs in parts:
        np.testing.assert_allclose(outputs, expected[start:stop], atol=1e-6)


def test_inprocess_target_serves_a_tflite_file(quantized, data, tmp_path: Path) -> None:
    artifact = quantized[("mlp", "int8", "int8")][2]
    expected = TfArtifactRunner(artifact).predict_outputs(data.test.inputs)
    with InProcessTarget(ServingSpec(target="inprocess", workers=2), tmp_path) as target:
        target.start(artifact)
        with ThreadPoolExecutor(max_workers=4) as pool:
            got = list(pool.map(lambda i: target.predict(data.x_test[i : i + 1])[0], range(len(data.x_test))))
    np.testing.assert_allclose(np.array(got), expected, atol=1e-6)


def test_ptq_without_context_is_a_run_error(references) -> None:
    with pytest.raises(RunError, match="RecipeContext"):
        TfPtqRecipe({"mode": "dynamic"}).apply(references["mlp"].model, None)


def test_int8_io_with_a_float_mode_is_refused_when_params_are_validated() -> None:
    # refused by the params model, so `harness validate` catches it before anything runs
    with pytest.raises(ValidationError, match=r"io 'int8' needs mode 'int8'"):
        TfPtqRecipe({"mode": "float16", "io": "int8"})


def test_ptq_of_a_tflite_model_is_a_user_error(quantized, data) -> None:
    tflite = quantized[("mlp", "dynamic", "float")][0]
    assert isinstance(tflite, TFLiteModel)
    with pytest.raises(UserError, match="already a TFLite model"):
        TfPtqRecipe({"mode": "dynamic"}).apply(tflite, RecipeContext(data=data))


def test_calibration_uses_the_requested_number_of_training_rows(references, data) -> None:
    _, report = TfPtqRecipe({"mode": "int8", "calibration_samples": 7}).apply(
        references["mlp"].model, RecipeContext(data=data, seed=1)
    )
    assert report.details["calibration_examples"] == 7


def test_ptq_converts_a_plain_savedmodel_as_given(references, data, backend, tmp_path: Path) -> None:
    folder = export_savedmodel(references["mlp"].model, tmp_path / "user", DIGITS).path
    base = backend.load_base(ModelSpec(framework="tensorflow", source=str(folder)), Path("."), data)
    assert isinstance(base.model, GenericSavedModel)
    tflite, report = TfPtqRecipe({"mode": "int8"}).apply(backend.fresh(base), RecipeContext(data=data))
    assert report.details["int8_tensors"] > 0
    assert abs(memory_accuracy(backend, tflite, data) - references["mlp"].test_accuracy) <= TOLERANCE


@pytest.mark.parametrize("source", ["builtin:mlp", "builtin:cnn"])
def test_prepare_variant_runs_a_ptq_step_end_to_end(source: str, data, references, tmp_path: Path) -> None:
    model = ModelSpec(framework="tensorflow", source=source)
    variant = VariantSpec(
        name="ptq-int8", steps=[RecipeStep(recipe="tf.ptq", params={"mode": "int8", "io": "int8"})]
    )
    prepared = prepare_variant(model, variant, tmp_path, tmp_path / "out", data)
    assert prepared.artifact.format == "tflite"
    assert prepared.artifact.extra["input_dtype"] == "int8"
    assert prepared.base["cache_hit"] is True
    assert prepared.warnings == []
    assert prepared.compression[0]["recipe"] == "tf.ptq"
    assert prepared.compression[0]["details"]["int8_tensors"] > 0
    reference = references[source.split(":")[1]].test_accuracy
    assert abs(prepared.metrics["accuracy_inprocess"] - reference) <= TOLERANCE
    assert prepared.metrics["param_count"] == references[source.split(":")[1]].model.count_params()
    assert set(prepared.metrics) >= {"model_size_bytes", "model_size_gzip_bytes", "sparsity"}
