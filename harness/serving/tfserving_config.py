"""Pure builders for TF Serving: `serving.options`, config files, server and docker argv, responses.

Kept free of I/O and of TensorFlow so that unit tests check every flag and file against TF
Serving's own definitions without the server. Sources relied on (tensorflow/serving, tag 2.19.1):
tensorflow_serving/model_servers/main.cc (flags), server.cc (listeners), config/
model_server_config.proto, config/monitoring_config.proto, servables/tensorflow/
session_bundle_config.proto (BatchingParameters), g3doc/api_rest.md, tools/docker/Dockerfile.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from harness.errors import UserError
from harness.serving.config_text import ConfigText

LOOPBACK = "127.0.0.1"
SUPPORTED_FORMATS = ("savedmodel", "tflite")
BINARY_NAME = "tensorflow_model_server"
# pinned: a run is comparable with its baseline only on the same server build
DEFAULT_IMAGE = "tensorflow/serving:2.19.1"
MODEL_VERSION = 1
PROMETHEUS_PATH = "/monitoring/prometheus/metrics"  # PrometheusExporter::kPrometheusPath
# the image's entrypoint passes --port=8500 --rest_api_port=8501 (tools/docker/Dockerfile)
CONTAINER_GRPC_PORT = 8500
CONTAINER_REST_PORT = 8501
CONTAINER_MODELS_DIR = "/models"
CONTAINER_CONFIG_DIR = "/config"
MODEL_CONFIG_FILE = "models.config"
MONITORING_CONFIG_FILE = "monitoring.config"
BATCHING_FILE = "batching.config"
INSTALL_HINT = "install it from TF Serving's apt repository (see README)"
# Where each listener binds, as server.cc and net_http's evhttp_server.cc do it: gRPC TCP on
# "0.0.0.0:<port>", REST on "::" (all interfaces, IPv4 too) with no flag to choose an address.
REST_BIND_BINARY = "all interfaces ([::]/0.0.0.0): tensorflow_model_server has no flag to restrict it"
GRPC_BIND_BINARY = "unix socket only (--port=0 --grpc_socket_path): its TCP listener would bind 0.0.0.0"
BIND_DOCKER = "127.0.0.1 (docker -p 127.0.0.1:<port>:<container port>)"
BIND_ADDRESS = {
    "binary": {"rest": REST_BIND_BINARY, "grpc": GRPC_BIND_BINARY},
    "docker": {"rest": BIND_DOCKER, "grpc": BIND_DOCKER},
    "remote": {"rest": "chosen by the remote server", "grpc": "chosen by the remote server"},
}

# Flags the target sets itself; extra_flags may not override them.
RESERVED_FLAGS = frozenset(
    {
        "port",
        "grpc_socket_path",
        "rest_api_port",
        "rest_api_num_threads",
        "rest_api_timeout_in_ms",
        "model_config_file",
        "model_name",
        "model_base_path",
        "monitoring_config_file",
        "enable_batching",
        "batching_parameters_file",
        "prefer_tflite_model",
        "max_num_load_retries",
        "version",
    }
)
_FLAG = re.compile(r"^--([a-z][a-z0-9_]*)=(.*)$", re.DOTALL)


class TfServingOptions(BaseModel):
    """Target-specific keys accepted in `serving.options` for the tfserving target."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["binary", "docker", "remote"] = Field(
        default="binary",
        description="binary: run tensorflow_model_server from PATH or `binary`; docker: run the "
        "`image` in a container named per run; remote: use the server already running at `url`.",
    )
    binary: ConfigText | None = Field(
        default=None, description="Path of tensorflow_model_server (mode binary); default: found on PATH."
    )
    image: ConfigText = Field(
        default=DEFAULT_IMAGE,
        description="Docker image (mode docker); must already be pulled, the harness never pulls.",
    )
    url: ConfigText | None = Field(
        default=None,
        pattern=r"^https?://[^/\s]+$",
        description="REST base URL http://host:port of a running server (mode remote, required); it "
        "must already serve the artifact under `model_name`.",
    )
    remote_grpc: ConfigText | None = Field(
        default=None,
        pattern=r"^[^/\s:]+:\d+$",
        description="host:port of the remote server's gRPC listener (mode remote with protocol grpc).",
    )
    model_name: str = Field(
        default="model", pattern=r"^[A-Za-z0-9_-]+$", description="Name the model is served under."
    )
    protocol: Literal["rest", "grpc"] = Field(
        default="rest",
        description="How predict() (the accuracy check) reaches the server; grpc sends tensors as raw "
        "bytes (large inputs, any dtype). Load from Locust is always REST.",
    )
    rest_format: Literal["row", "columnar"] = Field(
        default="row",
        description='REST request format (predict() and the load): row: {"instances": [...]}, one '
        "entry per example (an object by input name for several inputs); columnar: "
        '{"inputs": ...}, the whole batch per input (an object by name for several), less JSON '
        "for the server to walk. Both are JSON: TF Serving's REST API takes no binary tensors, so "
        "large inputs cost the client and the server a text encoding either way.",
    )
    rows_per_request: int = Field(
        default=64, ge=1, le=4096, description="Rows per request when predict() chunks a large batch."
    )
    request_timeout_s: float = Field(
        default=30.0, gt=0, description="Per-request timeout; also sent as --rest_api_timeout_in_ms."
    )
    rest_api_num_threads: int | None = Field(
        default=None,
        ge=1,
        description="REST threads; default: TF Serving's 4 per CPU, raised to 2 x batch size x batch "
        "threads so batches can fill.",
    )
    num_batch_threads: int | None = Field(
        default=None, ge=1, description="Threads running batches (batching only); default: serving.workers."
    )
    max_enqueued_batches: int = Field(
        default=1000,
        ge=1,
        description="Batches queued before TF Serving turns requests away (batching only).",
    )
    extra_flags: list[ConfigText] = Field(
        default_factory=list,
        description="More tensorflow_model_server flags, each written --name=value; flags the "
        "target sets itself are refused.",
    )

    @model_validator(mode="after")
    def _check(self) -> TfServingOptions:
        for flag in self.extra_flags:
            match = _FLAG.match(flag)
            if not match:
                raise ValueError(f"extra_flags: {flag!r} is not written --name=value")
            if match.group(1) in RESERVED_FLAGS:
                raise ValueError(f"extra_flags: --{match.group(1)} is set by the target; use its option")
        if self.mode == "remote" and not self.url:
            raise ValueError("url is required with mode: remote")
        if self.mode != "remote" and (self.url or self.remote_grpc):
            raise ValueError("url and remote_grpc are only used with mode: remote")
        if self.mode == "remote" and self.protocol == "grpc" and not self.remote_grpc:
            raise ValueError("remote_grpc (host:port) is required with mode: remote and protocol: grpc")
        if self.binary and self.mode != "binary":
            raise ValueError("binary is only used with mode: binary")
        return self

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> TfServingOptions:
        """Parse `serving.options`; a bad key or value is the user's error, reported in one line."""
        try:
            return cls.model_validate(dict(options))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'options'}: {err['msg']}" for err in exc.errors()
            )
            raise UserError(f"invalid serving.options for tfserving: {problems}") from None


