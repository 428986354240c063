"""Atomic file writes: a crash or error mid-write never leaves a half-written file in place.

The data goes to a temporary file in the same directory (so the rename stays on one filesystem),
is flushed and fsynced, then renamed over the target with `os.replace`, which is atomic on POSIX
and Windows. Readers see either the old file or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` atomically and return the path; the parent folder must exist."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    # os.open with 0o666 lets the umask decide the mode, as a plain open() would; tempfile.mkstemp
    # would create 0600 files, which breaks baselines committed to git or reports served over HTTP.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileNotFoundError):
            # keep the mode of the file being replaced (e.g. someone made it read-only for others)
            os.chmod(tmp, stat.S_IMODE(target.stat().st_mode))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(target.parent)
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write `text` to `path` atomically."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | os.PathLike[str], data: Any, *, indent: int | None = 2) -> Path:
    """Serialise `data` first (so a serialisation error touches nothing on disk), then write atomically.

    NaN and infinity are refused: they are not JSON and other tools would fail to read the file.
    """
    text = json.dumps(data, indent=indent, sort_keys=False, allow_nan=False, ensure_ascii=False)
    return atomic_write_text(path, text + "\n")


def _fsync_dir(directory: Path) -> None:
    """Persist the rename itself; not possible on every platform, so best effort."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
