"""Per variant: build or load the base model, apply the recipe steps, export, and measure the file.

Accuracy, sparsity and parameter count are taken from the exported file loaded back from disk,
never from the in-memory model, because an export can silently change what the model computes.
"""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from harness.artifacts import ServedArtifact
from harness.compression import RECIPES
from harness.compression.params import check_step_order, validate_step_params
from harness.errors import UserError
from harness.scenario.loader import resolve_source

if TYPE_CHECKING:
    from harness.models.digits import DigitsSplit
    from harness.scenario.schema import ModelSpec, VariantSpec

# The exported file may predict differently from the in-memory model by float rounding in a
# handful of borderline examples; beyond this accuracy gap something in the export is wrong.
EXPORT_ACCURACY_TOLERANCE = 0.005


@dataclass
class PreparedVariant:
    """A variant ready to serve: its artifact, what was measured on it, and what each step did."""

    name: str
    artifact: ServedArtifact
    # accuracy_inprocess, model_size_bytes, model_size_gzip_bytes, sparsity, param_count
    metrics: dict[str, float]
    compression: list[dict[str, Any]]  # one StepReport.as_dict() per applied step
    seconds: float
    stage_seconds: dict[str, float] = field(default_factory=dict)
    base: dict[str, Any] = field(default_factory=dict)  # how the base model was obtained
    details: dict[str, Any] = field(default_factory=dict)  # e.g. archive breakdown, in-memory accuracy
    warnings: list[str] = field(default_factory=list)


@dataclass
class _BaseModel:
    module: Any
    info: dict[str, Any]
    path: Path | None = None  # user file, None for built-ins
    format: str | None = None

    def fresh(self) -> Any:
        """A copy the recipes may modify in place without touching later variants."""
        if self.path is None:
            return copy.deepcopy(self.module)
        # loaded ScriptModules/GraphModules do not deep-copy reliably: read the file again
        from harness.models.torch_loader import load_torch_model

        return load_torch_model(self.path).module


_BASES: dict[tuple[Any, ...], _BaseModel] = {}
_BASES_LOCK = threading.Lock()


def prepare_variant(
    model: ModelSpec, variant: VariantSpec, scenario_dir: Path, out_dir: Path, data: DigitsSplit
) -> PreparedVariant:
    """Compress, export to `out_dir` and evaluate one variant of `model` on `data`'s test set."""
    if model.framework != "torch":
        raise UserError(f"model.framework {model.framework!r}: only torch models can be prepared yet")
    start = time.perf_counter()
    stages: dict[str, float] = {}
    warnings: list[str] = []

    t0 = time.perf_counter()
    base = load_base_model(model, Path(scenario_dir), data)
    module = base.fresh()
    stages["base_model"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    module, reports = _apply_steps(model.framework, variant, module)
    stages["compress"] = time.perf_counter() - t0

    from harness.compression.torch.export import copy_user_artifact, export_module

    t0 = time.perf_counter()
    if base.path is not None and not variant.steps:
        assert base.format is not None
        artifact = copy_user_artifact(
            base.path, base.format, out_dir, input_shape=data.input_shape, num_classes=data.num_classes
        )
    else:
        artifact, _ = export_module(
            module, out_dir, input_shape=data.input_shape, num_classes=data.num_classes
        )
    stages["export"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    metrics, details = _measure_artifact(artifact, data)
    if base.path is None or variant.steps:
        memory_accuracy = _in_memory_accuracy(module, data)
        details["accuracy_in_memory"] = memory_accuracy
        gap = abs(memory_accuracy - metrics["accuracy_inprocess"])
        if gap > EXPORT_ACCURACY_TOLERANCE:
            warnings.append(
                f"the exported file's accuracy {metrics['accuracy_inprocess']:.4f} differs from the "
                f"in-memory model's {memory_accuracy:.4f}: the export changed what the model computes"
            )
    stages["evaluate"] = time.perf_counter() - t0

    return PreparedVariant(
        name=variant.name,
        artifact=artifact,
        metrics=metrics,
        compression=[r.as_dict() for r in reports],
        seconds=time.perf_counter() - start,
        stage_seconds={k: round(v, 4) for k, v in stages.items()},
        base=dict(base.info),
        details=details,
        warnings=warnings,
    )


def load_base_model(model: ModelSpec, scenario_dir: Path, data: DigitsSplit) -> _BaseModel:
    """The uncompressed model, built (or read from cache) once per process and source."""
    if model.is_builtin:
        key: tuple[Any, ...] = (model.source, model.seed, data.fingerprint())
    else:
        path = resolve_source(model.source, scenario_dir)
        stat = path.stat() if path.is_file() else None
        version = (stat.st_mtime_ns, stat.st_size) if stat else None
        key = (str(path), version, data.fingerprint())
    with _BASES_LOCK:
        if key not in _BASES:
            _BASES[key] = _build_base(model, scenario_dir, data)
        return _BASES[key]


def _build_base(model: ModelSpec, scenario_dir: Path, data: DigitsSplit) -> _BaseModel:
    if model.is_builtin:
        from harness.models.torch_mlp import BUILTIN_MLP, get_reference_mlp

        if model.source != BUILTIN_MLP:
            raise UserError(f"model.source: unknown built-in model {model.source!r}; expected {BUILTIN_MLP}")
        trained = get_reference_mlp(data, seed=model.seed)
        return _BaseModel(module=trained.module, info=trained.info())

    from harness.models.torch_loader import check_classifier, load_torch_model

    loaded = load_torch_model(resolve_source(model.source, scenario_dir))
    check_classifier(loaded.module, loaded.path, data.x_test, data.num_classes)
    info = {"source": str(loaded.path), "format": loaded.format}
    return _BaseModel(module=loaded.module, info=info, path=loaded.path, format=loaded.format)


def _apply_steps(framework: str, variant: VariantSpec, module: Any) -> tuple[Any, list[Any]]:
    check_step_order([step.recipe for step in variant.steps])
    reports = []
    for i, step in enumerate(variant.steps):
        where = f"variant {variant.name!r} steps[{i}] {step.recipe}"
        try:
            params = validate_step_params(step.recipe, step.params)
        except ValidationError as exc:
            error = exc.errors()[0]
            key = ".".join(str(part) for part in error["loc"]) or "params"
            raise UserError(f"{where}: params.{key}: {error['msg']}") from None
        recipe_cls = RECIPES.resolve(step.recipe)
        if recipe_cls.framework != framework:
            raise UserError(f"{where}: a {recipe_cls.framework} recipe cannot compress a {framework} model")
        module, report = recipe_cls(params).apply(module)
        reports.append(report)
    return module, reports


def _measure_artifact(artifact: ServedArtifact, data: DigitsSplit) -> tuple[dict[str, float], dict[str, Any]]:
    from harness.compression.torch.export import TorchArtifactRunner
    from harness.compression.torch.stats import archive_breakdown, file_sizes, param_count, sparsity_stats
    from harness.metrics.accuracy import accuracy

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


def _in_memory_accuracy(module: Any, data: DigitsSplit) -> float:
    import torch

    from harness.metrics.accuracy import accuracy

    with torch.inference_mode():
        labels = module(torch.tensor(data.x_test)).argmax(dim=1).numpy()
    return accuracy(labels, data.y_test)
