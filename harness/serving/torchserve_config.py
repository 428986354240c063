"""Pure builders for TorchServe: config.properties and log4j2 text, archiver and server argv, environment.

Kept free of I/O and of torch so that unit tests check every binding and flag without Java.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from xml.sax.saxutils import quoteattr

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from harness.errors import UserError
from harness.serving.config_text import ConfigText, check_config_value
from harness.serving.wire import LARGE_EXAMPLE_NUMBERS, OUTPUT_PATH_PATTERN, template_problem

LOOPBACK = "127.0.0.1"
MIN_JAVA_MAJOR = 17
JAVA_HINT = "TorchServe needs Java 17+: apt-get install openjdk-17-jre-headless"
TOKEN_AUTH_MODE = "disabled (bound to 127.0.0.1)"
HANDLER_METADATA_FILE = "harness_model.json"
# Linux caps AF_UNIX paths at 108 bytes; TorchServe puts its worker sockets in java.io.tmpdir
UNIX_SOCKET_PATH_MAX = 107
_WORKER_SOCKET_SUFFIX = "/.ts.sock.65535"
LOG_CONFIG_FILE = "log4j2.xml"
# Server log files (in LOG_LOCATION) counted in describe()["log_bytes"]
LOG_FILES = ("ts_log.log", "model_log.log", "access_log.log", "model_metrics.log", "ts_metrics.log")


class TorchServeOptions(BaseModel):
    """Target-specific keys accepted in `serving.options` for the torchserve target."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_name: str = Field(
        default="model", pattern=r"^[A-Za-z0-9_-]+$", description="Name the model is registered under."
    )
    rows_per_request: int = Field(
        default=64, ge=1, le=4096, description="Rows per HTTP request when predict() chunks a large batch."
    )
    response_timeout_s: int = Field(default=120, ge=1, description="TorchServe per-request worker timeout.")
    job_queue_size: int = Field(default=1000, ge=1, description="Requests queued per model before 503.")
    torch_threads: int | None = Field(
        default=None,
        ge=1,
        description="torch threads per worker; default: CPU count divided by workers (at least 1).",
    )
    vmargs: ConfigText | None = Field(
        default=None, description="Extra JVM arguments, e.g. '-Xmx1g'; one line, no control characters."
    )
    inject_delay_ms: float = Field(
        default=0.0,
        ge=0,
        le=10_000,
        description="Test aid: the handler spins this long per batch, a known regression for checking "
        "that gates detect one (benchmarks/gate_validity.py). Leave at 0 in real scenarios.",
    )

    encoding: Literal["auto", "json", "binary"] = Field(
        default="auto",
        description="Request body format, for the accuracy check and the load alike. json: "
        '{"instances": [...]} (one entry per example; an object by input name for several inputs); '
        "binary: the batch as a .npy file (one input) or an uncompressed .npz (one .npy per input "
        "name), no per-number parsing on the server. auto: binary when an example of any input holds "
        f"more than {LARGE_EXAMPLE_NUMBERS:,} numbers (images: a 224x224x3 one is 150,528), else json. "
        "Not used with request_template.",
    )
    max_request_mb: int = Field(
        default=100,
        ge=1,
        le=2048,
        description="Largest request and response body TorchServe accepts, in MiB (its own default, "
        "6.25 MiB, refuses a few JSON-encoded images).",
    )
    handler: ConfigText | None = Field(
        default=None,
        description="Your own TorchServe handler .py (relative to the scenario file), archived with "
        "the variant's exported file instead of the harness handler. harness_model.json beside it "
        "holds the signature. It must answer request bodies in `encoding` (or your "
        "request_template) with the outputs at output_path.",
    )
    archive: ConfigText | None = Field(
        default=None,
        description="A whole .mar of yours (relative to the scenario file) served as it is: the "
        "variant's exported file is not used, only its signature (to build requests). Registered "
        "under model_name whatever name the archive gives itself.",
    )
    request_template: ConfigText | None = Field(
        default=None,
        description="Request body template for your handler or archive, e.g. "
        "'{\"data\": {{instances}}}'. Placeholders become JSON: {{instances}} one entry per example "
        "(an object by input name for several inputs), {{inputs}} the batch (an object by name for "
        "several), {{inputs.NAME}} the batch of one input.",
    )
    content_type: ConfigText = Field(
        default="application/json",
        pattern=r"^[\w.+-]+/[\w.+-]+(\s*;.*)?$",
        description="Content-Type of request_template bodies.",
    )
    output_path: str = Field(
        default="predictions",
        pattern=OUTPUT_PATH_PATTERN,
        description="Where the JSON response holds the outputs, as a dotted path of keys and list "
        "indexes: 'predictions' (the harness handler's), 'outputs.0.probs'. It must yield one row of "
        "scores (classification) or values (regression) per example, or for a one-example request "
        "that example's row. The accuracy check reads it; the load counts its rows.",
    )

    @model_validator(mode="after")
    def _check(self) -> TorchServeOptions:
        if self.handler and self.archive:
            raise ValueError("handler and archive exclude each other: an archive holds its own handler")
        if self.handler and not self.handler.endswith(".py"):
            raise ValueError(f"handler must be a .py file, got {self.handler!r}")
        if self.archive and not self.archive.endswith(".mar"):
            raise ValueError(f"archive must be a .mar file, got {self.archive!r}")
        if self.request_template is not None:
            if self.encoding != "auto":
                raise ValueError("encoding and request_template exclude each other: the template is a format")
            problem = template_problem(self.request_template)
            if problem:
                raise ValueError(f"request_template: {problem}")
        elif "content_type" in self.model_fields_set:
            raise ValueError("content_type is only used with request_template")
        if self.inject_delay_ms and (self.handler or self.archive):
            raise ValueError("inject_delay_ms is a feature of the harness handler, not of yours")
        return self

    def user_file(self, scenario_dir: Path | None) -> Path | None:
        """The handler or archive as an absolute path (relative ones against `scenario_dir`, else
        the working directory); UserError if it is not a file. None when neither is set."""
        name, value = ("handler", self.handler) if self.handler else ("archive", self.archive)
        if value is None:
            return None
        path = Path(value).expanduser()
        if not path.is_absolute():
            path = (Path(scenario_dir) if scenario_dir is not None else Path.cwd()) / path
        path = path.resolve()
        if not path.is_file():
            raise UserError(f"serving.options.{name}: {path} is not a file")
        return path

    def check_paths(self, scenario_dir: Path) -> None:
        """UserError if a handler or archive named here does not exist (for `harness validate`)."""
        self.user_file(scenario_dir)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> TorchServeOptions:
        """Parse `serving.options`; a bad key or value is the user's error, reported in one line."""
        try:
            return cls.model_validate(dict(options))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'options'}: {err['msg']}" for err in exc.errors()
            )
            raise UserError(f"invalid serving.options for torchserve: {problems}") from None