def _quote(text: str) -> str:
    """A protobuf text-format string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def model_config_text(*, model_name: str, base_path: str, version: int = MODEL_VERSION) -> str:
    """A ModelServerConfig (text proto) serving exactly `version` of one TensorFlow model.

    A `specific` version policy rather than the default `latest`: the server must serve the folder
    we wrote, never a stray newer one.
    """
    return (
        "model_config_list {\n"
        "  config {\n"
        f"    name: {_quote(model_name)}\n"
        f"    base_path: {_quote(base_path)}\n"
        '    model_platform: "tensorflow"\n'
        f"    model_version_policy {{ specific {{ versions: {version} }} }}\n"
        "  }\n"
        "}\n"
    )


def monitoring_config_text(path: str = PROMETHEUS_PATH) -> str:
    """A MonitoringConfig (text proto) exposing Prometheus metrics on the REST port at `path`."""
    return f"prometheus_config {{\n  enable: true\n  path: {_quote(path)}\n}}\n"


def batching_parameters(
    *, batch_size: int, max_batch_delay_ms: int, num_batch_threads: int, max_enqueued_batches: int
) -> dict[str, int]:
    """BatchingParameters fields from the scenario's batch size and delay."""
    return {
        "max_batch_size": batch_size,
        "batch_timeout_micros": max_batch_delay_ms * 1000,
        "num_batch_threads": num_batch_threads,
        "max_enqueued_batches": max_enqueued_batches,
    }


