"""Small torch models the harness never built, for the tests of user sources and their compression.

Each class is a plain nn.Module with the input contract a real user model might have: a float
image CNN, the same CNN taking uint8 NHWC pixels, a text classifier with int64 token ids (fixed
length, 0 = padding) plus float features that returns a dict, and a regression MLP returning (n,).
`save_sources` writes each in every source form a scenario can name: a python: factory module
with state_dict and safetensors weights, a torch.export .pt2 and a TorchScript file. `make_data`
gives a Dataset whose labels are the model's own top-1 (classification) or outputs
(regression), so a compressed variant's accuracy is its agreement with the float model.
`MaskedMeanText`, outside MODELS, is the two-input int64 model the serving targets' tests serve.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from harness.data.dataset import Dataset, Split
from harness.data.tensors import Task, TensorSpec
from harness.scenario.schema import ModelSpec

VOCAB = 50
TOKENS = 12


class ImageCNN(nn.Module):
    """image: float32 (3, 16, 16) -> 4 class logits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.head = nn.Linear(64, 4)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(image))
        x = torch.relu(self.conv2(x))
        return self.head(torch.flatten(self.pool(x), 1))


class PixelCNN(ImageCNN):
    """pixels: uint8 (16, 16, 3), channels last, 0..255 -> 4 class logits."""

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(pixels.permute(0, 3, 1, 2).float() / 255.0)


class TextClassifier(nn.Module):
    """input_ids: int64 (12,) padded with 0, features: float32 (4,) -> {'logits': 3 classes, ...}."""

    def __init__(self) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(VOCAB, 16, mode="mean", padding_idx=0)
        self.hidden = nn.Linear(20, 32)
        self.out = nn.Linear(32, 3)

    def forward(self, input_ids: torch.Tensor, features: torch.Tensor) -> dict[str, torch.Tensor]:
        embedded = self.bag(input_ids)
        hidden = torch.relu(self.hidden(torch.cat([embedded, features], dim=1)))
        return {"logits": self.out(hidden), "embedding": embedded}


class Regressor(nn.Module):
    """features: float32 (8,) -> one value per example, shape (n,)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).squeeze(-1)


class MaskedMeanText(nn.Module):
    """input_ids and attention_mask, int64 (tokens,), called positionally -> `outputs` values.

    The mean word embedding over the tokens the mask keeps, then a linear head: a two-input int64
    model for the serving targets' tests (not one of MODELS, which are saved in every source form).
    """

    def __init__(self, vocab: int, outputs: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 8)
        self.head = nn.Linear(8, outputs)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).float()
        return self.head((self.embed(input_ids) * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1))


FACTORY_MODULE = "user_factories"


@dataclass(frozen=True)
class UserModel:
    """A model class with the inputs it takes and its task."""

    cls: type[nn.Module]
    inputs: tuple[TensorSpec, ...]
    task: Task
    width: int


MODELS = {
    "cnn": UserModel(ImageCNN, (TensorSpec("image", (3, 16, 16), "float32"),), "classification", 4),
    "pixels": UserModel(PixelCNN, (TensorSpec("pixels", (16, 16, 3), "uint8"),), "classification", 4),
    "text": UserModel(
        TextClassifier,
        (TensorSpec("input_ids", (TOKENS,), "int64"), TensorSpec("features", (4,), "float32")),
        "classification",
        3,
    ),
    "regression": UserModel(Regressor, (TensorSpec("features", (8,), "float32"),), "regression", 1),
}


KINDS = tuple(MODELS)


def build(kind: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return MODELS[kind].cls().eval()


def random_inputs(kind: str, rows: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for spec in MODELS[kind].inputs:
        if spec.dtype == "uint8":
            out[spec.name] = rng.integers(0, 256, size=(rows, *spec.shape), dtype=np.uint8)
        elif spec.name == "input_ids":
            ids = rng.integers(1, VOCAB, size=(rows, *spec.shape), dtype=np.int64)
            lengths = rng.integers(3, TOKENS + 1, size=rows)
            ids[np.arange(TOKENS)[None, :] >= lengths[:, None]] = 0  # padding after each text
            out[spec.name] = ids
        else:
            out[spec.name] = rng.standard_normal((rows, *spec.shape)).astype(np.float32)
    return out


def outputs_of(module: Any, kind: str, batch: dict[str, np.ndarray]) -> np.ndarray:
    """The module's prediction as float32 (n, width), called positionally in input order."""
    tensors = [torch.tensor(batch[spec.name]) for spec in MODELS[kind].inputs]
    with torch.inference_mode():
        out = module(*tensors)
    if isinstance(out, dict):
        out = out["logits"]
    return out.float().numpy().reshape(len(tensors[0]), -1)


