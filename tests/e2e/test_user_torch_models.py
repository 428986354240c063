"""A user's own torch model and data, end to end: every source kind and data kind the issue names.

The models (tests/e2e/user_code.py) are trained here on the user's own digits split and saved as a
python: factory with a state_dict or safetensors, a torch.export .pt2 and a TorchScript file; the
data is written as npz, CSV, Parquet, an image folder, a python: function and synthetic inputs.
Each run goes through `run_scenario`, in-process or on real TorchServe, and the accuracy it reports
must be what scikit-learn computes from the outputs the server answered and the user's labels.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from harness.results import Outcome
from tests.e2e import user_code
from tests.e2e.user_runs import run_user_scenario, served_accuracy_is_sklearns, write_image_folder

NEEDS_JAVA = pytest.mark.skipif(
    shutil.which("java") is None, reason="TorchServe needs Java 17: apt-get install openjdk-17-jre-headless"
)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A scenario folder holding the user's code, trained models and data files."""
    root = tmp_path_factory.mktemp("user-torch")
    shutil.copyfile(Path(user_code.__file__), root / "user_models.py")
    parts = user_code.split()
    (x_train, y_train), (x_test, y_test) = parts["train"], parts["test"]
    images_train, images_test = x_train.reshape(-1, 1, 8, 8), x_test.reshape(-1, 1, 8, 8)

    torch.manual_seed(0)
    cnn = user_code.train(user_code.make_cnn(), images_train, y_train)
    torch.save(cnn.state_dict(), root / "cnn_state.pt")
    from safetensors.torch import save_file

    save_file(cnn.state_dict(), str(root / "cnn.safetensors"))
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(cnn, (torch.from_numpy(images_test[:2]),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(root / "cnn.pt2"))
    torch.manual_seed(0)
    mlp = user_code.train(user_code.make_mlp(), x_train, y_train)
    with warnings.catch_warnings():
        # users still hold TorchScript files; torch 2.13 deprecates writing them
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(mlp), str(root / "mlp.pt"))

    np.savez(root / "train.npz", pixels=images_train, label=y_train)
    np.savez(root / "test.npz", pixels=images_test, label=y_test)
    columns = {f"f{i}": x_test[:, i] for i in range(64)}
    pd.DataFrame({**columns, "digit": [f"d{v}" for v in y_test]}).to_csv(root / "test.csv", index=False)
    write_image_folder(
        root / "images",
        {"train": (user_code.as_uint8(x_train), y_train), "test": (user_code.as_uint8(x_test), y_test)},
    )
    return root


def _test_labels() -> np.ndarray:
    return user_code.split()["test"][1]


@pytest.mark.torchserve
@NEEDS_JAVA
def test_python_factory_with_weights_and_npz_data_compressed_on_torchserve(workspace, tmp_path):
    result = run_user_scenario(
        workspace,
        "factory-npz",
        {
            "model": {
                "framework": "torch",
                "source": "python:user_models:make_cnn",
                "weights": "cnn_state.pt",
            },
            "data": {
                "kind": "npz",
                "test": "test.npz",
                "train": "train.npz",
                "inputs": {"pixels": "pixels"},  # model input <- array
                "labels": "label",
            },
            "variants": [
                {
                    "name": "pruned",
                    "steps": [{"recipe": "torch.prune", "params": {"amount": 0.5, "scope": "global"}}],
                },
                {"name": "int8", "steps": [{"recipe": "torch.int8", "params": {"mode": "dynamic"}}]},
                # PT2E: the program imports torch's quantized ops, which the server's handler must load
                {"name": "static-int8", "steps": [{"recipe": "torch.int8", "params": {"mode": "static"}}]},
            ],
            "serving": {"target": "torchserve"},
            "gates": {"accuracy_drop_vs_reference": 0.05, "agreement": 0.9, "error_rate": 0},
        },
        tmp_path,
    )
    assert result.outcome is Outcome.PASS, result.causes()
    served_accuracy_is_sklearns(result, _test_labels())
    reference = result.variant("reference").metrics
    assert reference["accuracy"] > 0.9  # the user's model on the user's split, not 1.0 on ours
    assert reference["agreement"] == 1.0
    assert result.variant("pruned").model_metrics["sparsity"] == pytest.approx(0.5, abs=0.02)
    assert result.variant("int8").metrics["agreement"] > 0.9
    static = result.variant("static-int8")
    assert static.metrics["agreement"] > 0.9
    # served by TorchServe and in-process, the same PT2E program answers alike
    assert static.metrics["accuracy"] == pytest.approx(static.model_metrics["accuracy_inprocess"], abs=0.005)
    assert result.data["kind"] == "npz"
    assert result.data["test_examples"] == len(_test_labels())
    assert result.data["inputs"] == [{"name": "pixels", "shape": [1, 8, 8], "dtype": "float32"}]


