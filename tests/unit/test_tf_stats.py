"""Pure-numpy parts of the TensorFlow stats and user-file checks (no TensorFlow imported)."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from harness.compression.tensorflow.backend import saved_keras_version
from harness.compression.tensorflow.stats import NamedTensor, path_sizes, tensor_stats


def test_tensor_stats_count_kernel_zeros_and_unique_values_per_kernel() -> None:
    kernel = np.array([[0.0, 0.5], [0.5, -1.0]], dtype=np.float32)  # 1 zero of 4, 3 distinct values
    conv = np.zeros((3, 3, 1, 2), dtype=np.float32)  # a rank-4 kernel, all zero
    bias = np.array([0.0, 0.0], dtype=np.float32)
    stats = tensor_stats(
        [
            NamedTensor("dense/kernel", kernel),
            NamedTensor("conv/kernel", conv),
            NamedTensor("dense/bias", bias),
        ]
    )
    assert stats["param_count"] == 4 + 18 + 2
    assert stats["sparsity"] == pytest.approx((1 + 18) / (4 + 18))
    assert stats["sparsity_all_params"] == pytest.approx((1 + 18 + 2) / 24)
    assert stats["unique_weights_per_kernel"] == {"dense/kernel": 3, "conv/kernel": 1}
    assert stats["per_kernel_sparsity"] == {"dense/kernel": 0.25, "conv/kernel": 1.0}


def test_tensor_stats_of_no_tensors_are_zero() -> None:
    stats = tensor_stats([])
    assert (stats["param_count"], stats["sparsity"], stats["unique_weights_per_kernel"]) == (0, 0.0, {})


def test_folder_sizes_sum_the_files_and_ignore_timestamps(tmp_path: Path) -> None:
    folders = []
    for i, stamp in enumerate((1_000_000, 2_000_000)):
        folder = tmp_path / f"m{i}"
        (folder / "variables").mkdir(parents=True)
        (folder / "saved_model.pb").write_bytes(b"graph" * 100)
        (folder / "variables" / "data").write_bytes(bytes(1000))
        for path in folder.rglob("*"):
            os.utime(path, (stamp, stamp))
        folders.append(folder)
    raw, gz = path_sizes(folders[0])
    assert raw == 500 + 1000
    assert 0 < gz < raw
    assert path_sizes(folders[1]) == (raw, gz)  # same contents, other mtimes: same gzip size


def test_file_sizes_are_raw_and_gzip(tmp_path: Path) -> None:
    path = tmp_path / "model.tflite"
    path.write_bytes(bytes(4096))
    raw, gz = path_sizes(path)
    assert raw == 4096
    assert gz < 100


@pytest.mark.parametrize(("version", "expected"), [("3.15.1", "3.15.1"), ("2.21.0", "2.21.0")])
def test_keras_version_is_read_from_a_keras_zip(tmp_path: Path, version: str, expected: str) -> None:
    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": version}))
    assert saved_keras_version(path) == expected


def test_keras_version_of_an_unreadable_file_is_unknown(tmp_path: Path) -> None:
    path = tmp_path / "model.h5"
    path.write_bytes(b"not hdf5")
    assert saved_keras_version(path) is None