def make_data(kind: str, module: nn.Module, test: int = 96, train: int = 160, seed: int = 0) -> Dataset:
    """Random inputs labelled by `module` itself: its top-1 class, or its value for regression."""
    rng = np.random.default_rng(seed)
    spec = MODELS[kind]
    splits = []
    for rows in (test, train):
        inputs = random_inputs(kind, rows, rng)
        outputs = outputs_of(module, kind, inputs)
        labels = outputs.argmax(axis=1).astype(np.int64) if spec.task == "classification" else outputs[:, 0]
        splits.append(Split(inputs, labels))
    return Dataset(
        name="synthetic",
        inputs=spec.inputs,
        task=spec.task,
        test=splits[0],
        train=splits[1],
        num_classes=spec.width if spec.task == "classification" else None,
        seed=seed,
    )


@dataclass
class Saved:
    """One model kind saved in every form under `folder`, with its data and reference module."""

    kind: str
    module: torch.nn.Module
    data: Dataset
    folder: Path

    def spec(self, form: str, **overrides: Any) -> ModelSpec:
        task = MODELS[self.kind].task
        sources = {
            "python+state_dict": {
                "source": f"python:{FACTORY_MODULE}:make_{self.kind}",
                "weights": f"{self.kind}.pth",
            },
            "python+safetensors": {
                "source": f"python:{FACTORY_MODULE}:make_{self.kind}",
                "weights": f"weights/{self.kind}.safetensors",
            },
            "pt2": {"source": f"{self.kind}.pt2"},
            "torchscript": {"source": f"{self.kind}.ts"},
        }
        return ModelSpec(framework="torch", **{"task": task, **sources[form], **overrides})

    def reference(self, batch: Any = None) -> np.ndarray:
        return outputs_of(self.module, self.kind, dict(batch if batch is not None else self.data.test.inputs))


def save_sources(folder: Path, kinds: tuple[str, ...] = KINDS) -> dict[str, Saved]:
    """Every kind saved in every form in `folder`, with `user_factories.py` next to the files."""
    write_factories(folder)
    return {kind: save_all(kind, folder) for kind in kinds}


def write_factories(folder: Path) -> None:
    # fresh, differently seeded modules: the outputs only match once model.weights is loaded
    functions = "\n".join(
        f"def make_{kind}():\n    torch.manual_seed(1234)\n    return models.{MODELS[kind].cls.__name__}()\n"
        for kind in KINDS
    )
    (folder / f"{FACTORY_MODULE}.py").write_text(
        "import torch\n\nfrom tests.integration import torch_user_models as models\n\n\n" + functions
    )


def save_all(kind: str, folder: Path) -> Saved:
    module = build(kind, seed=0)
    data = make_data(kind, module)
    torch.save(module.state_dict(), folder / f"{kind}.pth")
    (folder / "weights").mkdir(exist_ok=True)
    save_file(module.state_dict(), str(folder / "weights" / f"{kind}.safetensors"))
    examples = tuple(torch.tensor(array[:2]) for array in data.test.inputs.values())
    batch = torch.export.Dim("batch")
    program = torch.export.export(module, examples, dynamic_shapes=tuple({0: batch} for _ in examples))
    torch.export.save(program, str(folder / f"{kind}.pt2"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch 2.13 deprecates TorchScript; users still have such files
        traced = torch.jit.trace(module, examples, strict=False)
        torch.jit.save(traced, str(folder / f"{kind}.ts"))
    return Saved(kind, module, data, folder)
