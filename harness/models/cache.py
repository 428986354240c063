"""The model cache under $HARNESS_CACHE_DIR: every file carries a sha256 sidecar, checked on load.

A cached model that loads without error is not necessarily the model that was saved: a flipped
byte inside a weights tensor passes torch's and Keras' loaders and gives a classifier at chance
level, which a first run would then record as its baseline. So each cached file `<name>` gets a
sidecar `<name>.sha256` ("<hex digest>  <name>", the sha256sum format), written atomically AFTER
the file itself, and a load reads the file's bytes once and checks them against it first.
A missing, unreadable or mismatching sidecar is a CacheIntegrityError: the caller retrains and
rewrites both files, and says so in a warning. A crash between the two writes leaves a file
without a matching sidecar, which is then retrained over, never trusted.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from harness.atomic import atomic_write_bytes, atomic_write_text


class CacheIntegrityError(Exception):
    """A cached file is missing its checksum or does not match it; the caller retrains."""


def cache_dir() -> Path:
    """$HARNESS_CACHE_DIR, else ~/.cache/harness."""
    env = os.environ.get("HARNESS_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "harness"


def checksum_path(path: Path) -> Path:
    """The sidecar holding the sha256 of `path`: `<path>.sha256`."""
    return path.with_name(f"{path.name}.sha256")


def read_verified(path: Path) -> bytes | None:
    """The bytes of cached `path` if they match its sidecar; None if `path` does not exist.

    Raises CacheIntegrityError (message: which file, what is wrong) if the sidecar is missing,
    unreadable or names another digest.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CacheIntegrityError(f"model cache {path} cannot be read ({exc.strerror or exc})") from None
    sidecar = checksum_path(path)
    try:
        expected = sidecar.read_text(encoding="ascii").split()[0].lower()
    except FileNotFoundError:
        raise CacheIntegrityError(f"model cache {path} has no checksum file {sidecar.name}") from None
    except (OSError, UnicodeDecodeError, IndexError):
        raise CacheIntegrityError(f"model cache {path}: checksum file {sidecar.name} is unreadable") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise CacheIntegrityError(
            f"model cache {path} does not match its checksum (sha256 {actual[:12]}..., "
            f"expected {expected[:12]}...): the file was changed or damaged"
        )
    return data


def write_verified(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically, then its sidecar; OSError if the cache is not writable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)
    seal(path, data)


def seal(path: Path, data: bytes) -> None:
    """Write the sidecar of `path` for its content `data` (the bytes just written)."""
    atomic_write_text(checksum_path(path), f"{hashlib.sha256(data).hexdigest()}  {path.name}\n")
