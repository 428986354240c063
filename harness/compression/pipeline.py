"""Per variant: build or load the base model, apply the recipe steps, export, and measure the file.

Accuracy, sparsity and parameter count are taken from the exported file loaded back from disk,
never from the in-memory model, because an export can silently change what the model computes.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from harness.artifacts import ServedArtifact
from harness.compression import RECIPES
from harness.compression.backend import BaseModel
from harness.compression.base import RecipeContext
from harness.compression.params import check_step_order, validate_step_params
from harness.data.dataset import Dataset
from harness.data.tensors import predict_in_chunks
from harness.errors import UserError
from harness.frameworks import framework
from harness.metrics.quality import evaluate_outputs
from harness.scenario.schema import ModelSpec, VariantSpec, resolve_source

# The exported file may predict differently from the in-memory model by float rounding in a
# handful of borderline examples; beyond this fraction something in the export is wrong.
EXPORT_ACCURACY_TOLERANCE = 0.005


@dataclass
class PreparedVariant:
    """A variant ready to serve: its artifact, what was measured on it, and what each step did."""

    name: str
    artifact: ServedArtifact
    # model_size_bytes, model_size_gzip_bytes, sparsity, param_count, and the in-process quality
    # figures with an `_inprocess` suffix (accuracy_inprocess, ...)
    metrics: dict[str, float]
    compression: list[dict[str, Any]]  # one StepReport.as_dict() per applied step
    seconds: float
    outputs: np.ndarray  # the exported file's outputs on the test split, in this process
    stage_seconds: dict[str, float] = field(default_factory=dict)
    base: dict[str, Any] = field(default_factory=dict)  # how the base model was obtained
    details: dict[str, Any] = field(default_factory=dict)  # e.g. archive breakdown, in-memory accuracy
    warnings: list[str] = field(default_factory=list)


_BASES: dict[tuple[Any, ...], BaseModel] = {}
_BASES_LOCK = threading.Lock()


def prepare_variant(
    model: ModelSpec, variant: VariantSpec, scenario_dir: Path, out_dir: Path, data: Dataset
) -> PreparedVariant:
    """Compress, export to `out_dir` and evaluate one variant of `model` on `data`'s test split."""
    backend = framework(model.framework).backend()
    start = time.perf_counter()
    stages: dict[str, float] = {}
    warnings: list[str] = []

    t0 = time.perf_counter()
    base = load_base_model(model, Path(scenario_dir), data)
    if base.info.get("cache_warning"):  # a cached model failed its content hash and was retrained
        warnings.append(str(base.info["cache_warning"]))
    module = backend.fresh(base)
    stages["base_model"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    context = RecipeContext(data=data, seed=model.seed, work_dir=out_dir / "work", signature=base.signature)
    module, reports = _apply_steps(model.framework, variant, module, context)
    stages["compress"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if base.path is not None and not variant.steps:
        artifact = backend.copy_user_artifact(base, out_dir)
    else:
        artifact = backend.export(module, out_dir, base.signature)
    stages["export"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    metrics, details = backend.measure_artifact(artifact)
    runner = framework(artifact.framework).runner(artifact)  # the file loaded back, as a server would
    outputs = predict_in_chunks(runner.predict_outputs, data.test.inputs)
    quality = evaluate_outputs(
        outputs,
        task=artifact.signature.task,
        output_kind=artifact.signature.output.kind,
        labels=data.test.labels,
        num_classes=data.num_classes,
        reference=None,
    )
    metrics.update({f"{name}_inprocess": value for name, value in quality.metrics.items()})
    if base.path is None or variant.steps:
        memory = predict_in_chunks(
            lambda batch: backend.in_memory_outputs(module, batch, base.signature), data.test.inputs
        )
        drift = export_drift(outputs, memory, artifact.signature.task)
        details["export_drift"] = drift
        if drift["changed_fraction"] > EXPORT_ACCURACY_TOLERANCE:
            warnings.append(
                f"the exported file's outputs differ from the in-memory model's on "
                f"{drift['changed_fraction']:.2%} of the test examples: the export changed what the "
                "model computes"
            )
    stages["evaluate"] = time.perf_counter() - t0

    return PreparedVariant(
        name=variant.name,
        artifact=artifact,
        metrics=metrics,
        compression=[r.as_dict() for r in reports],
        seconds=time.perf_counter() - start,
        outputs=outputs,
        stage_seconds={k: round(v, 4) for k, v in stages.items()},
        base=dict(base.info),
        details=details,
        warnings=warnings,
    )


def export_drift(exported: np.ndarray, in_memory: np.ndarray, task: str) -> dict[str, float]:
    """How far the exported file's outputs are from the in-memory model's: the fraction of examples
    whose top-1 changed (classification) or whose values moved by more than 1% of their spread."""
    diff = np.abs(exported.astype(np.float64) - in_memory.astype(np.float64))
    if task == "classification":
        changed = exported.argmax(axis=1) != in_memory.argmax(axis=1)
    else:
        spread = float(np.std(in_memory)) or 1.0
        changed = diff.max(axis=1) > 0.01 * spread
    return {"changed_fraction": float(np.mean(changed)), "max_abs_diff": float(diff.max(initial=0.0))}


def load_base_model(model: ModelSpec, scenario_dir: Path, data: Dataset) -> BaseModel:
    """The uncompressed model, built (or read from cache) once per process and source."""
    if model.is_builtin:
        options = model.builtin_options.model_dump_json()  # a MobileNetV2's width and epochs
        key: tuple[Any, ...] = (model.framework, model.source, model.seed, options, data.fingerprint())
    else:
        files = [] if model.is_python else [resolve_source(model.source, scenario_dir)]
        if model.weights is not None:
            files.append(resolve_source(model.weights, scenario_dir))
        versions = []
        for path in files:
            stat = path.stat() if path.exists() else None  # a SavedModel is a folder
            versions.append((str(path), (stat.st_mtime_ns, stat.st_size) if stat else None))
        key = (model.model_dump_json(), str(scenario_dir), tuple(versions), data.fingerprint())
    with _BASES_LOCK:
        if key not in _BASES:
            _BASES[key] = framework(model.framework).backend().load_base(model, scenario_dir, data)
        return _BASES[key]


def _apply_steps(
    model_framework: str, variant: VariantSpec, module: Any, context: RecipeContext
) -> tuple[Any, list[Any]]:
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
        if recipe_cls.framework != model_framework:
            raise UserError(
                f"{where}: a {recipe_cls.framework} recipe cannot compress a {model_framework} model"
            )
        module, report = recipe_cls(params).apply(module, context)
        reports.append(report)
    return module, reports