@dataclass(frozen=True)
class TorchServePorts:
    """The five listening ports; every one is bound to 127.0.0.1."""

    inference: int
    management: int
    metrics: int
    grpc_inference: int
    grpc_management: int

    @classmethod
    def pick(cls, free_port: Any) -> TorchServePorts:
        """Five distinct free ports from `free_port()` (retried: the OS may hand one out twice)."""
        ports: list[int] = []
        for _ in range(50):
            port = int(free_port())
            if port not in ports:
                ports.append(port)
            if len(ports) == 5:
                return cls(*ports)
        raise RuntimeError("could not find five distinct free ports")

    def as_dict(self) -> dict[str, int]:
        return {
            "inference": self.inference,
            "management": self.management,
            "metrics": self.metrics,
            "grpc_inference": self.grpc_inference,
            "grpc_management": self.grpc_management,
        }


def _escape_property(value: str) -> str:
    # java.util.Properties treats a backslash as an escape; nothing else in our values needs it
    return value.replace("\\", "\\\\")


def effective_max_batch_delay_ms(requested_ms: int) -> int:
    """TorchServe reads 0 in config.properties as "unset" and waits its default 100 ms; 1 ms is the
    shortest wait it accepts, so 0 is sent as 1."""
    return max(1, requested_ms)


def models_block(
    *,
    model_name: str,
    mar_name: str,
    workers: int,
    batch_size: int,
    max_batch_delay_ms: int,
    response_timeout_s: int,
) -> dict[str, Any]:
    """The `models=` JSON of config.properties: registration settings per model and version."""
    return {
        model_name: {
            "1.0": {
                "defaultVersion": True,
                "marName": mar_name,
                "minWorkers": workers,
                "maxWorkers": workers,
                "batchSize": batch_size,
                "maxBatchDelay": effective_max_batch_delay_ms(max_batch_delay_ms),
                "responseTimeout": response_timeout_s,
            }
        }
    }


