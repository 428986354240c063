"""Every "this recipe cannot apply to this source (or this data)" rule is refused by validate.

No model is loaded: the rules read the scenario, suffixes and marker files only, so each case
writes placeholder files where the rule only needs them to exist.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.errors import UserError
from harness.scenario.applicability import ACCEPTS, KIND_LABELS, refusal
from harness.scenario.loader import load_scenario
from tests.conftest import scenario_dict


def _torch(source: str, *steps: dict, **extra) -> dict:
    return scenario_dict(
        model={"framework": "torch", "source": source},
        variants=[{"name": "v", "steps": list(steps)}],
        **extra,
    )


def _tf(source: str, *steps: dict, **extra) -> dict:
    return scenario_dict(
        model={"framework": "tensorflow", "source": source},
        variants=[{"name": "v", "steps": list(steps)}],
        **extra,
    )


PRUNE = {"recipe": "torch.prune", "params": {"amount": 0.5}}
INT8_WEIGHT_ONLY = {"recipe": "torch.int8", "params": {"mode": "weight_only"}}
INT8 = {"recipe": "torch.int8", "params": {"mode": "dynamic"}}
DISTILL = {"recipe": "torch.distill", "params": {}}
TF_PRUNE = {"recipe": "tf.prune", "params": {"target_sparsity": 0.5}}
TF_CLUSTER = {"recipe": "tf.cluster", "params": {}}
TF_QAT = {"recipe": "tf.qat", "params": {}}
TF_PTQ = {"recipe": "tf.ptq", "params": {"mode": "dynamic"}}
TF_PTQ_INT8 = {"recipe": "tf.ptq", "params": {"mode": "int8"}}
TF_DISTILL = {"recipe": "tf.distill", "params": {}}


@pytest.mark.parametrize("suffix", [".pt", ".ts"])
@pytest.mark.parametrize("step", [PRUNE, INT8, DISTILL])
def test_torchscript_is_served_as_given_and_every_recipe_is_refused(write_scenario, tmp_path, suffix, step):
    (tmp_path / f"model{suffix}").write_bytes(b"x")
    with pytest.raises(UserError) as err:
        load_scenario(write_scenario(_torch(f"model{suffix}", step)))
    message = str(err.value)
    assert f"variants[0].steps[0].recipe: {step['recipe']} cannot compress a TorchScript file" in message
    assert "torch.export file (.pt2)" in message
    assert "python: factory" in message
    assert "\n" not in message


def test_torchscript_without_recipes_validates(write_scenario, tmp_path):
    (tmp_path / "model.pt").write_bytes(b"x")
    load_scenario(
        write_scenario(scenario_dict(model={"framework": "torch", "source": "model.pt"}, variants=[]))
    )


@pytest.mark.parametrize("step", [PRUNE, INT8, DISTILL])
def test_torch_export_and_python_sources_accept_every_torch_recipe(write_scenario, tmp_path, step):
    (tmp_path / "model.pt2").write_bytes(b"x")
    load_scenario(write_scenario(_torch("model.pt2", step)))
    load_scenario(write_scenario(_torch("python:my_models:make", step)))


def _savedmodel(folder: Path, *, keras: bool) -> None:
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"x")
    if keras:
        (folder / "keras_metadata.pb").write_bytes(b"x")


@pytest.mark.parametrize("step", [TF_PRUNE, TF_CLUSTER, TF_QAT])
def test_tfmot_recipes_refuse_a_savedmodel_without_keras_metadata(write_scenario, tmp_path, step):
    _savedmodel(tmp_path / "generic", keras=False)
    with pytest.raises(UserError) as err:
        load_scenario(write_scenario(_tf("generic", step)))
    message = str(err.value)
    assert f"{step['recipe']} cannot compress a SavedModel without Keras metadata" in message
    assert ".keras/.h5" in message
    assert "python: factory" in message


@pytest.mark.parametrize("step", [TF_PTQ, TF_DISTILL])
def test_ptq_and_distill_accept_a_generic_savedmodel(write_scenario, tmp_path, step):
    _savedmodel(tmp_path / "generic", keras=False)
    load_scenario(write_scenario(_tf("generic", step)))


@pytest.mark.parametrize("step", [TF_PRUNE, TF_CLUSTER, TF_QAT, TF_PTQ])
def test_keras_savedmodels_and_files_accept_every_tf_recipe(write_scenario, tmp_path, step):
    _savedmodel(tmp_path / "kerasmodel", keras=True)
    (tmp_path / "model.h5").write_bytes(b"x")
    (tmp_path / "model.keras").write_bytes(b"x")
    for source in ("kerasmodel", "model.h5", "model.keras", "python:my_models:make"):
        load_scenario(write_scenario(_tf(source, step)))


def test_a_distilled_student_can_be_pruned_whatever_the_teacher_was(write_scenario, tmp_path):
    _savedmodel(tmp_path / "generic", keras=False)
    load_scenario(write_scenario(_tf("generic", TF_DISTILL, TF_PRUNE)))
    assert refusal(["tf.distill", "tf.prune"], "savedmodel") is None
    assert refusal(["tf.ptq"], "savedmodel") is None
    assert refusal(["tf.prune"], "savedmodel") is not None


def test_every_built_in_recipe_has_a_rule():
    from harness.compression.params import PARAMS

    assert set(ACCEPTS) == set(PARAMS)
    assert all(kinds <= set(KIND_LABELS) for kinds in ACCEPTS.values())


def _npz(folder: Path, name: str, *, labels: bool = True) -> str:
    arrays = {"x": np.zeros((8, 4), dtype=np.float32)}
    if labels:
        arrays["y"] = np.arange(8) % 2
    np.savez(folder / name, **arrays)
    return name


@pytest.mark.parametrize("step", [TF_PRUNE, TF_DISTILL])
def test_recipes_that_train_need_a_train_split(write_scenario, tmp_path, step):
    data = {"kind": "npz", "test": _npz(tmp_path, "test.npz"), "inputs": "x", "labels": "y"}
    with pytest.raises(
        UserError, match=rf"steps\[0\]\.recipe: {step['recipe']} trains on the data's train split"
    ):
        load_scenario(write_scenario(_tf("python:m:make", step, data=data)))


def test_static_calibration_needs_calibration_or_train_data(write_scenario, tmp_path):
    data = {"kind": "npz", "test": _npz(tmp_path, "test.npz"), "inputs": "x", "labels": "y"}
    with pytest.raises(UserError, match=r"tf\.ptq calibrates on example inputs"):
        load_scenario(write_scenario(_tf("python:m:make", TF_PTQ_INT8, data=data)))
    with_calibration = {**data, "calibration": _npz(tmp_path, "cal.npz", labels=False)}
    load_scenario(write_scenario(_tf("python:m:make", TF_PTQ_INT8, data=with_calibration)))


def test_unlabelled_data_refuses_gates_on_labels_but_takes_fidelity_gates(write_scenario, tmp_path):
    data = {"kind": "synthetic", "inputs": [{"name": "x", "shape": [4], "dtype": "float32"}]}
    scenario = _torch("python:m:make", INT8, data=data, gates={"accuracy": "-0.01 abs"})
    with pytest.raises(UserError, match=r"gates\.accuracy: needs labelled data"):
        load_scenario(write_scenario(scenario))
    load_scenario(write_scenario({**scenario, "gates": {"agreement": 0.98, "error_rate": 0}}))


def test_built_in_models_take_no_data_block(write_scenario, tmp_path):
    data = {"kind": "npz", "test": _npz(tmp_path, "test.npz"), "inputs": "x", "labels": "y"}
    with pytest.raises(UserError, match=r": data: the built-in models are trained and evaluated on digits"):
        load_scenario(write_scenario(scenario_dict(data=data)))


def test_weights_belong_to_a_python_factory(write_scenario, tmp_path):
    (tmp_path / "model.pt2").write_bytes(b"x")
    with pytest.raises(UserError, match=r"weights: only a python: source takes weights"):
        load_scenario(
            write_scenario(
                _torch("model.pt2", PRUNE)
                | {"model": {"framework": "torch", "source": "model.pt2", "weights": "w.pt"}}
            )
        )
    with pytest.raises(UserError, match=r"model\.weights: file .*missing\.pt does not exist"):
        load_scenario(
            write_scenario(
                scenario_dict(
                    model={"framework": "torch", "source": "python:m:make", "weights": "missing.pt"}
                )
            )
        )
    with pytest.raises(UserError, match=r"model\.source: expected 'python:package\.module:function'"):
        load_scenario(write_scenario(scenario_dict(model={"framework": "torch", "source": "python:m"})))


def test_weight_only_int8_is_refused_on_a_torch_export_file(write_scenario, tmp_path):
    (tmp_path / "model.pt2").write_bytes(b"x")
    for step in (INT8_WEIGHT_ONLY, {"recipe": "torch.int8"}):  # weight_only is the default
        with pytest.raises(
            UserError, match=r"steps\[0\]\.recipe: torch\.int8 mode 'weight_only' needs nn\.Linear"
        ):
            load_scenario(write_scenario(_torch("model.pt2", step)))
    load_scenario(write_scenario(_torch("python:m:make", INT8_WEIGHT_ONLY)))
    load_scenario(write_scenario(_torch("model.pt2", {"recipe": "torch.int8", "params": {"mode": "static"}})))
