"""Checks of a parsed scenario that need the registries, the file system or this machine.

The dependency runs one way: this module imports the recipe and target registries, the framework
descriptors and the params models; none of those imports anything from `harness.scenario` except
the schema.
All light: no torch or TensorFlow is imported (plugin recipes excepted, when used).
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path

from harness.compression import RECIPES
from harness.compression.params import check_step_order, params_model
from harness.data.checks import check_data
from harness.errors import UserError
from harness.frameworks import Framework, framework
from harness.gates.thresholds import parse_threshold
from harness.load.native_build import compiler, native_built
from harness.metrics.catalog import LABELLED_METRICS
from harness.placement import available_cpus, cpulist, parse_cpus
from harness.scenario.applicability import labelled, missing_data, refusal, source_kind
from harness.scenario.messages import validated
from harness.scenario.schema import BUILTIN_MOBILENET, Scenario, resolve_source
from harness.serving.placement import scenario_placement
from harness.serving.registry import TARGET_OPTIONS, TARGETS

# python: sources name a module and a function in it, like an entry point
PYTHON_TARGET = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*")


def check_scenario(scenario: Scenario, path: Path) -> None:
    """UserError (one line naming `path` and the key) for the first problem the schema cannot see."""
    _check_model(scenario, path)
    check_data(scenario, path)
    _check_variants(scenario, path)
    _check_serving_and_load(scenario, path)
    for metric, threshold in scenario.gates.items():
        try:
            parse_threshold(metric, threshold)
        except ValueError as exc:
            raise UserError(f"{path}: gates.{metric}: {exc}") from None
        if metric in LABELLED_METRICS and not labelled(scenario.data):
            raise UserError(
                f"{path}: gates.{metric}: needs labelled data, but the data has no labels; gate "
                "fidelity to the reference instead (agreement, kl_divergence, output_abs_diff_max)"
            )


def _check_model(scenario: Scenario, path: Path) -> None:
    model = scenario.model
    spec = framework(model.framework)
    if model.is_builtin:
        if model.source not in spec.builtin_models:
            raise UserError(
                f"{path}: model.source: unknown built-in model {model.source!r}; "
                f"expected one of {', '.join(spec.builtin_models)}"
            )
        if scenario.data is not None:
            raise UserError(
                f"{path}: data: the built-in models are trained and evaluated on digits; remove the "
                "data: block, or give your own model (a file or a python: factory) to use your data"
            )
        wanted = "digits_rgb" if model.source == BUILTIN_MOBILENET else "digits"
        if model.data_shorthand != wanted:
            raise UserError(
                f"{path}: model.dataset: {model.source} is trained on {wanted}; expected {wanted} or no "
                f"model.dataset, got {model.data_shorthand}"
            )
    elif model.is_python:
        # only the form: importing the module runs the user's code, which `validate` does not do
        if not PYTHON_TARGET.fullmatch(model.python_target):
            raise UserError(
                f"{path}: model.source: expected 'python:package.module:function', got {model.source!r}"
            )
        if model.weights is not None and not resolve_source(model.weights, path.parent).is_file():
            raise UserError(
                f"{path}: model.weights: file {resolve_source(model.weights, path.parent)} does not exist"
            )
    else:
        _check_user_model(resolve_source(model.source, path.parent), spec, path)


def _check_variants(scenario: Scenario, path: Path) -> None:
    spec = framework(scenario.model.framework)
    for i, variant in enumerate(scenario.variants):
        for j, step in enumerate(variant.steps):
            where = f"variants[{i}].steps[{j}]"
            if step.recipe not in RECIPES:
                raise UserError(
                    f"{path}: {where}.recipe: unknown recipe {step.recipe!r}; expected one of: "
                    f"{', '.join(RECIPES.names())}"
                )
            if not spec.owns_recipe(step.recipe):
                raise UserError(
                    f"{path}: {where}.recipe: {step.recipe!r} is not a {spec.name} recipe (those start "
                    f"with {spec.recipe_prefix}.) but model.framework is {spec.name!r}"
                )
            validated(params_model(step.recipe), step.params, path, prefix=f"{where}.params.")
        try:
            check_step_order([step.recipe for step in variant.steps])
        except UserError as exc:
            raise UserError(f"{path}: variants[{i}].steps: {exc}") from None
        kind = source_kind(scenario.model, path.parent)
        refused = refusal([s.recipe for s in variant.steps], kind, [s.params for s in variant.steps])
        if refused is not None:
            j, reason = refused
            raise UserError(f"{path}: variants[{i}].steps[{j}].recipe: {reason}")
        for j, step in enumerate(variant.steps):
            missing = missing_data(step.recipe, step.params, scenario.data)
            if missing:
                raise UserError(f"{path}: variants[{i}].steps[{j}].recipe: {missing}")


def _check_serving_and_load(scenario: Scenario, path: Path) -> None:
    serving, load = scenario.serving, scenario.load
    if serving.target not in TARGETS:
        raise UserError(
            f"{path}: serving.target: unknown target {serving.target!r}; expected one of: "
            f"{', '.join(TARGETS.names())}"
        )
    batching = serving.target == "tfserving" and serving.batch_size > 1
    if batching and load.request_batch_size > serving.batch_size:
        # TF Serving's batching refuses a request with more rows than its max_batch_size
        raise UserError(
            f"{path}: load.request_batch_size: expected at most serving.batch_size ({serving.batch_size}) "
            f"for tfserving with batching, got {load.request_batch_size}"
        )
    cpus = os.cpu_count() or 1
    if load.workers > cpus and not load.force_workers:
        # each worker is a process busy-looping on requests: more than the cores only measures contention
        raise UserError(
            f"{path}: load.workers: expected at most this machine's {cpus} CPUs (set load.force_workers: "
            f"true to allow more), got {load.workers}"
        )
    if load.generator == "native" and compiler() is None and not native_built():
        raise UserError(
            f"{path}: load.generator: native builds its engine from C source once, and this machine has "
            "no C compiler (cc, gcc or clang; or set CC): install one, or use generator: locust"
        )
    usable = set(available_cpus())
    for key, value in (("serving.cpus", serving.cpus), ("load.cpus", load.cpus)):
        chosen = parse_cpus(value)
        if isinstance(chosen, tuple) and not set(chosen) <= usable:
            raise UserError(
                f"{path}: {key}: CPU {cpulist(set(chosen) - usable)} is not available to this run; "
                f"expected CPUs among {cpulist(usable)}, 'auto' or 'any'"
            )
    options_model = TARGET_OPTIONS.get(serving.target)
    if options_model:
        # a "module:Class" string like the registries: the options model's module is imported on use
        module_name, _, attr = options_model.partition(":")
        model_cls = getattr(importlib.import_module(module_name), attr)
        options = validated(model_cls, serving.options, path, prefix="serving.options.")
        check_paths = getattr(options, "check_paths", None)
        if check_paths is not None:  # files the options name (a user handler) are the scenario's inputs
            try:
                check_paths(path.parent)
            except UserError as exc:
                raise UserError(f"{path}: {exc}") from None
    scenario_placement(scenario, path)  # a CPU list for a server that is not a local process tree


def _check_user_model(model_path: Path, spec: Framework, path: Path) -> None:
    folder = spec.user_folder  # a SavedModel is a folder holding saved_model.pb, not a file with a suffix
    if folder is not None and model_path.is_dir():
        if not (model_path / folder.marker).is_file():
            raise UserError(
                f"{path}: model.source: folder {model_path} is not a {folder.label} "
                f"(no {folder.marker} in it)"
            )
        return
    if not model_path.is_file():
        raise UserError(f"{path}: model.source: model file {model_path} does not exist")
    if model_path.suffix not in spec.user_formats:
        also = f" or a {folder.label} folder" if folder is not None else ""
        raise UserError(
            f"{path}: model.source: expected a {spec.name} file ending in {', '.join(spec.user_suffixes)}"
            f"{also}, got {model_path.name}"
        )
