"""The torch side of preparing a variant: obtain the model, export to .pt2, measure the file.

Sources: the built-in MLP and MobileNetV2, a python: factory (a real nn.Module, so every recipe
applies), a torch.export .pt2 (its GraphModule: prune and PT2E int8 apply to the program) and
TorchScript (served as given; recipes refuse it). The signature follows `harness.data.signature`: a .pt2
records its inputs, the others take `model.inputs` or the data's.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from harness.artifacts import ServedArtifact
from harness.compression.backend import BaseModel, FrameworkBackend
from harness.compression.torch.export import TorchArtifactRunner, copy_user_artifact, export_module
from harness.compression.torch.stats import archive_breakdown, file_sizes, param_count, sparsity_stats
from harness.data.dataset import Dataset
from harness.data.signature import settle_inputs, settle_output
from harness.data.tensors import Batch, Signature
from harness.errors import UserError
from harness.frameworks import TORCH
from harness.models.torch_io import model_outputs
from harness.models.torch_loader import (
    LoadedTorchModel,
    check_model,
    load_python_model,
    load_torch_model,
)
from harness.models.torch_mlp import BUILTIN_MLP, get_reference_mlp
from harness.models.torch_mobilenet import EVAL_CHUNK, get_reference_mobilenet
from harness.scenario.schema import BUILTIN_MOBILENET, ModelSpec, resolve_source

# rows of the test split a model is checked and its output kind detected on: enough to see
# probabilities or logits, few enough for a big image model to run quickly
CHECK_ROWS = 256


class TorchBackend(FrameworkBackend):
    """nn.Module or torch.export GraphModule in memory, `.pt2` on disk; TorchScript served as given."""

    framework: ClassVar[str] = TORCH.name

    def load_base(self, model: ModelSpec, scenario_dir: Path, data: Dataset) -> BaseModel:
        if model.is_builtin:
            return self._builtin(model, data)
        if model.is_python:
            loaded = load_python_model(model, scenario_dir)
        else:
            loaded = load_torch_model(resolve_source(model.source, scenario_dir))
        return _settle(loaded, model, data)

    def _builtin(self, model: ModelSpec, data: Dataset) -> BaseModel:
        where = f"model.source {model.source}"
        if model.source == BUILTIN_MOBILENET:
            return _builtin_mobilenet(model, data)
        if model.source != BUILTIN_MLP:
            raise UserError(
                f"model.source: unknown built-in model {model.source!r}; expected {BUILTIN_MLP} or "
                f"{BUILTIN_MOBILENET}"
            )
        spec = data.inputs[0] if len(data.inputs) == 1 else None
        fits = spec is not None and len(spec.shape) == 1 and np.dtype(spec.dtype).kind == "f"
        if not fits or data.task != "classification" or data.num_classes is None or not data.labelled:
            raise UserError(
                f"{where}: the built-in MLP takes one flat float input and learns class labels; the data "
                f"has {', '.join(s.describe() for s in data.inputs)} ({data.task}"
                f"{'' if data.labelled else ', unlabelled'})"
            )
        trained = get_reference_mlp(data, seed=model.seed)
        inputs = settle_inputs(where, None, model, data)
        outputs = model_outputs(trained.module, data.test.head(CHECK_ROWS).inputs, inputs)
        output = settle_output(where, model.task, model.output, outputs, data.num_classes)
        signature = Signature(inputs=inputs, output=output, task=model.task)
        return BaseModel(model=trained.module, info=trained.info(), signature=signature)

    def fresh(self, base: BaseModel) -> Any:
        if base.path is None:
            return copy.deepcopy(base.model)
        # a GraphModule's deepcopy warns (pytree) and a ScriptModule's is unreliable: read the file again
        return load_torch_model(base.path).module

    def export(self, model: Any, out_dir: Path, signature: Signature) -> ServedArtifact:
        artifact, _ = export_module(model, out_dir, signature)
        return artifact

    def copy_user_artifact(self, base: BaseModel, out_dir: Path) -> ServedArtifact:
        if base.path is None:  # a python: factory's module: servers load .pt2, so export it
            return self.export(base.model, out_dir, base.signature)
        assert base.format is not None
        return copy_user_artifact(base.path, base.format, out_dir, base.signature)

    def measure_artifact(self, artifact: ServedArtifact) -> tuple[dict[str, float], dict[str, Any]]:
        module = TorchArtifactRunner(artifact).module  # loaded back from disk, as a server would
        sparsity = sparsity_stats(module)
        raw, gz = file_sizes(artifact.path)
        metrics = {
            "model_size_bytes": float(raw),
            "model_size_gzip_bytes": float(gz),
            "sparsity": float(sparsity["sparsity"]),
            "param_count": float(param_count(module)),
        }
        details = {
            "sparsity_all_params": sparsity["sparsity_all_params"],
            "layer_sparsity": sparsity["per_tensor"],
            "archive": archive_breakdown(artifact.path),
        }
        return metrics, details

    def in_memory_outputs(self, model: Any, batch: Batch, signature: Signature) -> np.ndarray:
        return model_outputs(model, batch, signature.inputs)

    def set_intra_op_threads(self, threads: int) -> int | None:
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        return previous

    def runtime_info(self, artifact: ServedArtifact) -> dict[str, Any]:
        import torch

        return {"torch_version": torch.__version__}


def _builtin_mobilenet(model: ModelSpec, data: Dataset) -> BaseModel:
    """The trained MobileNetV2 for `data`: one float NCHW image input and class labels."""
    where = f"model.source {model.source}"
    spec = data.inputs[0] if len(data.inputs) == 1 else None
    fits = spec is not None and len(spec.shape) == 3 and np.dtype(spec.dtype).kind == "f"
    trainable = data.train is not None and data.train.labels is not None
    if not fits or data.task != "classification" or data.num_classes is None or not trainable:
        raise UserError(
            f"{where}: the built-in MobileNetV2 takes one float image input (channels, height, width) "
            f"and learns the class labels of a train split; the data has "
            f"{', '.join(s.describe() for s in data.inputs)} ({data.task}"
            f"{'' if trainable else ', no labelled train split'})"
        )
    trained = get_reference_mobilenet(data, seed=model.seed, options=model.builtin_options)
    inputs = settle_inputs(where, None, model, data)
    outputs = model_outputs(trained.module, data.test.head(CHECK_ROWS).inputs, inputs, chunk=EVAL_CHUNK)
    output = settle_output(where, model.task, model.output, outputs, data.num_classes)
    signature = Signature(inputs=inputs, output=output, task=model.task)
    return BaseModel(model=trained.module, info=trained.info(), signature=signature)


def _settle(loaded: LoadedTorchModel, model: ModelSpec, data: Dataset) -> BaseModel:
    """The loaded model with its signature: inputs settled against the declaration and the data,
    then checked by calling it, and the output kind read from its outputs on the test data."""
    inputs = settle_inputs(loaded.where, loaded.recorded, model, data)
    outputs = check_model(loaded.module, loaded.where, inputs, data.test.head(CHECK_ROWS).inputs)
    output = settle_output(loaded.where, model.task, model.output, outputs, data.num_classes)
    signature = Signature(inputs=inputs, output=output, task=model.task)
    info = {**loaded.info, "signature": signature.as_dict()}
    return BaseModel(
        model=loaded.module, info=info, signature=signature, path=loaded.path, format=loaded.format
    )
