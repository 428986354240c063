"""What TorchServe needs before it starts: Java 17+, PyYAML in the venv, and the model archive.

Split from the target (which runs and talks to the server) to keep each readable.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from harness.artifacts import ServedArtifact
from harness.errors import RunError
from harness.serving.torchserve_config import (
    HANDLER_METADATA_FILE,
    JAVA_HINT,
    MIN_JAVA_MAJOR,
    archiver_argv,
    parse_java_major,
)

HANDLER_SOURCE = Path(__file__).with_name("torchserve_handler.py")


def find_java(env: dict[str, str] | None = None) -> tuple[str, str]:
    """(path, version string) of the java TorchServe will run; RunError if missing or older than 17.

    TorchServe's launcher uses $JAVA_HOME/bin/java when JAVA_HOME is set, else `java` on PATH.
    """
    env = dict(os.environ if env is None else env)
    java_home = env.get("JAVA_HOME")
    java = os.path.join(java_home, "bin", "java") if java_home else shutil.which("java", path=env.get("PATH"))
    if not java or not os.access(java, os.X_OK):
        raise RunError(f"{JAVA_HINT} (no java found{' in JAVA_HOME' if java_home else ' on PATH'})")
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RunError(f"{JAVA_HINT} ({java} -version failed: {exc})") from exc
    text = out.stderr + out.stdout
    major = parse_java_major(text)
    if major is None or major < MIN_JAVA_MAJOR:
        found = f"Java {major}" if major is not None else "an unrecognised java"
        raise RunError(f"{JAVA_HINT} (found {found} at {java})")
    match = re.search(r'version "([^"]+)"', text)
    return java, match.group(1) if match else str(major)


def check_pyyaml() -> None:
    # TorchServe 0.12 imports yaml in its worker but does not declare the dependency
    import importlib.util

    if importlib.util.find_spec("yaml") is None:
        raise RunError(
            f"TorchServe needs PyYAML, which it does not declare: {sys.executable} -m pip install pyyaml"
        )


def build_archive(
    artifact: ServedArtifact,
    metadata: dict[str, Any],
    *,
    model_name: str,
    handler: Path,
    work_dir: Path,
    model_store: Path,
    log_path: Path,
    env: dict[str, str],
    timeout_s: float,
) -> Path:
    """`<model_store>/<model_name>.mar` holding the exported file, `handler` and the metadata JSON
    (harness_model.json: the signature, for our handler or the user's)."""
    build = work_dir / "archive-inputs"
    build.mkdir(parents=True, exist_ok=True)
    meta = build / HANDLER_METADATA_FILE
    meta.write_text(json.dumps(metadata, indent=2))
    argv = archiver_argv(
        sys.executable,
        model_name=model_name,
        serialized_file=Path(artifact.path).resolve(),
        handler=handler,
        extra_files=[meta],
        export_path=model_store,
    )
    mar = model_store / f"{model_name}.mar"
    with open(log_path, "ab") as log:
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=work_dir,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise RunError(
                f"torch-model-archiver did not finish within startup_timeout_s; log {log_path}"
            ) from exc
    if done.returncode != 0 or not mar.is_file():
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
        raise RunError(f"torch-model-archiver failed (exit {done.returncode})", log=log_path, log_tail=tail)
    return mar
