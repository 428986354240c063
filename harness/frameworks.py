"""One light descriptor per framework: everything the harness knows about torch or TensorFlow.

A `Framework` names its recipe prefix, built-in models, the user model files it accepts, and, as
"module:attr" strings imported on first use, its `FrameworkBackend` (the work that needs the
framework), its in-process artifact runner and its import shim. Importing this module imports
neither framework, so `harness validate` checks a scenario against these facts in milliseconds.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from harness.artifacts import ServedArtifact
from harness.compression.backend import FrameworkBackend
from harness.data.tensors import Batch
from harness.errors import UserError

if TYPE_CHECKING:
    import numpy as np


class ArtifactRunner(Protocol):
    """Runs a served artifact, loaded from its file, in this process (safe to call from many threads)."""

    def predict_outputs(self, batch: Batch) -> np.ndarray:
        """The model's output for a batch (name -> array in the signature's dtypes): float32
        (n, signature.output.width)."""
        ...


@dataclass(frozen=True)
class ModelFolder:
    """A user model format that is a folder, recognised by a marker file inside it."""

    label: str  # what messages call it: "SavedModel"
    marker: str  # the file that makes a folder one: "saved_model.pb"


@dataclass(frozen=True)
class Framework:
    """What the harness needs to know about one framework, without importing it."""

    name: str  # ModelSpec.framework and ServedArtifact.framework: "torch", "tensorflow"
    package: str  # the top-level module the framework is imported as
    recipe_prefix: str  # its recipes are named "<prefix>.<recipe>": "torch.prune", "tf.prune"
    builtin_models: tuple[str, ...]  # model.source values of its built-in reference models
    # suffix of a user model file -> the format it is loaded as (BaseModel.format)
    user_formats: Mapping[str, str] = field(hash=False)
    backend_target: str  # "module:Class" of its FrameworkBackend
    runner_target: str  # "module:Class" of its ArtifactRunner, constructed with the ServedArtifact
    # "module:function" that imports the framework as the harness needs it (environment set first);
    # None: a plain import of `package` will do
    import_shim: str | None = None
    user_folder: ModelFolder | None = None  # a folder format it also accepts as a user model

    def __post_init__(self) -> None:
        object.__setattr__(self, "user_formats", MappingProxyType(dict(self.user_formats)))

    @property
    def user_suffixes(self) -> tuple[str, ...]:
        """Suffixes of the user model files it accepts, e.g. (".pt", ".ts", ".pt2")."""
        return tuple(self.user_formats)

    def owns_recipe(self, recipe: str) -> bool:
        """Whether `recipe` ("tf.prune") is one of this framework's recipes, judged by its prefix."""
        return recipe.split(".", 1)[0] == self.recipe_prefix

    def backend(self) -> FrameworkBackend:
        """Its FrameworkBackend (the backend's module is imported; the framework itself only on use)."""
        backend: FrameworkBackend = _resolve(self.backend_target)()
        return backend

    def runner(self, artifact: ServedArtifact) -> ArtifactRunner:
        """A runner with `artifact` loaded from disk (imports the framework)."""
        runner: ArtifactRunner = _resolve(self.runner_target)(artifact)
        return runner

    def import_framework(self) -> ModuleType:
        """The framework's top-level module, imported through its shim if it has one."""
        if self.import_shim is not None:
            _resolve(self.import_shim)()
        return importlib.import_module(self.package)


def _resolve(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


SAVEDMODEL = ModelFolder(label="SavedModel", marker="saved_model.pb")

TORCH = Framework(
    name="torch",
    package="torch",
    recipe_prefix="torch",
    builtin_models=("builtin:mlp", "builtin:mobilenet_v2"),
    user_formats={".pt": "torchscript", ".ts": "torchscript", ".pt2": "torch.export"},
    backend_target="harness.compression.torch.backend:TorchBackend",
    runner_target="harness.compression.torch.export:TorchArtifactRunner",
)

TENSORFLOW = Framework(
    name="tensorflow",
    package="tensorflow",
    recipe_prefix="tf",
    builtin_models=("builtin:mlp", "builtin:cnn", "builtin:mobilenet_v2"),
    user_formats={".keras": "keras", ".h5": "h5"},
    backend_target="harness.compression.tensorflow.backend:TensorFlowBackend",
    runner_target="harness.compression.tensorflow.runner:TfArtifactRunner",
    # legacy Keras (tf_keras) for tensorflow-model-optimization: set before TensorFlow is first imported
    import_shim="harness.compression.tensorflow.tf_import:import_tf",
    user_folder=SAVEDMODEL,
)

FRAMEWORKS: Mapping[str, Framework] = MappingProxyType({fw.name: fw for fw in (TORCH, TENSORFLOW)})


def framework(name: str) -> Framework:
    """The descriptor of framework `name`; UserError naming the known ones if there is none."""
    try:
        return FRAMEWORKS[name]
    except KeyError:
        known = ", ".join(sorted(FRAMEWORKS))
        raise UserError(f"unknown framework {name!r}; expected one of: {known}") from None
