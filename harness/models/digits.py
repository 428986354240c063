"""scikit-learn's bundled digits (8x8 images, 10 classes) as a fixed, seeded train/test split.

The data ships inside scikit-learn, so nothing is downloaded. The CSV is read straight from the
installed package because `import sklearn` pulls in scipy.stats and costs 2-4 s on this machine,
more than everything else in a run's setup; `sklearn.datasets.load_digits` is the fallback should
the file move. No torch here: plain numpy, so the TensorFlow path and the load driver can use it.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

INPUT_SHAPE: tuple[int, ...] = (64,)
NUM_CLASSES = 10
TEST_FRACTION = 0.25


@dataclass(frozen=True)
class DigitsSplit:
    """Stratified train/test split: float32 features in [0, 1] of shape (n, 64), int64 labels.

    The arrays are read-only because one split is shared (cached) by every caller in the process.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    seed: int

    input_shape: tuple[int, ...] = INPUT_SHAPE
    num_classes: int = NUM_CLASSES

    def fingerprint(self) -> str:
        """sha256 over the exact bytes of the four arrays: part of the built-in model's cache key."""
        digest = hashlib.sha256()
        for array in (self.x_train, self.y_train, self.x_test, self.y_test):
            digest.update(f"{array.dtype}{array.shape}".encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()


@functools.lru_cache(maxsize=8)
def load_digits_split(seed: int = 0) -> DigitsSplit:
    """The digits split for `seed`: 1347 train / 450 test examples, each class split 75/25."""
    pixels, labels = load_digits_arrays()
    # pixel values are integers 0..16; scaling to [0, 1] keeps the MLP's inputs well conditioned
    features = (pixels / np.float32(16.0)).astype(np.float32)
    train_idx, test_idx = stratified_split(labels, TEST_FRACTION, seed)
    x_train, y_train, x_test, y_test = (
        _frozen(a) for a in (features[train_idx], labels[train_idx], features[test_idx], labels[test_idx])
    )
    return DigitsSplit(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, seed=seed)


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits: float32 pixels 0..16 of shape (1797, 64) and int64 labels, in file order."""
    csv = _bundled_csv()
    if csv is not None:
        with gzip.open(csv, "rt") as fh:
            table = np.loadtxt(fh, delimiter=",", dtype=np.float32)
        return np.ascontiguousarray(table[:, :-1]), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return np.asarray(bunch.data, dtype=np.float32), np.asarray(bunch.target, dtype=np.int64)


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and test indices; each class contributes round(n_class * test_fraction) to test."""
    rng = np.random.default_rng(seed)
    test_parts = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        rng.shuffle(members)
        test_parts.append(members[: round(len(members) * test_fraction)])
    test = np.sort(np.concatenate(test_parts))
    train = np.setdiff1d(np.arange(len(labels)), test)
    return train, test


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.setflags(write=False)
    return array


def _bundled_csv() -> Path | None:
    # find_spec locates the package without executing sklearn/__init__.py (the slow part)
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "datasets" / "data" / "digits.csv.gz"
        if candidate.is_file():
            return candidate
    return None
