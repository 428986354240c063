"""Running tensorflow_model_server for the tfserving target: the binary, or the official image in docker.

Split from the target (which talks to the server) so that each stays readable: this module owns
the files on disk, the ports, the process or container, and their teardown.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness.artifacts import ServedArtifact
from harness.errors import RunError, UserError
from harness.processes import ManagedProcess, free_port
from harness.scenario.schema import ServingSpec
from harness.serving.config_text import check_config_value
from harness.serving.listeners import check_listeners
from harness.serving.tfserving_config import (
    BATCHING_FILE,
    BINARY_NAME,
    CONTAINER_CONFIG_DIR,
    CONTAINER_MODELS_DIR,
    INSTALL_HINT,
    LOOPBACK,
    MODEL_CONFIG_FILE,
    MODEL_VERSION,
    MONITORING_CONFIG_FILE,
    SUPPORTED_FORMATS,
    TfServingOptions,
    batching_parameters,
    batching_parameters_text,
    binary_argv,
    container_name,
    default_rest_api_num_threads,
    docker_rm_argv,
    docker_run_argv,
    log_env,
    model_config_text,
    monitoring_config_text,
    parse_version_text,
    server_flags,
)

# TF Serving keeps running without REST when its port is taken, and ignores unknown flags after
# printing them (main.cc): both would otherwise look like a slow start until the deadline
FATAL_MARKERS = (
    "Failed to start HTTP Server",
    "Couldn't bind",
    "Failed to start server",
    "unknown argument:",
    "Address already in use",
    "Error response from daemon",
)
PORT_CLASH_MARKERS = (
    "Failed to start HTTP Server",
    "Couldn't bind",
    "Address already in use",
    "port is already",
)
UNIX_SOCKET_PATH_MAX = 107  # Linux caps AF_UNIX paths at 108 bytes

Runner = Callable[[Sequence[str], float], "subprocess.CompletedProcess[str]"]


def run_command(argv: Sequence[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    """Run a short command, capturing output; a failure to start comes back as exit code 127."""
    try:
        return subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(list(argv), 127, "", str(exc))


def unavailable_reason(options: TfServingOptions, runner: Runner = run_command) -> str | None:
    """None when `options.mode` can run on this machine, else one line saying what is missing."""
    if options.mode == "binary":
        if options.binary:
            if os.path.isfile(options.binary) and os.access(options.binary, os.X_OK):
                return None
            return f"tfserving: serving.options.binary {options.binary} is not an executable file"
        if shutil.which(BINARY_NAME) is None:
            return (
                f"tfserving: {BINARY_NAME} not found on PATH; {INSTALL_HINT} "
                "or set serving.options.mode: docker|remote"
            )
        return None
    if options.mode == "docker":
        docker = shutil.which("docker")
        if docker is None:
            return (
                "tfserving: docker not found on PATH; install it or set serving.options.mode: binary|remote"
            )
        info = runner([docker, "info", "--format", "{{.ServerVersion}}"], 30)
        if info.returncode != 0:
            lines = (info.stderr or info.stdout).strip().splitlines() or ["docker info failed"]
            return f"tfserving: the docker daemon is not reachable ({lines[0]})"
        if runner([docker, "image", "inspect", options.image], 30).returncode != 0:
            return f"tfserving: docker image {options.image} is not here; run `docker pull {options.image}`"
    return None  # remote: readiness tells whether the server is there


def layout_model(artifact: ServedArtifact, models_root: Path, model_name: str) -> Path:
    """Copy the artifact into `<models_root>/<model_name>/<version>/`, the layout TF Serving polls.

    A SavedModel's contents go there as they are; a TFLite file becomes `model.tflite`, the name
    saved_model_bundle_factory.cc looks for under --prefer_tflite_model.
    """
    if artifact.format not in SUPPORTED_FORMATS:
        raise UserError(
            f"tfserving serves {' or '.join(SUPPORTED_FORMATS)} artifacts, not {artifact.format!r}"
        )
    version_dir = models_root / model_name / str(MODEL_VERSION)
    if version_dir.exists():
        shutil.rmtree(version_dir)
    source = Path(artifact.path)
    if artifact.format == "savedmodel":
        if not (source / "saved_model.pb").is_file():
            raise RunError(f"tfserving: {source} is not a SavedModel folder (no saved_model.pb)")
        shutil.copytree(source, version_dir)
    else:
        if not source.is_file():
            raise RunError(f"tfserving: TFLite file not found: {source}")
        version_dir.mkdir(parents=True)
        shutil.copy2(source, version_dir / "model.tflite")
    return version_dir


class TfServingProcess:
    """A private tensorflow_model_server (binary or container) serving one model folder."""

    def __init__(
        self,
        options: TfServingOptions,
        spec: ServingSpec,
        work_dir: Path,
        runner: Runner,
        *,
        cpus: Sequence[int] | None = None,
    ) -> None:
        self.options = options
        self.cpus = tuple(cpus) if cpus is not None else None
        self.spec = spec
        self.work_dir = work_dir
        self.runner = runner
        self.models_root = work_dir / "models"
        self.config_dir = work_dir / "config"
        self.log_path = work_dir / "logs" / f"{'docker' if options.mode == 'docker' else BINARY_NAME}.log"
        self.batching = spec.batch_size > 1
        self.num_batch_threads = options.num_batch_threads or spec.workers
        self.rest_api_num_threads = options.rest_api_num_threads or default_rest_api_num_threads(
            len(self.cpus) if self.cpus is not None else os.cpu_count(),
            batch_size=spec.batch_size,
            num_batch_threads=self.num_batch_threads,
        )
        self.rest_port: int | None = None
        self.grpc_port: int | None = None
        self.grpc_socket: Path | None = None
        self.container: str | None = None  # live: removed at stop()
        self.container_name: str | None = None  # kept for the report
        self.versions: dict[str, str] = {}
        self.process: ManagedProcess | None = None
        self._private_tmp: Path | None = None

    @property
    def docker(self) -> bool:
        return self.options.mode == "docker"

    @property
    def base_url(self) -> str | None:
        return f"http://{LOOPBACK}:{self.rest_port}" if self.rest_port is not None else None

    @property
    def grpc_target(self) -> str:
        return f"{LOOPBACK}:{self.grpc_port}" if self.docker else f"unix:{self.grpc_socket}"

    def batching_params(self) -> dict[str, int]:
        return batching_parameters(
            batch_size=self.spec.batch_size,
            max_batch_delay_ms=self.spec.max_batch_delay_ms,
            num_batch_threads=self.num_batch_threads,
            max_enqueued_batches=self.options.max_enqueued_batches,
        )

    def launch(self, *, prefer_tflite: bool, remaining_s: Callable[[], float]) -> None:
        """Write the config files, pick ports and start the server (readiness is the caller's)."""
        for d in (self.config_dir, self.log_path.parent):
            d.mkdir(parents=True, exist_ok=True)
        if self.log_path.exists() and self.log_path.stat().st_size:  # the fatal-line scan starts fresh
            self.log_path.rename(self.log_path.with_suffix(f".{time.time_ns()}.log"))
        config_base = CONTAINER_CONFIG_DIR if self.docker else str(self.config_dir)
        models_base = CONTAINER_MODELS_DIR if self.docker else str(self.models_root)
        name = self.options.model_name
        check_config_value("model base path", f"{models_base}/{name}")
        (self.config_dir / MODEL_CONFIG_FILE).write_text(
            model_config_text(model_name=name, base_path=f"{models_base}/{name}")
        )
        (self.config_dir / MONITORING_CONFIG_FILE).write_text(monitoring_config_text())
        if self.batching:
            (self.config_dir / BATCHING_FILE).write_text(batching_parameters_text(self.batching_params()))
        flags = server_flags(
            model_config_file=f"{config_base}/{MODEL_CONFIG_FILE}",
            monitoring_config_file=f"{config_base}/{MONITORING_CONFIG_FILE}",
            batching_parameters_file=f"{config_base}/{BATCHING_FILE}" if self.batching else None,
            prefer_tflite=prefer_tflite,
            rest_api_num_threads=self.rest_api_num_threads,
            rest_api_timeout_ms=int(self.options.request_timeout_s * 1000),
            extra_flags=self.options.extra_flags,
        )
        self.rest_port = free_port()
        argv = self._docker_argv(flags, remaining_s) if self.docker else self._binary_argv(flags)
        for arg in argv:  # a line break in a flag would reach the server (and command.txt) as it is
            check_config_value("tensorflow_model_server argument", arg)
        (self.config_dir / "command.txt").write_text(shlex.join(argv) + "\n")  # to rerun it by hand
        # the harness sets TF_CPP_MIN_LOG_LEVEL=2 for itself; the server's follows serving.log_level
        env = {**os.environ, **log_env(self.spec.log_level)}
        self.process = ManagedProcess(
            argv,
            self.log_path,
            name=f"tfserving ({self.options.mode})",
            env=env,
            cwd=self.work_dir,
            fatal_markers=FATAL_MARKERS,
            # if the harness dies, the `docker run` client dies with the group but not the container
            orphan_cleanup=docker_rm_argv(_docker(), self.container) if self.container else None,
            on_ready=None if self.docker else self._check_listeners,
            # a container's processes are the daemon's children: docker places them (--cpuset-cpus)
            cpus=None if self.docker else self.cpus,
        )
        self.process.start()

    def _check_listeners(self) -> None:
        """Only the REST port, on any address (TF Serving cannot be told otherwise; the report says
        so): gRPC is on a unix socket, so any other TCP listener is a surprise."""
        assert self.process is not None
        assert self.process.pid is not None
        assert self.rest_port is not None
        check_listeners(
            "tensorflow_model_server",
            self.process.pid,
            address=LOOPBACK,
            ports=(),
            any_address_ports=(self.rest_port,),
        )

    def _binary_argv(self, flags: list[str]) -> list[str]:
        binary = self.options.binary or shutil.which(BINARY_NAME) or BINARY_NAME
        self.versions = parse_version_text(self.runner([binary, "--version"], 30).stdout)
        path = self.work_dir / "grpc.sock"
        if len(str(path)) > UNIX_SOCKET_PATH_MAX:  # a deep run folder: the socket goes to a private temp dir
            self._private_tmp = self._private_tmp or Path(tempfile.mkdtemp(prefix="harness-tfs-"))
            path = self._private_tmp / "grpc.sock"
        path.unlink(missing_ok=True)  # a socket left by a killed run would make the bind fail
        self.grpc_socket = path
        assert self.rest_port is not None
        return binary_argv(binary, rest_port=self.rest_port, grpc_socket=path, flags=flags)

    def _docker_argv(self, flags: list[str], remaining_s: Callable[[], float]) -> list[str]:
        docker, image = _docker(), self.options.image
        self.grpc_port = next(p for p in iter(free_port, None) if p != self.rest_port)
        self.container = self.container_name = container_name(self.work_dir.parent)
        self.runner(docker_rm_argv(docker, self.container), 60)  # a leftover of a killed run
        image_id = self.runner([docker, "image", "inspect", "--format", "{{.Id}}", image], 30).stdout.strip()
        shown = self.runner(
            [docker, "run", "--rm", "--pull=never", "--entrypoint", BINARY_NAME, image, "--version"],
            min(60.0, remaining_s()),
        )
        self.versions = {"image": image, "image_id": image_id, **parse_version_text(shown.stdout)}
        assert self.rest_port is not None
        return docker_run_argv(
            docker,
            image=image,
            container_name=self.container,
            rest_port=self.rest_port,
            grpc_port=self.grpc_port,
            cpus=self.cpus,
            models_dir=self.models_root,
            config_dir=self.config_dir,
            label=str(self.work_dir),
            flags=flags,
            env=log_env(self.spec.log_level),
        )

    def pid(self) -> int | None:
        """The model server's pid on this host: the binary itself, or the container's main process."""
        if self.container is not None:
            out = self.runner([_docker(), "inspect", "--format", "{{.State.Pid}}", self.container], 30)
            text = out.stdout.strip()
            return int(text) if out.returncode == 0 and text.isdigit() and text != "0" else None
        return self.process.pid if self.process is not None else None

    def stop(self) -> None:
        """Remove the container (even after a failed `docker run`), stop the process group, clean up."""
        try:
            if self.container is not None:
                self.runner(docker_rm_argv(_docker(), self.container), 60)
            if self.process is not None:
                self.process.stop()
        finally:
            self.process = None
            self.container = None
            if self._private_tmp is not None:
                shutil.rmtree(self._private_tmp, ignore_errors=True)
                self._private_tmp = None

    def log_bytes(self) -> int:
        """Total size of the server's log files, including those of a retried launch."""
        total = 0
        for path in self.log_path.parent.glob(f"{self.log_path.stem}*.log"):
            with contextlib.suppress(OSError):
                total += path.stat().st_size
        return total

    def facts(self) -> dict[str, Any]:
        return {
            "versions": dict(self.versions),
            "ports": {
                "rest": self.rest_port,
                "grpc": self.grpc_port,
                "grpc_socket": str(self.grpc_socket) if self.grpc_socket else None,
            },
            "container": self.container_name,
            "rest_api_num_threads": self.rest_api_num_threads,
            "log": str(self.log_path),
            "log_level": self.spec.log_level,
            "log_bytes": self.log_bytes(),
            "config_dir": str(self.config_dir),
        }


def _docker() -> str:
    return shutil.which("docker") or "docker"
