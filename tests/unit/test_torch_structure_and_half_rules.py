"""The rules of torch.prune structure channels and torch.half that hold before any model is loaded:
their params, what `harness validate` refuses (a .pt2 for channels, a missing train split for
fine-tuning, impossible step orders), and how the CPU's half-precision flags are read."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from harness.compression.params import TorchHalfParams, check_step_order, validate_step_params
from harness.compression.torch.half import cpu_flags
from harness.errors import UserError
from harness.scenario.applicability import refusal
from harness.scenario.loader import load_scenario
from tests.conftest import scenario_dict

CHANNELS = {"recipe": "torch.prune", "params": {"amount": 0.3, "structure": "channels"}}
HALF = {"recipe": "torch.half", "params": {}}
SYNTHETIC = {"kind": "synthetic", "inputs": [{"name": "x", "shape": [4], "dtype": "float32"}]}


def _torch(source: str, *steps: dict, **extra) -> dict:
    return scenario_dict(
        model={"framework": "torch", "source": source},
        variants=[{"name": "v", "steps": list(steps)}],
        gates={"error_rate": 0},
        **extra,
    )


def test_prune_structure_defaults_to_unstructured_and_channels_fine_tune_by_default() -> None:
    assert validate_step_params("torch.prune", {"amount": 0.5}).structure == "unstructured"  # type: ignore[attr-defined]
    params = validate_step_params("torch.prune", {"amount": 0.5, "structure": "channels"})
    assert params.fine_tune_epochs == 2  # type: ignore[attr-defined]
    assert validate_step_params("torch.prune", {**CHANNELS["params"], "fine_tune_epochs": 0})


@pytest.mark.parametrize("key", ["fine_tune_epochs", "learning_rate", "batch_size"])
def test_fine_tuning_settings_are_refused_for_unstructured_pruning(key: str) -> None:
    value = 0.01 if key == "learning_rate" else 3
    with pytest.raises(ValidationError, match=rf"{key}: only structure 'channels' fine-tunes"):
        validate_step_params("torch.prune", {"amount": 0.5, key: value})


def test_half_defaults_to_bfloat16_and_takes_only_half_dtypes() -> None:
    assert validate_step_params("torch.half", {}) == TorchHalfParams(dtype="bfloat16")
    assert validate_step_params("torch.half", {"dtype": "float16"}) == TorchHalfParams(dtype="float16")
    with pytest.raises(ValidationError):
        validate_step_params("torch.half", {"dtype": "float32"})


def test_validate_refuses_channel_pruning_of_a_pt2_file_and_takes_it_for_factories(
    write_scenario, tmp_path: Path
) -> None:
    (tmp_path / "model.pt2").write_bytes(b"x")
    with pytest.raises(UserError) as err:
        load_scenario(write_scenario(_torch("model.pt2", CHANNELS)))
    message = str(err.value)
    assert "variants[0].steps[0].recipe: torch.prune structure 'channels' rebuilds conv and linear" in message
    assert "\n" not in message
    unstructured = {"recipe": "torch.prune", "params": {"amount": 0.3}}
    load_scenario(write_scenario(_torch("model.pt2", unstructured)))
    load_scenario(write_scenario(_torch("python:my_models:make", CHANNELS)))
    load_scenario(write_scenario(_torch("model.pt2", HALF)))
    assert refusal(["torch.distill", "torch.prune"], "torch.export", [{}, CHANNELS["params"]]) is None


def test_validate_refuses_half_for_torchscript(write_scenario, tmp_path: Path) -> None:
    (tmp_path / "model.ts").write_bytes(b"x")
    with pytest.raises(UserError, match=r"torch\.half cannot compress a TorchScript file"):
        load_scenario(write_scenario(_torch("model.ts", HALF)))


def test_channel_fine_tuning_needs_a_labelled_train_split_unless_switched_off(write_scenario) -> None:
    with pytest.raises(
        UserError, match=r"torch\.prune structure channels fine-tunes on the data's train split"
    ):
        load_scenario(write_scenario(_torch("python:m:make", CHANNELS, data=SYNTHETIC)))
    no_tuning = {"recipe": "torch.prune", "params": {**CHANNELS["params"], "fine_tune_epochs": 0}}
    load_scenario(write_scenario(_torch("python:m:make", no_tuning, data=SYNTHETIC)))


@pytest.mark.parametrize(
    ("steps", "reason"),
    [
        (["torch.half", "torch.prune"], "prune first"),
        (["torch.half", "torch.int8"], "int8 quantizes float32 weights"),
        (["torch.int8", "torch.half"], "already quantized"),
        (["torch.half", "torch.half"], "already half precision"),
    ],
)
def test_half_takes_float32_weights_and_nothing_compresses_after_it(steps: list[str], reason: str) -> None:
    with pytest.raises(UserError, match=f"steps\\[1\\] {steps[1]} cannot come after steps\\[0\\].*{reason}"):
        check_step_order(steps)


def test_channel_pruning_then_half_or_int8_is_a_valid_order() -> None:
    check_step_order(["torch.prune", "torch.half"])
    check_step_order(["torch.prune", "torch.int8"])


def test_cpu_flags_are_read_from_x86_and_arm_cpuinfo(tmp_path: Path) -> None:
    x86 = tmp_path / "x86"
    x86.write_text(
        "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\nprocessor\t: 1\nflags\t: fpu\n"
    )
    assert cpu_flags(x86) == {"fpu", "avx2", "avx512f", "avx512_bf16"}
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd asimdhp bf16\n")
    assert {"asimdhp", "bf16"} <= cpu_flags(arm)
    assert cpu_flags(tmp_path / "missing") == set()
