"""scikit-learn's bundled digits (8x8 images, 10 classes) as a fixed, seeded train/test split.

The data ships inside scikit-learn, so nothing is downloaded. The CSV is read straight from the
installed package because `import sklearn` pulls in scipy.stats and costs 2-4 s on this machine,
more than everything else in a run's setup; `sklearn.datasets.load_digits` is the fallback should
the file move. No torch here: plain numpy, so the TensorFlow path and the load driver can use it.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path

import numpy as np

from harness.data.dataset import Dataset, Split
from harness.data.tensors import TensorSpec

INPUT_NAME = "inputs"  # the name the built-in models' SavedModel signature gives it
INPUT_SHAPE: tuple[int, ...] = (64,)
NUM_CLASSES = 10
TEST_FRACTION = 0.25


@functools.lru_cache(maxsize=8)
def load_digits_split(seed: int = 0) -> Dataset:
    """The digits split for `seed`: 1347 train / 450 test examples, each class split 75/25."""
    pixels, labels = load_digits_arrays()
    # pixel values are integers 0..16; scaling to [0, 1] keeps the MLP's inputs well conditioned
    features = (pixels / np.float32(16.0)).astype(np.float32)
    train_idx, test_idx = stratified_split(labels, TEST_FRACTION, seed)
    x_train, y_train, x_test, y_test = (
        _frozen(a) for a in (features[train_idx], labels[train_idx], features[test_idx], labels[test_idx])
    )
    return Dataset(
        name="digits",
        inputs=(TensorSpec(INPUT_NAME, INPUT_SHAPE, "float32"),),
        task="classification",
        test=Split({INPUT_NAME: x_test}, y_test),
        train=Split({INPUT_NAME: x_train}, y_train),
        num_classes=NUM_CLASSES,
        seed=seed,
        source={"description": "scikit-learn's bundled digits, stratified 75/25 split", "split_seed": seed},
    )


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
