"""Build the native load engine (harness/load/native/harness_load.c) once, and find it again.

The engine ships as C source, not as a binary: a wheel stays platform-independent and the
machine's own compiler targets its own CPU. The binary is cached under $HARNESS_CACHE_DIR keyed
by the source's sha256 and checked against its sidecar on every use (harness.models.cache), so a
changed source builds a new engine and a damaged binary is rebuilt instead of run.
`make setup` builds it ahead of time (`python -m harness.load.native_build`).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from importlib.resources import files
from pathlib import Path

from harness.errors import RunError, UserError
from harness.models.cache import CacheIntegrityError, cache_dir, read_verified, seal

SOURCE_PACKAGE = "harness.load.native"
SOURCE_NAME = "harness_load.c"
CFLAGS = ("-O2", "-std=gnu11", "-Wall", "-Wextra")
COMPILE_TIMEOUT_S = 120.0


def source_bytes() -> bytes:
    return files(SOURCE_PACKAGE).joinpath(SOURCE_NAME).read_bytes()


def compiler() -> str | None:
    """$CC, else cc, else gcc, else clang: the first one found on PATH."""
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and (found := shutil.which(shlex.split(name)[0])):
            return found
    return None


def binary_path() -> Path:
    """Where the engine for the installed source is cached (named by the source's hash)."""
    digest = hashlib.sha256(source_bytes()).hexdigest()[:16]
    return cache_dir() / "native" / f"harness-load-{digest}"


def native_built() -> bool:
    """Whether the engine for the installed source is in the cache (unchecked: a quick look)."""
    return binary_path().is_file()


def native_binary() -> Path:
    """The engine's executable for the installed source, built on first use.

    UserError when no C compiler exists (the user chose the engine); RunError when the build fails.
    """
    source = source_bytes()
    binary = binary_path()
    try:
        if read_verified(binary) is not None:
            return binary
    except CacheIntegrityError:
        pass  # built over below
    cc = compiler()
    if cc is None:
        raise UserError(
            "load.generator: native builds its engine from C source once and found no C compiler "
            "(cc, gcc or clang; or set CC): install one, e.g. 'apt-get install gcc', or use "
            "generator: locust"
        )
    binary.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=binary.parent) as tmp:
        src = Path(tmp) / SOURCE_NAME
        src.write_bytes(source)
        out = Path(tmp) / binary.name
        argv = [cc, *CFLAGS, "-o", str(out), str(src), "-lm"]
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired:
            raise RunError(
                f"building the native load engine took over {COMPILE_TIMEOUT_S:g}s: {shlex.join(argv)}"
            ) from None
        if done.returncode != 0 or not out.exists():
            tail = (done.stderr or done.stdout).strip().splitlines()[-12:]
            raise RunError(
                f"building the native load engine failed (exit {done.returncode}): {shlex.join(argv)}",
                log_tail="\n".join(tail),
            )
        data = out.read_bytes()
        os.replace(out, binary)  # same folder: atomic; a concurrent build writes the same bytes
    seal(binary, data)
    return binary


def main() -> int:
    try:
        print(native_binary())
    except (UserError, RunError) as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