def test_safetensors_weights_load_into_the_factory(workspace, tmp_path):
    result = run_user_scenario(
        workspace,
        "factory-safetensors",
        {
            "model": {
                "framework": "torch",
                "source": "python:user_models:make_cnn",
                "weights": "cnn.safetensors",
            },
            "data": {"kind": "python", "function": "user_models:load_data"},
            "serving": {"target": "inprocess"},
            "gates": {"error_rate": 0},
        },
        tmp_path,
    )
    assert result.outcome is Outcome.PASS, result.causes()
    served_accuracy_is_sklearns(result, _test_labels())
    assert result.variant("reference").metrics["accuracy"] > 0.9


def test_torch_export_file_pruned_and_static_int8_on_an_image_folder(workspace, tmp_path):
    result = run_user_scenario(
        workspace,
        "pt2-images",
        {
            "model": {"framework": "torch", "source": "cnn.pt2"},
            "data": {
                "kind": "images",
                "test": "images/test",
                "train": "images/train",
                "size": [8, 8],
                "color": "grayscale",
                "layout": "NCHW",
                "dtype": "float32",
                "scale": "unit",
                "input": "pixels",
            },
            "variants": [
                {"name": "pruned", "steps": [{"recipe": "torch.prune", "params": {"amount": 0.6}}]},
                {"name": "static-int8", "steps": [{"recipe": "torch.int8", "params": {"mode": "static"}}]},
            ],
            "serving": {"target": "inprocess"},
            "gates": {"agreement": 0.7, "error_rate": 0},
        },
        tmp_path,
    )
    assert result.outcome is Outcome.PASS, result.causes()
    served_accuracy_is_sklearns(result, _test_labels(), same_order=False)
    assert result.variant("pruned").model_metrics["sparsity"] == pytest.approx(0.6, abs=0.02)
    (step,) = result.variant("pruned").compression
    assert step["sparsity"] == pytest.approx(0.6, abs=0.02)
    static = result.variant("static-int8")
    assert static.metrics["accuracy"] > 0.85
    assert (
        static.model_metrics["model_size_bytes"]
        < result.variant("reference").model_metrics["model_size_bytes"]
    )


@pytest.mark.torchserve
@NEEDS_JAVA
def test_torchscript_served_as_given_on_torchserve_with_a_csv_table(workspace, tmp_path):
    result = run_user_scenario(
        workspace,
        "torchscript-csv",
        {
            "model": {
                "framework": "torch",
                "source": "mlp.pt",
                "inputs": [{"name": "features", "shape": [64], "dtype": "float32"}],
            },
            "data": {"kind": "table", "test": "test.csv", "labels": "digit"},
            "serving": {"target": "torchserve"},
            "gates": {"accuracy": 0.9, "error_rate": 0},
        },
        tmp_path,
    )
    assert result.outcome is Outcome.PASS, result.causes()
    # the labels were names "d0".."d9": ids in sorted order, the same as the digits themselves
    served_accuracy_is_sklearns(result, _test_labels())


def test_synthetic_data_measures_latency_and_fidelity_without_accuracy(workspace, tmp_path):
    result = run_user_scenario(
        workspace,
        "pt2-synthetic",
        {
            "model": {"framework": "torch", "source": "cnn.pt2"},
            "data": {
                "kind": "synthetic",
                "examples": 128,
                "inputs": [{"name": "pixels", "shape": [1, 8, 8], "dtype": "float32", "low": 0, "high": 1}],
                "calibration": 64,
            },
            "variants": [
                {"name": "static-int8", "steps": [{"recipe": "torch.int8", "params": {"mode": "static"}}]}
            ],
            "serving": {"target": "inprocess"},
            "gates": {"agreement": 0.5, "error_rate": 0},
        },
        tmp_path,
    )
    assert result.outcome is Outcome.PASS, result.causes()
    metrics = result.variant("static-int8").metrics
    assert "accuracy" not in metrics
    assert "agreement" in metrics
    assert "kl_divergence" in metrics
    assert result.data["labelled"] is False


def test_a_model_that_does_not_fit_the_data_is_one_line_naming_what_it_expects(workspace, tmp_path):
    result = run_user_scenario(
        workspace,
        "mismatch",
        {
            "model": {"framework": "torch", "source": "cnn.pt2"},
            "data": {"kind": "table", "test": "test.csv", "labels": "digit"},
            "serving": {"target": "inprocess"},
        },
        tmp_path,
    )
    assert result.outcome is Outcome.ERROR
    assert result.failure is not None
    assert result.failure.stage == "loading the model"
    assert "\n" not in result.failure.message
    assert "pixels: float32[1, 8, 8]" in result.failure.message  # what the model expects
    assert "the data has inputs: float32[64]" in result.failure.message
