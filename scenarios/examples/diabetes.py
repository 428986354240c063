"""Example user code: a regression model on scikit-learn's bundled diabetes data.

Not part of the harness: this is what a user writes for `scenarios/diabetes_regression.yaml`
(`python:examples.diabetes:load` for the data, `python:examples.diabetes:make_model` for the model).

The data ships with scikit-learn (`sklearn.datasets.load_diabetes`, nothing downloaded): 442
patients, ten float32 features (age, sex, BMI, blood pressure, six blood serum measurements), and
a float32 target, a measure of disease progression one year later (25 to 346). A seeded 75/25
split. The model is a small MLP that standardises its input and de-standardises its output with
statistics of the training split kept as buffers, so it takes the features as they come and
predicts the target in its own units: one value per example, shape [n, 1].
"""

# user code that defines nn.Module subclasses: torch is imported at module level on purpose
# ruff: noqa: TID253

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split
from torch import nn

from examples.training import fit_minibatches, save_trained
from examples.weights_cache import CachedWeights, cached_model

FEATURES = 10
SEED = 0
TEST_FRACTION = 0.25


@dataclass(frozen=True)
class TrainConfig:
    """Architecture and training settings; all of it goes into the weights' cache key."""

    hidden: tuple[int, ...] = (32, 32)
    epochs: int = 80
    batch_size: int = 32
    learning_rate: float = 3e-3
    # 442 examples: without a strong L2 penalty the MLP overfits within 40 epochs (test MAE 47-52)
    weight_decay: float = 0.1
    seed: int = SEED


# ---- data -------------------------------------------------------------------------------------


@functools.cache
def _splits() -> dict[str, dict[str, Any]]:
    features, target = load_diabetes(return_X_y=True)
    train_x, test_x, train_y, test_y = train_test_split(
        features.astype(np.float32), target.astype(np.float32), test_size=TEST_FRACTION, random_state=SEED
    )
    return {
        "train": {"inputs": {"features": train_x}, "labels": train_y},
        "test": {"inputs": {"features": test_x}, "labels": test_y},
    }


def load() -> dict[str, tuple[dict[str, np.ndarray], np.ndarray]]:
    """The data for the harness (data kind python): {"train": (inputs, labels), "test": (inputs, labels)}.

    inputs maps `features` to float32 [n, 10]; labels are float32 [n], the target in its own units.
    """
    return {
        name: ({k: v.copy() for k, v in split["inputs"].items()}, split["labels"].copy())
        for name, split in _splits().items()
    }


# ---- model ------------------------------------------------------------------------------------


class DiabetesRegressor(nn.Module):
    """(x - mean) / std -> MLP -> y * std + mean, with the training split's statistics as buffers."""

    def __init__(self, config: TrainConfig = TrainConfig()) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        sizes = (FEATURES, *config.hidden)
        for n_in, n_out in itertools.pairwise(sizes):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], 1))
        self.mlp = nn.Sequential(*layers)
        self.register_buffer("x_mean", torch.zeros(FEATURES))
        self.register_buffer("x_std", torch.ones(FEATURES))
        self.register_buffer("y_mean", torch.zeros(1))
        self.register_buffer("y_std", torch.ones(1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp((features - self.x_mean) / self.x_std) * self.y_std + self.y_mean


def train(model: DiabetesRegressor, config: TrainConfig = TrainConfig()) -> None:
    """Set the buffers from the training split, then fit the MLP on the standardised target (MSE)."""
    split = _splits()["train"]
    x = torch.from_numpy(split["inputs"]["features"])
    y = torch.from_numpy(split["labels"])
    model.x_mean.copy_(x.mean(dim=0))
    model.x_std.copy_(x.std(dim=0))
    model.y_mean.copy_(y.mean().reshape(1))
    model.y_std.copy_(y.std().reshape(1))
    y_standard = ((y - model.y_mean) / model.y_std).unsqueeze(1)
    x_standard = (x - model.x_mean) / model.x_std

    def batch_loss(rows: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(model.mlp(x_standard[rows]), y_standard[rows])

    fit_minibatches(model, batch_loss, len(y), config, weight_decay=config.weight_decay)


def trained_model(config: TrainConfig = TrainConfig()) -> tuple[DiabetesRegressor, CachedWeights]:
    """The trained regressor (eval mode) and where its weights came from (cache or training)."""
    split = _splits()["train"]
    arrays = {**split["inputs"], "labels": split["labels"]}
    return cached_model("diabetes", DiabetesRegressor, train, config, arrays)


def make_model() -> nn.Module:
    """The factory the scenario names: the trained regressor, from the cache after the first call."""
    model, _ = trained_model()
    return model


def train_weights(path: str | Path) -> Path:
    """Train from scratch and torch.save the state_dict to `path`, for a scenario that prefers a
    `weights:` file with `python:examples.diabetes:untrained_model` as its source."""
    return save_trained(path, DiabetesRegressor, train, TrainConfig())


def untrained_model() -> nn.Module:
    """The architecture alone, for a scenario that loads `weights:` (see `train_weights`)."""
    return DiabetesRegressor()


def linear_reference() -> dict[str, float]:
    """Test MAE and RMSE of scikit-learn's LinearRegression on the same split: a sanity reference."""
    from sklearn.linear_model import LinearRegression

    split = _splits()
    fitted = LinearRegression().fit(split["train"]["inputs"]["features"], split["train"]["labels"])
    error = fitted.predict(split["test"]["inputs"]["features"]) - split["test"]["labels"]
    return {"mae": float(np.mean(np.abs(error))), "rmse": float(np.sqrt(np.mean(error**2)))}
