"""Seeded row selection: splitting one source into test and train, and drawing subsets
(`max_examples` of test, a calibration count from train).

Every draw is stratified when class labels are given: each class gets its share by the largest
remainder method, so a subset of a class-sorted file (an image folder read class by class) keeps
the class mix, and a count is met exactly. Rows come back sorted, in the file's order.
"""

from __future__ import annotations

import numpy as np


def sample_rows(n: int, k: int, classes: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """`k` of the rows 0..n-1 (all of them when k >= n), sorted; stratified when `classes` is given."""
    if k >= n:
        return np.arange(n)
    if classes is None:
        return np.sort(rng.choice(n, size=k, replace=False))
    values, counts = np.unique(classes, return_counts=True)
    quotas = _largest_remainder(counts, k)
    picked = []
    for value, quota in zip(values, quotas, strict=True):
        if quota:
            members = np.flatnonzero(classes == value)
            picked.append(rng.choice(members, size=quota, replace=False))
    return np.sort(np.concatenate(picked)) if picked else np.arange(0)


def split_rows(
    n: int, test_size: int | float, classes: np.ndarray | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, test) rows: `test_size` is a count or a fraction of n. ValueError when either
    side would be empty."""
    n_test = test_size if isinstance(test_size, int) else round(n * test_size)
    if not 1 <= n_test < n:
        raise ValueError(
            f"a test part of 1 to {n - 1} of the {n} examples; test_size {test_size} gives {n_test}"
        )
    test = sample_rows(n, n_test, classes, np.random.default_rng(seed))
    return np.setdiff1d(np.arange(n), test), test


def _largest_remainder(counts: np.ndarray, k: int) -> np.ndarray:
    """Integer shares of `k` proportional to `counts`, summing to k (ties to the earlier class)."""
    exact = counts * (k / counts.sum())
    shares = np.floor(exact).astype(np.int64)
    left = k - int(shares.sum())
    order = np.argsort(-(exact - shares), kind="stable")
    # exact < count for every class (k < n), so a class never gets more rows than it has
    shares[order[:left]] += 1
    return shares