def batching_parameters_text(params: Mapping[str, int]) -> str:
    """BatchingParameters as text proto; each field is a google.protobuf.Int64Value wrapper."""
    return "".join(f"{name} {{ value: {int(value)} }}\n" for name, value in params.items())


def default_rest_api_num_threads(cpu_count: int | None, *, batch_size: int, num_batch_threads: int) -> int:
    """TF Serving's own default (4 per CPU, server.h), but at least 2 x max_batch_size x batch
    threads: a REST thread blocks while its request waits in a batch, and the batching guide asks
    for twice the batch size in concurrent callers to fill batches."""
    own_default = 4 * max(1, cpu_count or 1)
    return max(own_default, 2 * batch_size * num_batch_threads if batch_size > 1 else 0)


def server_flags(
    *,
    model_config_file: str,
    monitoring_config_file: str,
    batching_parameters_file: str | None,
    prefer_tflite: bool,
    rest_api_num_threads: int,
    rest_api_timeout_ms: int,
    extra_flags: Sequence[str] = (),
) -> list[str]:
    """Flags shared by binary and docker modes (ports come from the caller or the image)."""
    flags = [
        f"--rest_api_num_threads={rest_api_num_threads}",
        f"--rest_api_timeout_in_ms={rest_api_timeout_ms}",
        f"--model_config_file={model_config_file}",
        f"--monitoring_config_file={monitoring_config_file}",
        # the default retries a failed load 5 times a minute apart; one try makes a bad model fail fast
        "--max_num_load_retries=0",
    ]
    if batching_parameters_file:
        flags += ["--enable_batching", f"--batching_parameters_file={batching_parameters_file}"]
    if prefer_tflite:
        flags.append("--prefer_tflite_model=true")
    return [*flags, *extra_flags]


def binary_argv(binary: str, *, rest_port: int, grpc_socket: Path, flags: Sequence[str]) -> list[str]:
    """tensorflow_model_server with gRPC on a unix socket and REST on `rest_port`.

    `--port=0` turns the gRPC TCP listener off (main.cc: "Disabled if port set to zero"); server.cc
    would bind it to 0.0.0.0. The socket keeps gRPC off the network; REST cannot be kept off it.
    """
    return [binary, "--port=0", f"--grpc_socket_path={grpc_socket}", f"--rest_api_port={rest_port}", *flags]


# serving.log_level -> TF's C++ logging: TF_CPP_MIN_LOG_LEVEL hides INFO (1), WARNING (2), ERROR (3)
# and below; TF_CPP_MAX_VLOG_LEVEL turns on VLOG(1) lines, the closest TF has to DEBUG
_TF_LOG_ENV = {
    "DEBUG": {"TF_CPP_MIN_LOG_LEVEL": "0", "TF_CPP_MAX_VLOG_LEVEL": "1"},
    "INFO": {"TF_CPP_MIN_LOG_LEVEL": "0"},
    "WARN": {"TF_CPP_MIN_LOG_LEVEL": "1"},
    "ERROR": {"TF_CPP_MIN_LOG_LEVEL": "2"},
}


