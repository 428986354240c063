"""A user's own TensorFlow model and data, end to end, in-process: a SavedModel without Keras
metadata (`pixels` uint8 -> `probs`) on an image folder, compressed by tf.ptq and tf.distill; a
tf_keras .h5 on a Parquet table, pruned; a python: factory with weights on a python: data function.
The accuracy each run reports is scikit-learn's on the outputs served and the user's labels."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pandas as pd
import pytest

from harness.results import Outcome
from tests.e2e import user_code, user_tf_code
from tests.e2e.user_runs import run_user_scenario, served_accuracy_is_sklearns, write_image_folder

TEST_LABELS = user_code.split()["test"][1]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("user-tf")
    shutil.copyfile(Path(user_tf_code.__file__), root / "user_tf_models.py")
    parts = user_code.split()
    (x_train, y_train), (x_test, y_test) = parts["train"], parts["test"]

    cnn = user_tf_code.train(
        user_tf_code.make_pixels_model(), user_tf_code.as_pixels(x_train), y_train, logits=False
    )
    user_tf_code.save_generic(cnn, str(root / "pixels_savedmodel"))
    cnn.save_weights(str(root / "pixels.weights.h5"))
    mlp = user_tf_code.train(user_tf_code.make_mlp(), x_train, y_train, logits=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "You are saving your model as an HDF5 file", UserWarning)
        mlp.save(root / "mlp.h5")

    pixels = user_tf_code.as_pixels
    write_image_folder(
        root / "images", {"train": (pixels(x_train), y_train), "test": (pixels(x_test), y_test)}
    )
    x_all, y_all = user_code.digits_arrays()
    table = pd.DataFrame({f"f{i}": x_all[:, i] for i in range(64)})
    table["digit"] = y_all
    table.to_parquet(root / "digits.parquet")
    return root


def test_generic_savedmodel_on_an_image_folder_quantized_and_distilled(workspace, tmp_path):
    result = run_user_scenario(
        workspace,
        "savedmodel-images",
        {
            "model": {"framework": "tensorflow", "source": "pixels_savedmodel"},
            "data": {
                "kind": "images",
                "test": "images/test",
                "train": "images/train",
                "calibration": 64,
                "size": [8, 8],
                "color": "grayscale",
                "layout": "NHWC",
                "dtype": "uint8",
                "scale": "raw",
                "input": "pixels",
            },
            "variants": [
                {"name": "int8", "steps": [{"recipe": "tf.ptq", "params": {"mode": "int8"}}]},
                {"name": "student", "steps": [{"recipe": "tf.distill", "params": {"epochs": 20}}]},
            ],
            "gates": {"accuracy_drop_vs_reference": 0.1, "agreement": 0.8, "error_rate": 0},
        },
        tmp_path,
    )
    assert result.outcome is Outcome.PASS, result.causes()
    served_accuracy_is_sklearns(result, TEST_LABELS, same_order=False)
    assert result.variant("reference").metrics["accuracy"] > 0.85
    (ptq,) = result.variant("int8").compression
    assert ptq["details"]["calibration_examples"] == 64  # real training images, not noise
    assert result.data["inputs"] == [{"name": "pixels", "shape": [8, 8, 1], "dtype": "uint8"}]


def test_h5_model_on_a_parquet_table_pruned(workspace, tmp_path):
    result = run_user_scenario(
        workspace,
        "h5-parquet",
        {
            "model": {"framework": "tensorflow", "source": "mlp.h5"},
            "data": {
                "kind": "table",
                "path": "digits.parquet",
                "split": {"test_size": 0.3, "seed": 3},
                "labels": "digit",
                "dtype": "float32",
            },
            "variants": [
                {
                    "name": "pruned",
                    "steps": [
                        {"recipe": "tf.prune", "params": {"target_sparsity": 0.5, "fine_tune_epochs": 2}}
                    ],
                }
            ],
            "gates": {"error_rate": 0},
        },
        tmp_path,
    )
    assert result.outcome is Outcome.PASS, result.causes()
    served_accuracy_is_sklearns(result, None)
    assert result.variant("pruned").model_metrics["sparsity"] == pytest.approx(0.5, abs=0.05)
    assert result.data["test_examples"] == round(1797 * 0.3)


def test_python_factory_with_weights_on_python_data(workspace, tmp_path):
    result = run_user_scenario(
        workspace,
        "factory-python-data",
        {
            "model": {
                "framework": "tensorflow",
                "source": "python:user_tf_models:make_pixels_model",
                "weights": "pixels.weights.h5",
            },
            "data": {"kind": "python", "function": "user_tf_models:load_pixels"},
            "variants": [{"name": "dynamic", "steps": [{"recipe": "tf.ptq", "params": {"mode": "dynamic"}}]}],
            "gates": {"agreement": 0.9, "error_rate": 0},
        },
        tmp_path,
    )
    assert result.outcome is Outcome.PASS, result.causes()
    served_accuracy_is_sklearns(result, TEST_LABELS)
    assert result.variant("reference").metrics["accuracy"] > 0.85
    assert result.variant("reference").details["base_model"]["format"] == "python"