def config_properties(
    *,
    ports: TorchServePorts,
    model_store: Path,
    model_name: str,
    mar_name: str,
    workers: int,
    batch_size: int,
    max_batch_delay_ms: int,
    options: TorchServeOptions,
) -> str:
    """The config.properties text: loopback-only listeners, no token auth, one model with batching.

    UserError if any value holds a control character: a line break would start a key of its own.
    """
    models = models_block(
        model_name=model_name,
        mar_name=mar_name,
        workers=workers,
        batch_size=batch_size,
        max_batch_delay_ms=max_batch_delay_ms,
        response_timeout_s=options.response_timeout_s,
    )
    lines = [
        "# Written by harness: every listener on loopback, ports picked free at run time.",
        f"inference_address=http://{LOOPBACK}:{ports.inference}",
        f"management_address=http://{LOOPBACK}:{ports.management}",
        f"metrics_address=http://{LOOPBACK}:{ports.metrics}",
        f"grpc_inference_address={LOOPBACK}",
        f"grpc_inference_port={ports.grpc_inference}",
        f"grpc_management_address={LOOPBACK}",
        f"grpc_management_port={ports.grpc_management}",
        "# TorchServe 0.12 requires a bearer token on every call by default; loopback-only instead.",
        "disable_token_authorization=true",
        "enable_model_api=false",
        "# Deterministic: no per-model pip installs, no TS_* overrides from env (snapshots: --ncs).",
        "install_py_dep_per_model=false",
        "enable_envvars_config=false",
        "metrics_mode=prometheus",
        "disable_system_metrics=true",
        f"model_store={_escape_property(str(model_store))}",
        # name=file: the model is registered under our name whatever name a user's archive carries
        f"load_models={model_name}={mar_name}",
        f"default_workers_per_model={workers}",
        f"default_response_timeout={options.response_timeout_s}",
        f"job_queue_size={options.job_queue_size}",
        f"max_request_size={options.max_request_mb * 1024 * 1024}",
        f"max_response_size={options.max_request_mb * 1024 * 1024}",
        f"models={json.dumps(models, separators=(',', ':'))}",
    ]
    if options.vmargs:
        lines.append(f"vmargs={options.vmargs}")
    for line in lines:
        key, _, value = line.partition("=")
        check_config_value(f"config.properties {key}", value)
    return "\n".join(lines) + "\n"


# Logger levels per scenario log level. ACCESS_LOG writes one INFO line per request (the bulk of
# the logs under load) and is only ever INFO; org.pytorch.serve is the frontend's own logger;
# MODEL_LOG is each worker's output (stdout at INFO, stderr at WARN, so tracebacks stay at WARN).
_LOGGER_LEVELS = {
    "DEBUG": {"ACCESS_LOG": "info", "org.pytorch.serve": "debug", "MODEL_LOG": "all", "metrics": "all"},
    "INFO": {"ACCESS_LOG": "info", "org.pytorch.serve": "info", "MODEL_LOG": "info", "metrics": "info"},
    "WARN": {"ACCESS_LOG": "warn", "org.pytorch.serve": "warn", "MODEL_LOG": "warn", "metrics": "warn"},
    "ERROR": {"ACCESS_LOG": "error", "org.pytorch.serve": "error", "MODEL_LOG": "error", "metrics": "error"},
}


def log4j2_config(level: str, log_dir: Path) -> str:
    """TorchServe's own log4j2.xml (same files and patterns) with every logger at `level`.

    Files are named in full rather than through ${env:LOG_LOCATION}, and plain File appenders:
    a run's logs are never rotated away under it.
    """
    levels = _LOGGER_LEVELS[level]
    check_config_value("log directory", str(log_dir))

    def file_appender(name: str, pattern: str) -> str:
        path = quoteattr(str(log_dir / f"{name}.log"))
        return (
            f'    <File name="{name}" fileName={path}>\n'
            f'      <PatternLayout pattern="{pattern}"/>\n'
            "    </File>\n"
        )

    plain, stamped = "%d{ISO8601} - %m%n", "%d{ISO8601} [%-5p] %t %c - %m%n"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<!-- Written by harness: serving.log_level {level} -->\n"
        "<Configuration>\n"
        "  <Appenders>\n"
        '    <Console name="STDOUT" target="SYSTEM_OUT">\n'
        f'      <PatternLayout pattern="{stamped}"/>\n'
        "    </Console>\n"
        + file_appender("access_log", plain)
        + file_appender("model_log", stamped)
        + file_appender("model_metrics", plain)
        + file_appender("ts_log", stamped)
        + file_appender("ts_metrics", plain)
        + "  </Appenders>\n"
        "  <Loggers>\n"
        f'    <Logger name="ACCESS_LOG" level="{levels["ACCESS_LOG"]}" additivity="false">\n'
        '      <AppenderRef ref="access_log"/>\n'
        "    </Logger>\n"
        '    <Logger name="io.netty" level="error"/>\n'
        f'    <Logger name="MODEL_LOG" level="{levels["MODEL_LOG"]}">\n'
        '      <AppenderRef ref="model_log"/>\n'
        "    </Logger>\n"
        f'    <Logger name="MODEL_METRICS" level="{levels["metrics"]}" additivity="false">\n'
        '      <AppenderRef ref="model_metrics"/>\n'
        "    </Logger>\n"
        '    <Logger name="org.apache" level="off"/>\n'
        # additivity off: TorchServe's own file writes every frontend line to ts_log.log twice
        f'    <Logger name="org.pytorch.serve" level="{levels["org.pytorch.serve"]}" additivity="false">\n'
        '      <AppenderRef ref="STDOUT"/>\n'
        '      <AppenderRef ref="ts_log"/>\n'
        "    </Logger>\n"
        f'    <Logger name="TS_METRICS" level="{levels["metrics"]}" additivity="false">\n'
        '      <AppenderRef ref="ts_metrics"/>\n'
        "    </Logger>\n"
        f'    <Root level="{levels["org.pytorch.serve"]}">\n'
        '      <AppenderRef ref="STDOUT"/>\n'
        '      <AppenderRef ref="ts_log"/>\n'
        "    </Root>\n"
        "  </Loggers>\n"
        "</Configuration>\n"
    )


