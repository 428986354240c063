"""The torch side of preparing a variant: built-in MLP or user file, torch.export, measurements."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, ClassVar

from harness.artifacts import ServedArtifact
from harness.compression.backend import BaseModel, FrameworkBackend
from harness.compression.torch.export import TorchArtifactRunner, copy_user_artifact, export_module
from harness.compression.torch.stats import archive_breakdown, file_sizes, param_count, sparsity_stats
from harness.errors import UserError
from harness.frameworks import TORCH
from harness.metrics.accuracy import accuracy
from harness.models.digits import DigitsSplit
from harness.models.torch_loader import check_classifier, load_torch_model
from harness.models.torch_mlp import BUILTIN_MLP, get_reference_mlp
from harness.scenario.schema import ModelSpec, resolve_source


class TorchBackend(FrameworkBackend):
    """nn.Module in memory, `.pt2` (torch.export) on disk; user TorchScript files served as given."""

    framework: ClassVar[str] = TORCH.name

    def load_base(self, model: ModelSpec, scenario_dir: Path, data: DigitsSplit) -> BaseModel:
        if model.is_builtin:
            if model.source != BUILTIN_MLP:
                raise UserError(
                    f"model.source: unknown built-in model {model.source!r}; expected {BUILTIN_MLP}"
                )
            trained = get_reference_mlp(data, seed=model.seed)
            return BaseModel(model=trained.module, info=trained.info())

        loaded = load_torch_model(resolve_source(model.source, scenario_dir))
        check_classifier(loaded.module, loaded.path, data.x_test, data.num_classes)
        info = {"source": str(loaded.path), "format": loaded.format}
        return BaseModel(model=loaded.module, info=info, path=loaded.path, format=loaded.format)

    def fresh(self, base: BaseModel) -> Any:
        if base.path is None:
            return copy.deepcopy(base.model)
        # loaded ScriptModules/GraphModules do not deep-copy reliably: read the file again

        return load_torch_model(base.path).module

    def export(self, model: Any, out_dir: Path, data: DigitsSplit) -> ServedArtifact:
        shape, classes = data.input_shape, data.num_classes
        artifact, _ = export_module(model, out_dir, input_shape=shape, num_classes=classes)
        return artifact

    def copy_user_artifact(self, base: BaseModel, out_dir: Path, data: DigitsSplit) -> ServedArtifact:
        assert base.path is not None
        assert base.format is not None
        return copy_user_artifact(
            base.path, base.format, out_dir, input_shape=data.input_shape, num_classes=data.num_classes
        )

    def measure_artifact(
        self, artifact: ServedArtifact, data: DigitsSplit
    ) -> tuple[dict[str, float], dict[str, Any]]:
        runner = TorchArtifactRunner(artifact)  # loaded back from disk, as a server would
        labels = runner.predict_labels(data.x_test)
        sparsity = sparsity_stats(runner.module)
        raw, gz = file_sizes(artifact.path)
        metrics = {
            "accuracy_inprocess": accuracy(labels, data.y_test),
            "model_size_bytes": float(raw),
            "model_size_gzip_bytes": float(gz),
            "sparsity": float(sparsity["sparsity"]),
            "param_count": float(param_count(runner.module)),
        }
        details = {
            "sparsity_all_params": sparsity["sparsity_all_params"],
            "archive": archive_breakdown(artifact.path),
        }
        return metrics, details

    def in_memory_accuracy(self, model: Any, data: DigitsSplit) -> float:
        import torch

        with torch.inference_mode():
            labels = model(torch.tensor(data.x_test)).argmax(dim=1).numpy()
        return accuracy(labels, data.y_test)

    def set_intra_op_threads(self, threads: int) -> int | None:
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        return previous

    def runtime_info(self, artifact: ServedArtifact) -> dict[str, Any]:
        import torch

        return {"torch_version": torch.__version__}
