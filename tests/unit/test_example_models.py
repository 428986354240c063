"""The example user code behind the shipped scenarios text_classifier.yaml and diabetes_regression.yaml.

scenarios/examples/ is what a user writes: data functions and self-training model factories. These
tests pin what the scenarios rely on: the data's shapes and dtypes, the same data and the same
weights on every call and in every process, a cache that is used and distrusted when damaged,
and quality well above chance (text) or level with a linear model (regression). Each model
trains in a few seconds on one thread.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
import yaml
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, mean_squared_error

from harness.data.loaders import load_data
from harness.models.cache import checksum_path
from harness.scenario.loader import load_scenario
from tests.conftest import ROOT

SCENARIOS = ROOT / "scenarios"
TEXT_SCENARIO = SCENARIOS / "text_classifier.yaml"
REGRESSION_SCENARIO = SCENARIOS / "diabetes_regression.yaml"


def _import(name: str) -> ModuleType:
    # as the harness does for python: names: the scenario's folder first on sys.path for the import
    sys.path.insert(0, str(SCENARIOS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(SCENARIOS))


@pytest.fixture(scope="module")
def text_bag() -> ModuleType:
    return _import("examples.text_bag")


@pytest.fixture(scope="module")
def diabetes() -> ModuleType:
    return _import("examples.diabetes")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def trained_text(text_bag: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """The text classifier trained once into an empty cache, and its cache record."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARNESS_CACHE_DIR", str(tmp_path_factory.mktemp("text-cache")))
        yield text_bag.trained_model()


