"""User torch models in every source form: python: factory (+ state_dict or safetensors weights),
torch.export .pt2 and TorchScript. Their signatures are settled, exports predict like the module,
and what does not fit is a one-line UserError naming the scenario key and what the model expects."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from harness.compression.backend import BaseModel
from harness.compression.torch.backend import TorchBackend
from harness.compression.torch.export import TorchArtifactRunner
from harness.compression.torch.prune import TorchPruneRecipe
from harness.data.dataset import Dataset, Split
from harness.data.tensors import TensorSpec
from harness.errors import UserError
from harness.scenario.schema import InputDecl, ModelSpec
from tests.integration.torch_user_models import FACTORY_MODULE, KINDS, MODELS, Saved, save_sources

FORMS = ["python+state_dict", "python+safetensors", "pt2", "torchscript"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Saved]:
    return save_sources(tmp_path_factory.mktemp("scenario"))


@pytest.fixture(scope="module")
def backend() -> TorchBackend:
    return TorchBackend()


def load(backend: TorchBackend, item: Saved, form: str, **overrides: Any) -> BaseModel:
    return backend.load_base(item.spec(form, **overrides), item.folder, item.data)


# --- signatures and outputs -----------------------------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("kind", KINDS)
def test_every_source_form_loads_with_the_models_signature_and_outputs(
    backend: TorchBackend, saved: dict[str, Saved], kind: str, form: str
) -> None:
    item = saved[kind]
    base = load(backend, item, form)
    expected = MODELS[kind]
    assert base.signature.inputs == expected.inputs
    assert base.signature.task == expected.task
    assert base.signature.output.width == expected.width
    assert base.signature.output.kind == ("values" if expected.task == "regression" else "logits")
    assert base.format == {"pt2": "torch.export", "torchscript": "torchscript"}.get(form, "python")
    assert (base.path is None) == form.startswith("python")
    outputs = backend.in_memory_outputs(backend.fresh(base), item.data.test.inputs, base.signature)
    assert outputs.dtype == np.float32
    np.testing.assert_allclose(outputs, item.reference(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_python_source_exports_to_pt2_that_predicts_like_the_module(
    backend: TorchBackend, saved: dict[str, Saved], kind: str, tmp_path: Path
) -> None:
    item = saved[kind]
    base = load(backend, item, "python+state_dict")
    artifact = backend.copy_user_artifact(base, tmp_path)  # a factory is served as its export
    assert artifact.path == tmp_path / "model.pt2"
    assert artifact.format == "torch.export"
    assert artifact.signature == base.signature
    runner = TorchArtifactRunner(artifact)
    np.testing.assert_allclose(
        runner.predict_outputs(item.data.test.inputs), item.reference(), rtol=1e-5, atol=1e-5
    )
    # the batch dimension is dynamic: one example, with or without its batch axis, and a big batch
    one = {name: array[0] for name, array in item.data.test.inputs.items()}
    assert runner.predict_outputs(one).shape == (1, MODELS[kind].width)
    big = {name: np.concatenate([array] * 12) for name, array in item.data.test.inputs.items()}
    assert runner.predict_outputs(big).shape == (12 * len(item.data.test), MODELS[kind].width)
    metrics, details = backend.measure_artifact(artifact)
    assert metrics["param_count"] == sum(p.numel() for p in item.module.parameters())
    assert metrics["model_size_bytes"] == artifact.path.stat().st_size
    assert details["archive"]["weights_bytes"] > 0


@pytest.mark.parametrize("form", ["pt2", "torchscript"])
def test_user_files_are_served_as_given(
    backend: TorchBackend, saved: dict[str, Saved], form: str, tmp_path: Path
) -> None:
    item = saved["text"]
    base = load(backend, item, form)
    artifact = backend.copy_user_artifact(base, tmp_path)
    assert artifact.path.read_bytes() == base.path.read_bytes()  # type: ignore[union-attr]
    assert artifact.format == base.format
    outputs = TorchArtifactRunner(artifact).predict_outputs(item.data.test.inputs)
    np.testing.assert_allclose(outputs, item.reference(), rtol=1e-5, atol=1e-5)


def test_a_one_input_model_takes_data_named_otherwise(backend: TorchBackend, saved: dict[str, Saved]) -> None:
    item = saved["cnn"]
    renamed = Dataset(
        name="synthetic",
        inputs=(TensorSpec("x", (3, 16, 16), "float32"),),
        task="classification",
        test=Split({"x": item.data.test.inputs["image"]}, item.data.test.labels),
        num_classes=4,
    )
    base = backend.load_base(item.spec("pt2"), item.folder, renamed)
    assert base.signature.names == ("image",)  # the model's own name, recorded in the .pt2
    np.testing.assert_allclose(
        backend.in_memory_outputs(base.model, renamed.test.inputs, base.signature),
        item.reference(),
        atol=1e-5,
    )


def test_torchscript_is_served_as_given_and_recipes_refuse_it(
    backend: TorchBackend, saved: dict[str, Saved]
) -> None:
    base = load(backend, saved["cnn"], "torchscript")
    with pytest.raises(
        UserError, match=r"torch\.prune cannot compress a TorchScript module .*python: factory"
    ):
        TorchPruneRecipe({"amount": 0.5}).apply(backend.fresh(base))


# --- what does not fit ----------------------------------------------------------------------------


def test_declared_inputs_must_agree_with_what_the_pt2_records(
    backend: TorchBackend, saved: dict[str, Saved]
) -> None:
    item = saved["text"]
    wrong = [InputDecl(name="input_ids", shape=[12], dtype="int32"), InputDecl(name="features", shape=[4])]
    with pytest.raises(
        UserError,
        match=r"text\.pt2: the model expects inputs input_ids: int64\[12\], features: "
        r"float32\[4\]; model\.inputs declares input_ids: int32\[12\]",
    ):
        load(backend, item, "pt2", inputs=wrong)


def test_a_model_that_does_not_fit_the_data_says_what_it_expects(
    backend: TorchBackend, saved: dict[str, Saved]
) -> None:
    cnn, regression = saved["cnn"], saved["regression"]
    # the .pt2 records its input: settled against the data before it is called
    with pytest.raises(
        UserError,
        match=r"the model expects inputs image: float32\[3, 16, 16\]; the data has "
        r"features: float32\[8\]",
    ):
        backend.load_base(cnn.spec("pt2"), cnn.folder, regression.data)
    # a factory records nothing: it is called on the data, and the message lists what it was given
    with pytest.raises(
        UserError,
        match=r"^model\.source python:user_factories:make_cnn failed on a batch of 1 "
        r"\(features: float32\[8\]\): ",
    ):
        backend.load_base(cnn.spec("python+state_dict"), cnn.folder, regression.data)
    # a regression model for classification data: one value is not four class scores
    with pytest.raises(UserError, match=r"returns 1 scores per example; the data has 4 classes"):
        backend.load_base(
            regression.spec("pt2", task="classification"), regression.folder, _relabelled(regression)
        )


def _relabelled(item: Saved) -> Dataset:
    split = Split(item.data.test.inputs, np.zeros(len(item.data.test), dtype=np.int64))
    return Dataset(
        name="synthetic", inputs=item.data.inputs, task="classification", test=split, num_classes=4
    )


def test_pt2_with_a_fixed_batch_size_is_refused(
    backend: TorchBackend, saved: dict[str, Saved], tmp_path: Path
) -> None:
    item = saved["regression"]
    program = torch.export.export(item.module, (torch.zeros(1, 8),))  # no dynamic_shapes
    torch.export.save(program, str(tmp_path / "fixed.pt2"))
    with pytest.raises(
        UserError,
        match=r"input 'features' was exported with a fixed batch size of 1; export "
        r"with a dynamic batch dimension",
    ):
        backend.load_base(
            ModelSpec(framework="torch", source="fixed.pt2", task="regression"), tmp_path, item.data
        )


@pytest.mark.parametrize(
    ("module", "code", "message"),
    [
        (
            "returns_dict",
            "def make_cnn():\n    return {'not': 'a module'}\n",
            r"returns_dict:make_cnn returned a "
            r"dict, not a torch\.nn\.Module",
        ),
        (
            "needs_args",
            "def make_cnn(size):\n    return None\n",
            r"needs_args:make_cnn takes required arguments "
            r"\(size\)",
        ),
        ("not_callable", "make_cnn = 3\n", r"not_callable:make_cnn is a int, not a function to call"),
        (
            "no_attribute",
            "def other():\n    pass\n",
            r"module 'no_attribute' \(.*\) has no attribute 'make_cnn'",
        ),
        (
            "raises",
            "import torch\ndef make_cnn():\n    return torch.nn.Linre(2, 2)\n",
            r"raises:make_cnn raised "
            r"AttributeError: ",
        ),
    ],
)
def test_bad_factories_are_user_errors_naming_model_source(
    backend: TorchBackend, saved: dict[str, Saved], tmp_path: Path, module: str, code: str, message: str
) -> None:
    (tmp_path / f"{module}.py").write_text(code)
    spec = ModelSpec(framework="torch", source=f"python:{module}:make_cnn")
    with pytest.raises(UserError, match=r"^model\.source: " + message) as caught:
        backend.load_base(spec, tmp_path, saved["cnn"].data)
    assert "\n" not in str(caught.value)
    sys.modules.pop(module, None)


def test_a_missing_factory_module_is_a_user_error(
    backend: TorchBackend, saved: dict[str, Saved], tmp_path: Path
) -> None:
    spec = ModelSpec(framework="torch", source="python:no_such_module:make")
    with pytest.raises(UserError, match=r"model\.source: no module named 'no_such_module' in "):
        backend.load_base(spec, tmp_path, saved["cnn"].data)


def test_weights_that_are_missing_unreadable_or_do_not_match_are_user_errors(
    backend: TorchBackend, saved: dict[str, Saved]
) -> None:
    cnn = saved["cnn"]
    folder = cnn.folder
    (folder / "junk.pth").write_bytes(b"definitely not a checkpoint")
    torch.save(cnn.module, folder / "whole_module.pth")  # a pickled module, not a state_dict
    state = cnn.module.state_dict()
    torch.save({**state, "head.weight": torch.zeros(5, 64)}, folder / "wrong_shape.pth")
    cases = {
        "absent.pth": r"model\.weights: .*absent\.pth does not exist",
        "junk.pth": r"model\.weights: .*junk\.pth could not be read as a torch state_dict",
        "whole_module.pth": r"whole_module\.pth could not be read as a torch state_dict \(torch\.save of "
        r"model\.state_dict\(\)\)",
        "text.pth": r"text\.pth does not match the factory's model: missing keys conv1\.weight, conv1\.bias, "
        r"conv2\.weight, conv2\.bias, head\.weight \(\+1 more\); unexpected keys bag\.weight, hidden\.weight",
        "wrong_shape.pth": r"wrong_shape\.pth does not fit the factory.s model: size mismatch for "
        r"head\.weight",
    }
    for weights, message in cases.items():
        with pytest.raises(UserError, match=message) as caught:
            load(backend, cnn, "python+state_dict", weights=weights)
        assert "\n" not in str(caught.value), weights


def test_a_checkpoint_wrapping_the_state_dict_is_accepted(
    backend: TorchBackend, saved: dict[str, Saved]
) -> None:
    cnn = saved["cnn"]
    torch.save({"state_dict": cnn.module.state_dict(), "epoch": 3}, cnn.folder / "checkpoint.pth")
    base = load(backend, cnn, "python+state_dict", weights="checkpoint.pth")
    np.testing.assert_allclose(
        backend.in_memory_outputs(base.model, cnn.data.test.inputs, base.signature),
        cnn.reference(),
        atol=1e-6,
    )


def test_factory_modules_are_imported_from_the_scenario_folder_which_leaves_sys_path(
    backend: TorchBackend, saved: dict[str, Saved]
) -> None:
    load(backend, saved["cnn"], "python+state_dict")
    assert str(saved["cnn"].folder) not in sys.path
    assert Path(sys.modules[FACTORY_MODULE].__file__ or "").parent == saved["cnn"].folder
