"""TorchServe as a serving target: archive the exported file with our handler, start a private
loopback-only server in its own process group, wait until it answers, predict through HTTP."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import psutil
import requests

from harness.artifacts import ServedArtifact
from harness.baselines.fingerprint import package_version
from harness.errors import RunError, UserError, first_line
from harness.processes import ManagedProcess, free_port
from harness.scenario.schema import ServingSpec
from harness.serving.base import HttpEndpoint, Target
from harness.serving.listeners import check_listeners
from harness.serving.torchserve_config import (
    HANDLER_METADATA_FILE,
    JAVA_HINT,
    LOG_CONFIG_FILE,
    LOG_FILES,
    LOOPBACK,
    MIN_JAVA_MAJOR,
    TOKEN_AUTH_MODE,
    TorchServeOptions,
    TorchServePorts,
    archiver_argv,
    config_properties,
    default_torch_threads,
    effective_max_batch_delay_ms,
    handler_metadata,
    log4j2_config,
    parse_java_major,
    server_env,
    socket_dir_fits,
    torchserve_argv,
)

SUPPORTED_FORMATS = ("torch.export", "torchscript")
HANDLER_SOURCE = Path(__file__).with_name("torchserve_handler.py")
_PORT_CLASH = ("Address already in use", "BindException")


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


def _check_pyyaml() -> None:
    # TorchServe 0.12 imports yaml in its worker but does not declare the dependency
    import importlib.util

    if importlib.util.find_spec("yaml") is None:
        raise RunError(
            f"TorchServe needs PyYAML, which it does not declare: {sys.executable} -m pip install pyyaml"
        )


class TorchServeTarget(Target):
    """A private TorchServe for one artifact: loopback ports, logs and temp files in the run folder."""

    name: ClassVar[str] = "torchserve"

    def __init__(self, spec: ServingSpec, run_dir: Path) -> None:
        super().__init__(spec, run_dir)
        self.options = TorchServeOptions.from_options(spec.options)
        # absolute: TorchServe runs with the work dir as cwd and resolves relative paths against it
        self.work_dir = self.run_dir.resolve() / "torchserve"
        self.model_store = self.work_dir / "model-store"
        self.log_dir = self.work_dir / "logs"
        self.config_path = self.work_dir / "config.properties"
        self.log_config_path = self.work_dir / LOG_CONFIG_FILE
        self.console_log = self.log_dir / "torchserve-console.log"
        self.archiver_log = self.log_dir / "model-archiver.log"
        self.torch_threads = self.options.torch_threads or default_torch_threads(spec.workers, os.cpu_count())
        self.ports: TorchServePorts | None = None
        self.startup_s: float | None = None
        self.teardown_s: float | None = None
        self.server_model: dict[str, Any] = {}
        self._artifact: ServedArtifact | None = None
        self._java: tuple[str, str] | None = None
        self._process: ManagedProcess | None = None
        self._session: requests.Session | None = None
        self._tmp_dir: Path | None = None
        self._tmp_is_private_outside = False
        self._deadline = 0.0

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self, artifact: ServedArtifact) -> None:
        if self._process is not None:
            raise RunError("torchserve target already started; stop() it first")
        if artifact.format not in SUPPORTED_FORMATS:
            raise UserError(
                f"torchserve serves {' or '.join(SUPPORTED_FORMATS)} artifacts, not {artifact.format!r}"
            )
        if not Path(artifact.path).is_file():
            raise RunError(f"artifact file not found: {artifact.path}")
        started = time.monotonic()
        self._deadline = started + self.spec.startup_timeout_s
        self._java = find_java()
        _check_pyyaml()
        self._artifact = artifact
        try:
            tmp_dir = self._prepare_dirs()
            env = server_env(os.environ, python=sys.executable, tmp_dir=tmp_dir, log_dir=self.log_dir)
            self._archive(artifact, env)
            self._launch_with_port_retry(env)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - started

    def stop(self) -> None:
        began = time.monotonic()
        had_process = self._process is not None
        try:
            if self._session is not None:
                self._session.close()
                self._session = None
            if self._process is not None:
                self._process.stop()
        finally:
            # even when a second interrupt cuts the group stop short
            self._process = None
            self._kill_strays()
            if self._tmp_is_private_outside and self._tmp_dir is not None:
                shutil.rmtree(self._tmp_dir, ignore_errors=True)
                self._tmp_is_private_outside = False
        if had_process:
            self.teardown_s = time.monotonic() - began

    # ---- serving ---------------------------------------------------------------------------

    @property
    def endpoint(self) -> HttpEndpoint | None:
        if self.ports is None or self._process is None:
            return None
        return HttpEndpoint(base_url=f"http://{LOOPBACK}:{self.ports.inference}", path=self._predict_path)

    @property
    def server_metrics_url(self) -> str | None:
        # metrics_mode=prometheus in config.properties: the metrics API serves Prometheus text
        if self.ports is None or self._process is None:
            return None
        return f"http://{LOOPBACK}:{self.ports.metrics}/metrics"

    @property
    def server_metrics_format(self) -> str | None:
        return "torchserve"

    def died(self) -> RunError | None:
        process = self._process
        if process is None or process.is_alive():
            return None
        return RunError(
            f"torchserve exited (code {process.returncode}) while it was being measured",
            log=self.console_log,
            log_tail=process.log_tail(),
        )

    @property
    def server_pid(self) -> int | None:
        # the launcher: Java and the Python workers are its descendants
        return self._process.pid if self._process is not None else None

    @property
    def _predict_path(self) -> str:
        return f"/predictions/{self.options.model_name}"

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Labels for `batch`, posted to the server in chunks of `rows_per_request` rows."""
        if self._process is None or self.ports is None or self._artifact is None:
            raise RunError("torchserve target is not started")
        rows = np.asarray(batch, dtype=np.float32)
        if rows.size == 0:
            return np.zeros((0,), dtype=np.int64)
        if rows.ndim == len(self._artifact.input_shape):
            rows = rows[np.newaxis]
        rows = rows.reshape(rows.shape[0], -1)
        step = self.options.rows_per_request
        labels: list[int] = []
        for begin in range(0, rows.shape[0], step):
            chunk = rows[begin : begin + step]
            labels.extend(self._post(chunk.tolist(), timeout_s=self.options.response_timeout_s + 10))
        return np.asarray(labels, dtype=np.int64)

    def _post(self, instances: list[Any], *, timeout_s: float) -> list[int]:
        assert self.ports is not None
        url = f"http://{LOOPBACK}:{self.ports.inference}{self._predict_path}"
        try:
            resp = self._http().post(url, json={"instances": instances}, timeout=timeout_s)
        except requests.RequestException as exc:
            raise RunError(f"torchserve request failed: {first_line(exc)}", log=self.console_log) from exc
        if resp.status_code != 200:
            raise RunError(f"torchserve answered HTTP {resp.status_code}: {resp.text[:300]}")
        try:
            predictions = resp.json()["predictions"]
            labels = [int(p) for p in predictions]
        except (ValueError, KeyError, TypeError) as exc:
            raise RunError(f"torchserve answered an unexpected body: {resp.text[:300]}") from exc
        if len(labels) != len(instances):
            raise RunError(f"torchserve returned {len(labels)} predictions for {len(instances)} instances")
        return labels

    def _http(self) -> requests.Session:
        if self._session is None:
            self._session = requests.Session()
            self._session.trust_env = False  # never route loopback traffic through an HTTP(S)_PROXY
        return self._session

    def describe(self) -> dict[str, Any]:
        ports = self.ports.as_dict() if self.ports else {}
        return {
            "target": self.name,
            "torchserve_version": package_version("torchserve"),
            "model_archiver_version": package_version("torch-model-archiver"),
            "java": self._java[0] if self._java else None,
            "java_version": self._java[1] if self._java else None,
            "python": sys.executable,
            "bind_address": LOOPBACK,
            "ports": ports,
            "inference_url": f"http://{LOOPBACK}:{ports['inference']}" if ports else None,
            "management_url": f"http://{LOOPBACK}:{ports['management']}" if ports else None,
            "metrics_url": f"http://{LOOPBACK}:{ports['metrics']}/metrics" if ports else None,
            "model_name": self.options.model_name,
            "artifact_format": self._artifact.format if self._artifact else None,
            "workers": self.spec.workers,
            "batch_size": self.spec.batch_size,
            "max_batch_delay_ms": effective_max_batch_delay_ms(self.spec.max_batch_delay_ms),
            "max_batch_delay_ms_requested": self.spec.max_batch_delay_ms,
            "server_reported": dict(self.server_model),
            "torch_threads_per_worker": self.torch_threads,
            "inject_delay_ms": self.options.inject_delay_ms or None,
            "rows_per_request": self.options.rows_per_request,
            "token_auth": TOKEN_AUTH_MODE,
            "startup_s": self.startup_s,
            "teardown_s": self.teardown_s,
            "config_path": str(self.config_path),
            "log_level": self.spec.log_level,
            "log_bytes": self.log_bytes(),
            "logs": {
                "console": str(self.console_log),
                "ts_log": str(self.log_dir / "ts_log.log"),
                "model_log": str(self.log_dir / "model_log.log"),
                "access_log": str(self.log_dir / "access_log.log"),
                "archiver": str(self.archiver_log),
            },
        }

    def log_bytes(self) -> int:
        """Total size of the server's log files so far (console, frontend, model, access, metrics)."""
        paths = [*self.log_dir.glob("torchserve-console*.log"), *(self.log_dir / n for n in LOG_FILES)]
        total = 0
        for path in paths:
            with contextlib.suppress(OSError):
                total += path.stat().st_size
        return total

    # ---- start-up steps --------------------------------------------------------------------

    def _prepare_dirs(self) -> Path:
        """Create the run folders; return the private temp dir (pid file, worker sockets, unpacked .mar)."""
        for d in (self.model_store, self.log_dir):
            d.mkdir(parents=True, exist_ok=True)
        tmp_dir = self.work_dir / "tmp"
        if socket_dir_fits(tmp_dir):
            tmp_dir.mkdir(parents=True, exist_ok=True)
            self._tmp_dir, self._tmp_is_private_outside = tmp_dir, False
        else:
            # a deep run folder would push the worker sockets past the AF_UNIX path limit
            self._tmp_dir = Path(tempfile.mkdtemp(prefix="harness-ts-"))
            self._tmp_is_private_outside = True
        return self._tmp_dir

    def _archive(self, artifact: ServedArtifact, env: dict[str, str]) -> None:
        build = self.work_dir / "archive-inputs"
        build.mkdir(parents=True, exist_ok=True)
        meta = build / HANDLER_METADATA_FILE
        meta.write_text(
            json.dumps(
                handler_metadata(
                    artifact_format=artifact.format,
                    input_shape=tuple(artifact.input_shape),
                    num_classes=artifact.num_classes,
                    torch_threads=self.torch_threads,
                    inject_delay_ms=self.options.inject_delay_ms,
                    log_level=self.spec.log_level,
                ),
                indent=2,
            )
        )
        argv = archiver_argv(
            sys.executable,
            model_name=self.options.model_name,
            serialized_file=Path(artifact.path).resolve(),
            handler=HANDLER_SOURCE,
            extra_files=[meta],
            export_path=self.model_store,
        )
        with open(self.archiver_log, "ab") as log:
            try:
                done = subprocess.run(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self.work_dir,
                    timeout=self._remaining_s(),
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise RunError(
                    f"torch-model-archiver did not finish within startup_timeout_s; log {self.archiver_log}"
                ) from exc
        if done.returncode != 0 or not (self.model_store / self._mar_name).is_file():
            tail = "\n".join(self.archiver_log.read_text(errors="replace").splitlines()[-20:])
            raise RunError(
                f"torch-model-archiver failed (exit {done.returncode})", log=self.archiver_log, log_tail=tail
            )

    @property
    def _mar_name(self) -> str:
        return f"{self.options.model_name}.mar"

    def _launch_with_port_retry(self, env: dict[str, str]) -> None:
        # free_port() can race with another process; one retry with fresh ports covers that
        for attempt in range(2):
            self._launch(env)
            try:
                self._await_ready()
                return
            except RunError as exc:
                clash = any(marker in f"{exc}\n{exc.log_tail}" for marker in _PORT_CLASH)
                if attempt == 0 and clash:
                    assert self._process is not None
                    self._process.stop()
                    self._process = None
                    continue
                raise

    def _remaining_s(self) -> float:
        """Seconds left of startup_timeout_s, which bounds the whole of start()."""
        return max(1.0, self._deadline - time.monotonic())

    def _rotate_console_log(self) -> None:
        # the readiness probe scans the console log for fatal lines: each launch starts a fresh one
        if self.console_log.exists() and self.console_log.stat().st_size:
            n = 1
            while self.console_log.with_suffix(f".{n}.log").exists():
                n += 1
            self.console_log.rename(self.console_log.with_suffix(f".{n}.log"))

    def _launch(self, env: dict[str, str]) -> None:
        self._rotate_console_log()
        self.ports = TorchServePorts.pick(free_port)
        self.config_path.write_text(
            config_properties(
                ports=self.ports,
                model_store=self.model_store,
                model_name=self.options.model_name,
                mar_name=self._mar_name,
                workers=self.spec.workers,
                batch_size=self.spec.batch_size,
                max_batch_delay_ms=self.spec.max_batch_delay_ms,
                options=self.options,
            )
        )
        self.log_config_path.write_text(log4j2_config(self.spec.log_level, self.log_dir))
        argv = torchserve_argv(
            sys.executable,
            config_path=self.config_path,
            model_store=self.model_store,
            log_config=self.log_config_path,
        )
        self._process = ManagedProcess(argv, self.console_log, name="torchserve", env=env, cwd=self.work_dir)
        self._process.start()

    def _await_ready(self) -> None:
        assert self._process is not None
        assert self._artifact is not None
        self._process.wait_until(self._workers_ready, timeout_s=self._remaining_s())
        self._check_listeners()
        self._check_batching_took_effect()
        zeros = np.zeros((1, *self._artifact.input_shape), dtype=np.float32)
        try:
            labels = self._post(zeros.reshape(1, -1).tolist(), timeout_s=self._remaining_s())
        except RunError as exc:
            raise RunError(
                f"torchserve is up but the known-good prediction failed: {first_line(exc)}",
                log=self.console_log,
                log_tail=self._process.log_tail(),
            ) from exc
        if not 0 <= labels[0] < max(1, self._artifact.num_classes):
            raise RunError(
                f"torchserve predicted label {labels[0]} for zeros; "
                f"expected 0..{self._artifact.num_classes - 1}"
            )

    def _check_listeners(self) -> None:
        """RunError unless every listening socket of the tree is one of our five on 127.0.0.1."""
        assert self._process is not None
        assert self._process.pid is not None
        assert self.ports is not None
        check_listeners(
            "torchserve", self._process.pid, address=LOOPBACK, ports=self.ports.as_dict().values()
        )

    def _workers_ready(self) -> bool:
        """Ping is healthy and all `workers` of our model report READY in the management API."""
        assert self.ports is not None
        http = self._http()
        ping = http.get(f"http://{LOOPBACK}:{self.ports.inference}/ping", timeout=2)
        if ping.status_code != 200 or ping.json().get("status") != "Healthy":
            return False
        described = self._describe_model()
        ready = [w for w in described.get("workers", []) if w.get("status") == "READY"]
        return len(ready) >= self.spec.workers

    def _describe_model(self) -> dict[str, Any]:
        assert self.ports is not None
        url = f"http://{LOOPBACK}:{self.ports.management}/models/{self.options.model_name}"
        resp = self._http().get(url, timeout=2)
        resp.raise_for_status()
        body = resp.json()
        return dict(body[0]) if isinstance(body, list) and body else {}

    def _check_batching_took_effect(self) -> None:
        described = self._describe_model()
        keys = ("modelVersion", "batchSize", "maxBatchDelay", "minWorkers", "maxWorkers", "responseTimeout")
        self.server_model = {key: described.get(key) for key in keys}
        expected = {
            "batchSize": self.spec.batch_size,
            "maxBatchDelay": effective_max_batch_delay_ms(self.spec.max_batch_delay_ms),
            "minWorkers": self.spec.workers,
        }
        wrong = {
            k: (v, self.server_model.get(k)) for k, v in expected.items() if self.server_model.get(k) != v
        }
        if wrong:
            detail = ", ".join(f"{k}: wanted {want}, server has {got}" for k, (want, got) in wrong.items())
            raise RunError(
                f"torchserve did not apply the serving settings ({detail}); config {self.config_path}"
            )

    # ---- teardown safety net ---------------------------------------------------------------

    def _kill_strays(self) -> None:
        """Kill any java/python process still naming our run folder (config, store or private temp dir).

        The group kill normally leaves nothing; this catches a process that escaped the group.
        """
        markers = [str(self.work_dir) + os.sep]
        if self._tmp_dir is not None:
            markers.append(str(self._tmp_dir) + os.sep)
        me = os.getpid()
        strays = []
        for proc in psutil.process_iter(["pid", "name", "cmdline"]):
            name = (proc.info.get("name") or "").lower()
            if proc.info["pid"] == me or not (name.startswith("java") or name.startswith("python")):
                continue
            cmdline = " ".join(proc.info.get("cmdline") or [])
            if any(m in cmdline for m in markers):
                strays.append(proc)
        for proc in strays:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGKILL)
        psutil.wait_procs(strays, timeout=5)