@pytest.fixture(scope="module")
def trained_diabetes(diabetes: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HARNESS_CACHE_DIR", str(tmp_path_factory.mktemp("diabetes-cache")))
        yield diabetes.trained_model()


def _digest(splits: dict) -> str:
    digest = hashlib.sha256()
    for name in sorted(splits):
        inputs, labels = splits[name]
        for key in sorted(inputs):
            digest.update(f"{name}/{key}:{inputs[key].dtype.str}{inputs[key].shape}".encode())
            digest.update(inputs[key].tobytes())
        digest.update(labels.tobytes())
    return digest.hexdigest()


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    left, right = a.state_dict(), b.state_dict()
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


def _logits(model: torch.nn.Module, inputs: dict[str, np.ndarray]) -> np.ndarray:
    with torch.inference_mode():
        out = model(torch.from_numpy(inputs["input_ids"]), torch.from_numpy(inputs["attention_mask"]))
    return out.numpy()


# ---- text classifier ----------------------------------------------------------------------------


def test_text_data_is_two_int64_inputs_of_32_tokens_with_four_balanced_topics(text_bag):
    splits = text_bag.load()
    assert sorted(splits) == ["test", "train"]
    texts, _ = text_bag.corpus()
    assert len(set(texts)) == len(texts) >= 1500, "texts are deduplicated, a few thousand of them"
    total = sum(len(labels) for _, labels in splits.values())
    assert total == len(texts)
    for name, (inputs, labels) in splits.items():
        assert sorted(inputs) == ["attention_mask", "input_ids"], name
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        assert ids.dtype == mask.dtype == np.int64
        assert ids.shape == mask.shape == (len(labels), 32)
        assert labels.dtype == np.int64
        assert set(np.unique(mask)) == {0, 1}
        assert np.all((ids == 0) == (mask == 0)), "id 0 is padding and only padding"
        assert np.all(ids < text_bag.VOCAB_BUCKETS)
        assert np.all(mask.sum(axis=1) >= text_bag.MIN_WORDS)
        shares = np.bincount(labels, minlength=4) / len(labels)
        assert len(shares) == 4
        assert shares.min() > 0.15, (name, shares)
    assert len(splits["test"][1]) == pytest.approx(0.25 * total, abs=1)
    # stratified: each topic takes the same share of both splits
    train_shares = np.bincount(splits["train"][1]) / len(splits["train"][1])
    test_shares = np.bincount(splits["test"][1]) / len(splits["test"][1])
    assert np.allclose(train_shares, test_shares, atol=0.01)


def test_text_data_is_the_same_in_another_process(text_bag, tmp_path):
    # a baseline is keyed by the data's hash: token ids must not depend on hash() randomisation
    script = (
        "import sys; import numpy as np; sys.path.insert(0, sys.argv[1]); from examples import text_bag;"
        "np.savez(sys.argv[2], **{f'{s}/{k}': a for s, (x, y) in text_bag.load().items()"
        " for k, a in {**x, 'labels': y}.items()})"
    )
    saved = tmp_path / "other.npz"
    child = subprocess.run(
        [sys.executable, "-c", script, str(SCENARIOS), str(saved)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONHASHSEED": "123"},
        timeout=120,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    here = {f"{s}/{k}": a for s, (x, y) in text_bag.load().items() for k, a in {**x, "labels": y}.items()}
    with np.load(saved) as other:
        assert sorted(other.files) == sorted(here)
        for key, array in here.items():
            assert other[key].dtype == array.dtype, key
            assert np.array_equal(other[key], array), key


def test_text_model_classifies_topics_well_above_chance(text_bag, trained_text):
    model, _ = trained_text
    inputs, labels = text_bag.load()["test"]
    predicted = _logits(model, inputs).argmax(axis=1)
    # chance is 0.30 (the largest topic); the model reaches about 0.81
    assert accuracy_score(labels, predicted) > 0.75
    assert f1_score(labels, predicted, average="macro") > 0.75


def test_text_model_takes_ids_and_mask_positionally_and_ignores_padding(text_bag, trained_text):
    model, _ = trained_text
    inputs, _ = text_bag.load()["test"]
    short = next(i for i in range(len(inputs["input_ids"])) if inputs["attention_mask"][i].sum() < 20)
    row = {k: v[short : short + 1].copy() for k, v in inputs.items()}
    logits = _logits(model, row)
    assert logits.shape == (1, 4)
    assert logits.dtype == np.float32
    # a different id under a zero mask changes nothing: the mean runs over real tokens only
    padded = {k: v.copy() for k, v in row.items()}
    padded["input_ids"][0, padded["attention_mask"][0] == 0] = 7
    np.testing.assert_allclose(_logits(model, padded), logits, rtol=0, atol=1e-6)


def test_text_factory_loads_its_weights_from_the_cache_after_the_first_call(
    text_bag, trained_text, monkeypatch
):
    first, record = trained_text  # trained into an empty cache
    assert checksum_path(record.path).is_file(), "the cache file is sealed with its sha256 sidecar"
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(record.path.parents[1]))
    factory_model = text_bag.make_model()
    _, second = text_bag.trained_model()
    assert second.cache_hit
    assert second.path == record.path
    assert second.train_seconds == record.train_seconds
    assert _same_weights(first, factory_model)
    assert not factory_model.training


# ---- diabetes regression ------------------------------------------------------------------------


def test_diabetes_data_is_ten_float32_features_and_a_float32_target(diabetes):
    splits = diabetes.load()
    assert sorted(splits) == ["test", "train"]
    assert len(splits["train"][1]) + len(splits["test"][1]) == 442
    assert len(splits["test"][1]) == 111
    for inputs, labels in (splits["train"], splits["test"]):
        assert sorted(inputs) == ["features"]
        assert inputs["features"].dtype == labels.dtype == np.float32
        assert inputs["features"].shape == (len(labels), 10)
        assert labels.ndim == 1
        assert labels.min() >= 25
        assert labels.max() <= 346
    assert _digest(splits) == _digest(diabetes.load())


def test_diabetes_model_predicts_in_the_targets_unit_as_well_as_a_linear_model(diabetes, trained_diabetes):
    model, _ = trained_diabetes
    inputs, labels = diabetes.load()["test"]
    with torch.inference_mode():
        predicted = model(torch.from_numpy(inputs["features"])).numpy()
    assert predicted.shape == (len(labels), 1)
    assert predicted.dtype == np.float32
    mae = mean_absolute_error(labels, predicted[:, 0])
    rmse = float(np.sqrt(mean_squared_error(labels, predicted[:, 0])))
    linear = diabetes.linear_reference()  # about 45.1 / 56.4; the target's spread is 77
    assert mae < 48
    assert rmse < 60
    assert mae < linear["mae"] * 1.05
    assert rmse < linear["rmse"] * 1.05


def test_damaged_cache_file_is_retrained_over_with_a_warning(diabetes, trained_diabetes, cache, caplog):
    _, record = diabetes.trained_model()
    data = bytearray(record.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    record.path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        model, again = diabetes.trained_model()
    assert not again.cache_hit
    assert "does not match its checksum" in caplog.text
    assert _same_weights(model, trained_diabetes[0])
    assert diabetes.trained_model()[1].cache_hit, "the retrained file was cached again"


def test_train_weights_writes_a_state_dict_the_untrained_factory_loads(diabetes, trained_diabetes, tmp_path):
    path = diabetes.train_weights(tmp_path / "diabetes.pt")
    model = diabetes.untrained_model()
    model.load_state_dict(torch.load(path, weights_only=True))
    assert _same_weights(model, trained_diabetes[0])


# ---- both models --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("example", "trained", "model_class"),
    [
        ("text_bag", "trained_text", "TextBagClassifier"),
        ("diabetes", "trained_diabetes", "DiabetesRegressor"),
    ],
    ids=["text_classifier", "diabetes_regression"],
)
def test_example_model_trains_to_the_same_weights_every_time(request, example, trained, model_class):
    module = request.getfixturevalue(example)
    cached, record = request.getfixturevalue(trained)
    assert not record.cache_hit
    assert record.train_seconds < 30
    torch.manual_seed(0)
    again = getattr(module, model_class)()
    module.train(again)
    assert _same_weights(cached, again)


# ---- the shipped scenarios ----------------------------------------------------------------------


def test_shipped_user_scenarios_validate():
    checked = subprocess.run(
        [sys.executable, "-m", "harness", "validate", str(TEXT_SCENARIO), str(REGRESSION_SCENARIO)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    assert "text_classifier: 3 variants on torchserve" in checked.stdout
    assert "diabetes_regression: 3 variants on inprocess" in checked.stdout


def test_text_scenario_names_the_classes_in_label_order(text_bag):
    declared = yaml.safe_load(TEXT_SCENARIO.read_text())["data"]["classes"]
    assert tuple(declared) == text_bag.CLASS_NAMES


@pytest.mark.parametrize(
    ("scenario", "inputs", "task", "classes", "test_examples"),
    [
        (
            TEXT_SCENARIO,
            [("input_ids", (32,), "int64"), ("attention_mask", (32,), "int64")],
            "classification",
            4,
            None,
        ),
        (REGRESSION_SCENARIO, [("features", (10,), "float32")], "regression", None, 111),
    ],
    ids=["text_classifier", "diabetes_regression"],
)
def test_the_harness_reads_the_example_data_as_declared(scenario, inputs, task, classes, test_examples):
    dataset = load_data(load_scenario(scenario), scenario.parent)
    assert [(s.name, s.shape, s.dtype) for s in dataset.inputs] == inputs
    assert dataset.task == task
    assert dataset.num_classes == classes
    assert dataset.train is not None
    assert len(dataset.train) > len(dataset.test)
    if test_examples is not None:
        assert len(dataset.test) == test_examples
