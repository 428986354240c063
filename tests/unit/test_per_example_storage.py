"""Per-example quality vectors on disk: in results.json (Measurement.per_example) and in a baseline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.baselines.document import decode_per_example, encode_per_example, validate_document
from harness.errors import UserError
from harness.metrics.quality import ExampleVectors
from harness.results import RunResult, VariantResult
from tests.unit.records import measurement


def _run(per_example: dict[str, list[float]]) -> RunResult:
    m = measurement()
    m.per_example = per_example
    variant = VariantResult(name="int8", steps=[], measurements=[m])
    return RunResult(
        run_id="r1", scenario_name="s", scenario={}, started_at="2025-01-01T00:00:00Z", variants=[variant]
    )


def test_measurement_per_example_round_trips_through_results_json(tmp_path: Path):
    values = {"agree": [1.0, 0.0, 1.0], "kl": [0.0, 0.25, 1e-9]}
    _run(values).write(tmp_path)
    loaded = RunResult.load(tmp_path)
    assert loaded.variants[0].measurements[0].per_example == values


def test_results_written_before_per_example_existed_read_as_empty(tmp_path: Path):
    data = _run({"agree": [1.0]}).to_json()
    del data["variants"][0]["measurements"][0]["per_example"]
    (tmp_path / "results.json").write_text(json.dumps(data))
    assert RunResult.load(tmp_path).variants[0].measurements[0].per_example == {}


def test_vectors_round_trip_bits_exactly_and_floats_at_float32():
    rng = np.random.default_rng(0)
    agree = (rng.random(1001) < 0.9).astype(np.float64)
    kl = rng.gamma(2.0, 0.01, 1001)
    stored = encode_per_example(ExampleVectors({"agree": agree, "kl": kl}, fingerprint="ab" * 8))
    assert stored["count"] == 1001
    assert stored["examples_fingerprint"] == "ab" * 8
    assert stored["values"]["agree"]["encoding"] == "bits"
    assert stored["values"]["kl"]["encoding"] == "float32"
    assert len(stored["values"]["agree"]["data"]) == 168  # 126 bytes of bits, in base64
    back = decode_per_example(json.loads(json.dumps(stored)))
    assert back.fingerprint == "ab" * 8
    np.testing.assert_array_equal(back.values["agree"], agree)
    np.testing.assert_array_equal(back.values["kl"], kl.astype(np.float32).astype(np.float64))


@pytest.mark.parametrize(
    ("vectors", "message"),
    [
        (ExampleVectors({"kl": np.ones(3)}, fingerprint=None), "fingerprint"),
        (ExampleVectors({"kl": np.ones(3), "agree": np.ones(2)}, fingerprint="f"), "different lengths"),
        (ExampleVectors({"kl": np.array([0.1, np.nan])}, fingerprint="f"), "NaN"),
    ],
)
def test_vectors_that_could_not_serve_a_paired_test_are_not_stored(vectors, message):
    with pytest.raises(ValueError, match=message):
        encode_per_example(vectors)


def _document(per_example) -> dict:
    return {
        "format_version": 2,
        "scenario": "s",
        "environments": {
            "fp": {"variants": {"int8": {"metrics": {"agreement": 1.0}, "per_example": per_example}}}
        },
    }


def test_a_stored_per_example_object_passes_validation():
    stored = encode_per_example(ExampleVectors({"agree": np.ones(9), "kl": np.full(9, 0.5)}, fingerprint="f"))
    validate_document(_document(stored), Path("x.json"))


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda s: s.update(count=10),  # 9 examples stored
        lambda s: s["values"]["kl"].update(data="not base64!"),
        lambda s: s["values"]["kl"].update(encoding="float64"),
        lambda s: s.pop("examples_fingerprint"),
        lambda s: s.update(values=[]),
    ],
)
def test_a_corrupt_per_example_object_is_a_user_error_naming_the_variant(corrupt):
    stored = encode_per_example(ExampleVectors({"agree": np.ones(9), "kl": np.full(9, 0.5)}, fingerprint="f"))
    corrupt(stored)
    with pytest.raises(
        UserError, match=r"x\.json: environment 'fp', variant 'int8': per_example is an object"
    ):
        validate_document(_document(stored), Path("x.json"))