def log_env(level: str) -> dict[str, str]:
    """Environment that sets tensorflow_model_server's log level (the harness's own is not inherited)."""
    return {"TF_CPP_MAX_VLOG_LEVEL": "0", **_TF_LOG_ENV[level]}


def docker_run_argv(
    docker: str,
    *,
    image: str,
    container_name: str,
    rest_port: int,
    grpc_port: int,
    models_dir: Path,
    config_dir: Path,
    label: str,
    flags: Sequence[str],
    env: Mapping[str, str] | None = None,
    cpus: Sequence[int] | None = None,
) -> list[str]:
    """`docker run` in the foreground (its output goes to our log), ports published on loopback only.

    `--pull=never`: the harness never downloads an image mid-run; `--rm` plus `docker rm -f` at
    teardown leave no container behind.
    """
    return [
        docker,
        "run",
        "--rm",
        "--pull=never",
        "--name",
        container_name,
        "--label",
        f"harness.run={label}",
        "-p",
        f"{LOOPBACK}:{rest_port}:{CONTAINER_REST_PORT}",
        "-p",
        f"{LOOPBACK}:{grpc_port}:{CONTAINER_GRPC_PORT}",
        "-v",
        f"{models_dir}:{CONTAINER_MODELS_DIR}:ro",
        "-v",
        f"{config_dir}:{CONTAINER_CONFIG_DIR}:ro",
        *[arg for name, value in (env or {}).items() for arg in ("-e", f"{name}={value}")],
        *(["--cpuset-cpus", ",".join(str(c) for c in cpus)] if cpus is not None else []),
        image,
        *flags,
    ]


def docker_rm_argv(docker: str, container_name: str) -> list[str]:
    return [docker, "rm", "-f", container_name]


def container_name(run_dir: Path) -> str:
    """`harness-tfs-<last folders of the run dir>-<hash>`: readable, unique per run folder."""
    resolved = Path(run_dir).resolve()
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(resolved.parts[-4:])).strip("-.")[-48:].lstrip("-.")
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:8]
    return f"harness-tfs-{slug}-{digest}" if slug else f"harness-tfs-{digest}"


def model_state(body: Mapping[str, Any]) -> tuple[str, str]:
    """(state, error message) from a model status response (GetModelStatusResponse as JSON).

    AVAILABLE wins if any version has it; a version at END with a non-OK status is a failed load.
    """
    versions = body.get("model_version_status") or []
    states = [(v.get("state", "UNKNOWN"), v.get("status") or {}) for v in versions if isinstance(v, dict)]
    if any(state == "AVAILABLE" for state, _ in states):
        return "AVAILABLE", ""
    for state, status in states:
        if state == "END" and status.get("error_code", "OK") != "OK":
            return "END", f"{status.get('error_code')}: {status.get('error_message', '')}".strip()
    return (states[0][0] if states else "UNKNOWN"), ""


def signature_keys(
    metadata: Mapping[str, Any], signature: str = "serving_default"
) -> tuple[list[str], list[str]]:
    """(input names, output names) of `signature` from a REST model metadata response."""
    sig = metadata["metadata"]["signature_def"]["signature_def"][signature]
    return sorted(sig.get("inputs", {})), sorted(sig.get("outputs", {}))


def parse_version_text(text: str) -> dict[str, str]:
    """`tensorflow_model_server --version` -> {"model_server": "2.19.1", "tensorflow": "2.19.1"}."""
    found = {}
    for key, label in (("model_server", "TensorFlow ModelServer"), ("tensorflow", "TensorFlow Library")):
        match = re.search(rf"^{label}:\s*(\S+)", text, re.MULTILINE)
        if match:
            found[key] = match.group(1)
    return found
