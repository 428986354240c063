"""Models and data the harness's own code never built, written the way a user would.

The end-to-end tests copy this file next to their scenario as `user_models.py`, so `python:`
sources and data functions import it from the scenario's folder, and also import it here to train
the models they save as .pt2 / TorchScript / state_dict. Digits with the user's own split (the
first 1,200 rows train, the rest test), not the harness's: a model trained on its own split must
be scored on its own test set.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

TRAIN_ROWS = 1200


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return (bunch.data / 16.0).astype(np.float32), bunch.target.astype(np.int64)


def split() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    x, y = digits_arrays()
    return {"train": (x[:TRAIN_ROWS], y[:TRAIN_ROWS]), "test": (x[TRAIN_ROWS:], y[TRAIN_ROWS:])}


def as_uint8(x: np.ndarray) -> np.ndarray:
    """Pixels in [0, 1] as the 0..255 bytes an image file holds."""
    return np.round(x * 255).astype(np.uint8)


class SmallCnn(nn.Module):
    """A CNN on 1x8x8 images (NCHW float32) -> 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU()
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(16 * 8 * 8, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(pixels))


class SmallMlp(nn.Module):
    """64 float features -> 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


def make_cnn() -> nn.Module:
    return SmallCnn()


def make_mlp() -> nn.Module:
    return SmallMlp()


def load_data() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A python: data function: the CNN's splits as images."""
    return {name: (x.reshape(-1, 1, 8, 8), y) for name, (x, y) in split().items()}


def train(module: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int = 25) -> nn.Module:
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(module.parameters(), lr=3e-3)
    inputs, labels = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        for start in range(0, len(inputs), 64):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(module(inputs[start : start + 64]), labels[start : start + 64])
            loss.backward()
            optimizer.step()
    return module.eval()
