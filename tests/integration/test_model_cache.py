"""The model cache checks each file against its sha256 sidecar: a damaged cached model is retrained.

Real built-in models (torch MLP, TF MLP), trained into an empty $HARNESS_CACHE_DIR (1-3 s each).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.models.cache import CacheIntegrityError, checksum_path, read_verified, write_verified
from harness.models.digits import load_digits_split

MIN_ACCURACY = 0.9  # the built-ins reach 0.96-0.98; a garbled one lands near chance (0.1)


@pytest.fixture(scope="module")
def data():
    return load_digits_split(seed=0)


@pytest.fixture
def cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _torch(data: Any) -> Any:
    from harness.models.torch_mlp import get_reference_mlp

    return get_reference_mlp(data, seed=0)


def _tf(data: Any) -> Any:
    from harness.models.tf_models import get_reference_tf_model

    return get_reference_tf_model("mlp", data, seed=0)


BUILTINS = [pytest.param(_torch, id="torch-mlp"), pytest.param(_tf, id="tf-mlp")]


def _flip_middle(path: Path, count: int = 64) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + count] = bytes(b ^ 0xFF for b in data[middle : middle + count])
    path.write_bytes(bytes(data))


def _sidecar_matches(path: Path) -> bool:
    digest = checksum_path(path).read_text().split()[0]
    return digest == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("build", BUILTINS)
def test_garbled_weights_in_the_cache_are_retrained_not_loaded(
    build: Callable[[Any], Any], data, cache_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = build(data)
    assert not first.cache_hit
    assert _sidecar_matches(first.cache_path)
    assert build(data).cache_hit, "an intact cache is loaded"

    _flip_middle(first.cache_path)
    with caplog.at_level(logging.WARNING, logger="harness.models"):
        again = build(data)
    assert not again.cache_hit, "a cached file that fails its checksum must not load"
    assert again.test_accuracy >= MIN_ACCURACY
    assert again.cache_warning.startswith(f"model cache {first.cache_path} does not match its checksum")
    assert again.cache_warning.endswith("retrained")
    assert again.info()["cache_warning"] == again.cache_warning
    assert any("does not match its checksum" in r.getMessage() for r in caplog.records)
    assert _sidecar_matches(first.cache_path), "the retrained model is cached and sealed again"
    assert build(data).cache_hit


@pytest.mark.parametrize("build", BUILTINS)
def test_a_cached_model_without_its_checksum_is_retrained(build, data, cache_root: Path) -> None:
    first = build(data)
    checksum_path(first.cache_path).unlink()
    again = build(data)
    assert not again.cache_hit
    assert f"has no checksum file {first.cache_path.name}.sha256" in again.cache_warning
    assert again.test_accuracy >= MIN_ACCURACY
    assert "cache_warning" not in build(data).info()


def test_read_verified_refuses_a_changed_file_and_accepts_an_intact_one(tmp_path: Path) -> None:
    path = tmp_path / "models" / "m.bin"
    assert read_verified(path) is None
    write_verified(path, b"weights" * 100)
    assert read_verified(path) == b"weights" * 100
    assert checksum_path(path).read_text() == f"{hashlib.sha256(b'weights' * 100).hexdigest()}  m.bin\n"
    _flip_middle(path, 1)
    with pytest.raises(CacheIntegrityError, match=r"m\.bin does not match its checksum"):
        read_verified(path)
    checksum_path(path).write_bytes(b"\xff")
    with pytest.raises(CacheIntegrityError, match=r"checksum file m\.bin\.sha256 is unreadable"):
        read_verified(path)