def archiver_argv(
    python: str,
    *,
    model_name: str,
    serialized_file: Path,
    handler: Path,
    extra_files: list[Path],
    export_path: Path,
) -> list[str]:
    """torch-model-archiver run by the same interpreter, so it matches the venv.

    Called through `-c` rather than `-m model_archiver.model_packaging`, which makes runpy warn.
    """
    argv = [
        python,
        "-c",
        "from model_archiver.model_packaging import generate_model_archive as g; g()",
        "--model-name",
        model_name,
        "--version",
        "1.0",
        "--serialized-file",
        str(serialized_file),
        "--handler",
        str(handler),
        "--export-path",
        str(export_path),
        "--force",
    ]
    if extra_files:
        argv += ["--extra-files", ",".join(str(p) for p in extra_files)]
    return argv


def torchserve_argv(python: str, *, config_path: Path, model_store: Path, log_config: Path) -> list[str]:
    """The launcher in the foreground (it then waits for Java), so the whole tree shares our group.

    `--log-config` also makes the launcher drop any -Dlog4j.configurationFile from vmargs.
    """
    return [
        python,
        "-m",
        "ts.model_server",
        "--start",
        "--foreground",
        "--ts-config",
        str(config_path),
        "--model-store",
        str(model_store),
        "--log-config",
        str(log_config),
        "--ncs",
        "--disable-token-auth",
    ]


def server_env(base_env: Mapping[str, str], *, python: str, tmp_dir: Path, log_dir: Path) -> dict[str, str]:
    """Environment for the launcher: our venv first on PATH, private temp dir, logs in the run folder.

    The launcher passes `--python sys.executable` to Java, so workers use this interpreter; PATH is
    set too so nothing falls back to another `python`. TMPDIR holds the launcher's pid file, TEMP
    becomes java.io.tmpdir (worker sockets, unpacked archives): both private to this server.
    """
    env = {k: v for k, v in base_env.items() if not k.startswith("TS_")}  # TS_CONFIG_FILE beats --ts-config
    bin_dir = os.path.dirname(python)
    env["PATH"] = os.pathsep.join([bin_dir, *[p for p in base_env.get("PATH", "").split(os.pathsep) if p]])
    env["TMPDIR"] = str(tmp_dir)
    env["TEMP"] = str(tmp_dir)
    env["LOG_LOCATION"] = str(log_dir)
    env["METRICS_LOCATION"] = str(log_dir)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def socket_dir_fits(tmp_dir: Path) -> bool:
    """Whether TorchServe's worker sockets under `tmp_dir` stay within the AF_UNIX path limit."""
    return len(str(tmp_dir)) + len(_WORKER_SOCKET_SUFFIX) <= UNIX_SOCKET_PATH_MAX


def parse_java_major(version_text: str) -> int | None:
    """Major version from `java -version` output: '1.8.0_392' -> 8, '17.0.15' -> 17, '21' -> 21."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?[^"]*"', version_text)
    if not match:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2):
        return int(match.group(2))
    return major


def default_torch_threads(workers: int, cpu_count: int | None) -> int:
    """Split the CPUs between workers so that they do not oversubscribe the machine."""
    return max(1, (cpu_count or 1) // max(1, workers))


def handler_metadata(
    *,
    artifact_format: str,
    signature: Mapping[str, Any],
    torch_threads: int,
    inject_delay_ms: float = 0.0,
    log_level: str = "WARN",
    imports: list[str] | None = None,
) -> dict[str, Any]:
    """What the handler needs to know about the serialized file, shipped inside the archive:
    `signature` is `Signature.as_dict()` (inputs with name, shape, dtype; the output; the task);
    `imports` are modules to import before loading it (the artifact's `extra["imports"]`)."""
    return {
        "log_level": log_level,
        "format": artifact_format,
        "imports": list(imports or []),
        "signature": dict(signature),
        "torch_threads": torch_threads,
        "inject_delay_ms": inject_delay_ms,
    }
