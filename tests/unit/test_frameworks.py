"""Each framework is described once, in `harness.frameworks`, and everything else reads that."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np
import pytest

import harness.frameworks as frameworks_module
from harness.artifacts import ServedArtifact
from harness.compression import RECIPES
from harness.compression.backend import BaseModel, FrameworkBackend
from harness.data.tensors import OutputSpec, Signature, TensorSpec
from harness.errors import UserError
from harness.frameworks import FRAMEWORKS, TENSORFLOW, TORCH, Framework, framework
from harness.models.tf_models import BUILTIN_TF_MODELS
from harness.models.torch_mlp import BUILTIN_MLP
from harness.scenario.loader import load_scenario
from harness.scenario.schema import BUILTIN_MOBILENET, ServingSpec
from harness.serving.inprocess import InProcessTarget
from tests.conftest import ROOT, scenario_dict

NAMES = sorted(FRAMEWORKS)


def _attr(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


@pytest.mark.parametrize("name", NAMES)
def test_descriptor_backend_resolves_to_a_backend_of_its_framework(name: str) -> None:
    backend = framework(name).backend()
    assert isinstance(backend, FrameworkBackend)
    assert backend.framework == name


@pytest.mark.parametrize("name", NAMES)
def test_descriptor_runner_and_import_shim_name_existing_callables(name: str) -> None:
    spec = framework(name)
    assert callable(_attr(spec.runner_target).predict_outputs)
    if spec.import_shim is not None:
        assert callable(_attr(spec.import_shim))
    assert importlib.util.find_spec(spec.package) is not None


def test_resolving_descriptors_and_backends_imports_no_framework() -> None:
    code = (
        "import sys\n"
        "from harness.frameworks import FRAMEWORKS\n"
        "for spec in FRAMEWORKS.values():\n"
        "    spec.backend()\n"
        "heavy = {'torch', 'tensorflow', 'tf_keras'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60)


def test_builtin_models_match_the_model_modules() -> None:
    assert TORCH.builtin_models == (BUILTIN_MLP, BUILTIN_MOBILENET)
    assert set(TENSORFLOW.builtin_models) == {*BUILTIN_TF_MODELS, BUILTIN_MOBILENET}


@pytest.mark.parametrize("recipe", RECIPES.names())
def test_every_recipe_belongs_to_exactly_one_framework(recipe: str) -> None:
    assert sum(spec.owns_recipe(recipe) for spec in FRAMEWORKS.values()) == 1


def test_unknown_framework_is_a_user_error_listing_known_ones() -> None:
    with pytest.raises(UserError, match="unknown framework 'jax'; expected one of: tensorflow, torch"):
        framework("jax")


def test_descriptor_is_read_only() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        TORCH.recipe_prefix = "pt"  # type: ignore[misc]
    with pytest.raises(TypeError):
        TORCH.user_formats[".onnx"] = "onnx"  # type: ignore[index]


@pytest.mark.parametrize("spec", [TORCH, TENSORFLOW], ids=lambda spec: spec.name)
def test_wrong_suffix_message_lists_the_descriptors_suffixes(spec: Framework, write_scenario, tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"x")
    path = write_scenario(scenario_dict(model={"framework": spec.name, "source": "model.onnx"}, variants=[]))
    with pytest.raises(UserError) as info:
        load_scenario(path)
    message = str(info.value)
    assert f"expected a {spec.name} file ending in {', '.join(spec.user_suffixes)}" in message
    assert ("or a SavedModel folder" in message) == (spec.user_folder is not None)


@pytest.fixture
def patched_torch(monkeypatch: pytest.MonkeyPatch) -> Framework:
    """The torch descriptor with other built-ins and suffixes: what validation must follow."""
    patched = dataclasses.replace(TORCH, builtin_models=("builtin:tiny",), user_formats={".onnx": "onnx"})
    monkeypatch.setattr(frameworks_module, "FRAMEWORKS", MappingProxyType({**FRAMEWORKS, "torch": patched}))
    return patched


@pytest.mark.usefixtures("patched_torch")
def test_validation_reads_builtins_and_suffixes_from_the_descriptor(write_scenario, tmp_path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"x")
    load_scenario(write_scenario(scenario_dict(model={"framework": "torch", "source": "model.onnx"})))
    load_scenario(write_scenario(scenario_dict(model={"framework": "torch", "source": "builtin:tiny"})))

    with pytest.raises(
        UserError, match=r"unknown built-in model 'builtin:mlp'; expected one of builtin:tiny"
    ):
        load_scenario(write_scenario(scenario_dict()))
    (tmp_path / "model.pt2").write_bytes(b"x")
    with pytest.raises(UserError, match=r"expected a torch file ending in \.onnx, got model\.pt2"):
        load_scenario(write_scenario(scenario_dict(model={"framework": "torch", "source": "model.pt2"})))


DIGITS_SIGNATURE = Signature(
    inputs=(TensorSpec("inputs", (64,), "float32"),), output=OutputSpec("logits", 10), task="classification"
)


class FakeRunner:
    """Predicts class 0 for every row."""

    def __init__(self, artifact: ServedArtifact) -> None:
        self.artifact = artifact

    def predict_outputs(self, batch: Any) -> np.ndarray:
        rows = len(next(iter(batch.values())))
        scores = np.zeros((rows, 10), dtype=np.float32)
        scores[:, 0] = 1.0
        return scores


class FakeBackend(FrameworkBackend):
    """Records the intra-op thread settings the in-process target asks for."""

    framework: ClassVar[str] = "fake"
    threads: ClassVar[list[int]] = []

    def load_base(self, model: Any, scenario_dir: Path, data: Any) -> BaseModel:
        raise NotImplementedError

    def fresh(self, base: BaseModel) -> Any:
        raise NotImplementedError

    def export(self, model: Any, out_dir: Path, signature: Any) -> ServedArtifact:
        raise NotImplementedError

    def copy_user_artifact(self, base: BaseModel, out_dir: Path) -> ServedArtifact:
        raise NotImplementedError

    def measure_artifact(self, artifact: ServedArtifact) -> tuple[dict[str, float], dict[str, Any]]:
        raise NotImplementedError

    def in_memory_outputs(self, model: Any, batch: Any, signature: Any) -> np.ndarray:
        raise NotImplementedError

    def set_intra_op_threads(self, threads: int) -> int | None:
        previous = self.threads[-1] if self.threads else 7
        self.threads.append(threads)
        return previous

    def runtime_info(self, artifact: ServedArtifact) -> dict[str, Any]:
        return {"fake_version": "1.0"}


def test_inprocess_target_dispatches_through_the_descriptor(monkeypatch, tmp_path: Path) -> None:
    fake = Framework(
        name="fake",
        package="numpy",
        recipe_prefix="fake",
        builtin_models=(),
        user_formats={},
        backend_target=f"{__name__}:FakeBackend",
        runner_target=f"{__name__}:FakeRunner",
    )
    monkeypatch.setattr(frameworks_module, "FRAMEWORKS", MappingProxyType({"fake": fake}))
    monkeypatch.setattr(FakeBackend, "threads", [])
    artifact = ServedArtifact(
        path=tmp_path / "m", framework="fake", format="fake", signature=DIGITS_SIGNATURE
    )
    target = InProcessTarget(
        ServingSpec(target="inprocess", workers=1, options={"intra_op_threads": 2}), tmp_path
    )

    target.start(artifact)
    outputs = target.predict({"inputs": np.zeros((3, 64), dtype=np.float32)})
    assert outputs.shape == (3, 10)
    assert outputs.argmax(axis=1).tolist() == [0, 0, 0]
    assert target.describe()["fake_version"] == "1.0"
    target.stop()
    assert FakeBackend.threads == [2, 7]  # set for serving, then the previous count restored


@pytest.mark.parametrize(
    "module",
    ["harness/scenario/checks.py", "harness/serving/inprocess.py", "harness/metrics/accuracy.py"],
)
def test_dispatching_modules_keep_no_per_framework_table(module: str) -> None:
    source = (ROOT / module).read_text()
    for literal in ('"torch"', '"tensorflow"', "'torch'", "'tensorflow'", '"tf"'):
        assert literal not in source, f"{module} names a framework itself; read harness.frameworks"
