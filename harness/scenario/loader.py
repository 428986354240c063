"""Load a scenario file and turn every problem into one line naming file, key and expectation."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from harness.errors import UserError
from harness.scenario.schema import Scenario

BUILTIN_MODELS = {"torch": ("builtin:mlp",), "tensorflow": ("builtin:mlp", "builtin:cnn")}
# a SavedModel is a folder holding saved_model.pb, not a file with a suffix
USER_MODEL_SUFFIXES = {"torch": (".pt", ".ts", ".pt2"), "tensorflow": (".keras", ".h5")}
SAVEDMODEL_MARKER = "saved_model.pb"
# recipe names start with the framework's short name: torch.prune, tf.prune
RECIPE_PREFIX = {"torch": "torch", "tensorflow": "tf"}


def load_scenario(path: str | Path) -> Scenario:
    """Parse and fully validate a scenario file without importing torch or TensorFlow."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"{path}: scenario file not found") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read scenario file: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise UserError(f"{path}: not valid YAML{where}: {problem}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of scenario keys at the top level, got {_kind(raw)}")
    scenario = _validate(Scenario, raw, path)
    _check_semantics(scenario, path)
    return scenario


def _validate(model: type[BaseModel], data: Any, path: Path, prefix: str = "") -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        # a misspelt key also shows up as a missing one: name the typo, it is the cause
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        raise UserError(f"{path}: {_describe(first, prefix)}") from None


def _describe(error: Any, prefix: str = "") -> str:
    """One pydantic error as 'key.path: what is expected (got X)'."""
    key = prefix + _key_path(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{key}: unknown key (not part of the scenario schema)"
    if kind == "missing":
        return f"{key}: required key is missing"
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    got = error.get("input")
    suffix = f" (got {got!r})" if not isinstance(got, dict | list) and kind != "missing" else ""
    return f"{key or '<top level>'}: expected {message[0].lower()}{message[1:]}{suffix}"


# pydantic adds the member type to the location of an error inside a union (users.int, users.list[int])
_UNION_TAG = re.compile(r"^(int|float|str|bool|none|(list|dict|function-\w+)\[.*\])$")


def _key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, str) and _UNION_TAG.match(part):
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _kind(value: Any) -> str:
    return "nothing (empty file)" if value is None else type(value).__name__


def _check_semantics(scenario: Scenario, path: Path) -> None:
    """Checks that need the registries or the file system; all light (no heavy imports)."""
    from harness.compression import RECIPES
    from harness.compression.params import check_step_order, params_model
    from harness.gates.thresholds import parse_threshold
    from harness.serving.registry import TARGET_OPTIONS, TARGETS

    model = scenario.model
    if model.is_builtin:
        known = BUILTIN_MODELS.get(model.framework, ())
        if model.source not in known:
            raise UserError(
                f"{path}: model.source: unknown built-in model {model.source!r}; "
                f"expected one of {', '.join(known)}"
            )
    else:
        _check_user_model(resolve_source(model.source, path.parent), model.framework, path)

    for i, variant in enumerate(scenario.variants):
        for j, step in enumerate(variant.steps):
            where = f"variants[{i}].steps[{j}]"
            if step.recipe not in RECIPES:
                raise UserError(
                    f"{path}: {where}.recipe: unknown recipe {step.recipe!r}; expected one of: "
                    f"{', '.join(RECIPES.names())}"
                )
            family = step.recipe.split(".", 1)[0]
            if family != RECIPE_PREFIX[model.framework]:
                raise UserError(
                    f"{path}: {where}.recipe: {step.recipe!r} is not a {model.framework} recipe (those start "
                    f"with {RECIPE_PREFIX[model.framework]}.) but model.framework is {model.framework!r}"
                )
            _validate(params_model(step.recipe), step.params, path, prefix=f"{where}.params.")
        try:
            check_step_order([step.recipe for step in variant.steps])
        except UserError as exc:
            raise UserError(f"{path}: variants[{i}].steps: {exc}") from None

    if scenario.serving.target not in TARGETS:
        raise UserError(
            f"{path}: serving.target: unknown target {scenario.serving.target!r}; expected one of: "
            f"{', '.join(TARGETS.names())}"
        )

    serving, load = scenario.serving, scenario.load
    batching = serving.target == "tfserving" and serving.batch_size > 1
    if batching and load.request_batch_size > serving.batch_size:
        # TF Serving's batching refuses a request with more rows than its max_batch_size
        raise UserError(
            f"{path}: load.request_batch_size: expected at most serving.batch_size ({serving.batch_size}) "
            f"for tfserving with batching, got {load.request_batch_size}"
        )

    options_model = TARGET_OPTIONS.get(scenario.serving.target)
    if options_model:
        module_name, _, attr = options_model.partition(":")
        model_cls = getattr(importlib.import_module(module_name), attr)
        _validate(model_cls, scenario.serving.options, path, prefix="serving.options.")

    for metric, threshold in scenario.gates.items():
        try:
            parse_threshold(metric, threshold)
        except ValueError as exc:
            raise UserError(f"{path}: gates.{metric}: {exc}") from None


def _check_user_model(model_path: Path, framework: str, path: Path) -> None:
    suffixes = USER_MODEL_SUFFIXES[framework]
    if framework == "tensorflow" and model_path.is_dir():
        if not (model_path / SAVEDMODEL_MARKER).is_file():
            raise UserError(
                f"{path}: model.source: folder {model_path} is not a SavedModel "
                f"(no {SAVEDMODEL_MARKER} in it)"
            )
        return
    if not model_path.is_file():
        raise UserError(f"{path}: model.source: model file {model_path} does not exist")
    if model_path.suffix not in suffixes:
        also = " or a SavedModel folder" if framework == "tensorflow" else ""
        raise UserError(
            f"{path}: model.source: expected a {framework} file ending in {', '.join(suffixes)}{also}, "
            f"got {model_path.name}"
        )


def resolve_source(source: str, scenario_dir: Path) -> Path:
    """User model paths are relative to the scenario file's folder, so scenarios run from anywhere."""
    path = Path(source).expanduser()
    return path if path.is_absolute() else (Path(scenario_dir) / path).resolve()
