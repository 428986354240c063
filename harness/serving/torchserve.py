"""TorchServe as a serving target: archive the exported file with our handler (or the user's, or
take the user's whole .mar), start a private loopback-only server in its own process group, wait
until it answers, predict through HTTP in the request format of serving.options (payloads.py)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import psutil
import requests

from harness.artifacts import ServedArtifact
from harness.baselines.fingerprint import package_version
from harness.data.tensors import Batch, batch_len, batch_slice
from harness.errors import RunError, UserError, first_line
from harness.processes import ManagedProcess, free_port
from harness.scenario.schema import ServingSpec
from harness.serving.base import EncodedRequests, HttpEndpoint, Target
from harness.serving.listeners import check_listeners
from harness.serving.payloads import RequestEncoder, encode_requests, make_encoder, model_batch, rows_at_path
from harness.serving.torchserve_config import (
    LOG_CONFIG_FILE,
    LOG_FILES,
    LOOPBACK,
    TOKEN_AUTH_MODE,
    TorchServeOptions,
    TorchServePorts,
    config_properties,
    default_torch_threads,
    effective_max_batch_delay_ms,
    handler_metadata,
    log4j2_config,
    server_env,
    socket_dir_fits,
    torchserve_argv,
)
from harness.serving.torchserve_setup import HANDLER_SOURCE, build_archive, check_pyyaml, find_java

SUPPORTED_FORMATS = ("torch.export", "torchscript")
_PORT_CLASH = ("Address already in use", "BindException")


class TorchServeTarget(Target):
    """A private TorchServe for one artifact: loopback ports, logs and temp files in the run folder."""

    name: ClassVar[str] = "torchserve"

    def __init__(
        self,
        spec: ServingSpec,
        run_dir: Path,
        *,
        scenario_dir: Path | None = None,
        cpus: Sequence[int] | None = None,
    ) -> None:
        super().__init__(spec, run_dir, scenario_dir=scenario_dir, cpus=cpus)
        self.options = TorchServeOptions.from_options(spec.options)
        # absolute: TorchServe runs with the work dir as cwd and resolves relative paths against it
        self.work_dir = self.run_dir.resolve() / "torchserve"
        self.model_store = self.work_dir / "model-store"
        self.log_dir = self.work_dir / "logs"
        self.config_path = self.work_dir / "config.properties"
        self.log_config_path = self.work_dir / LOG_CONFIG_FILE
        self.console_log = self.log_dir / "torchserve-console.log"
        self.archiver_log = self.log_dir / "model-archiver.log"
        cpu_count = len(self.cpus) if self.cpus is not None else os.cpu_count()
        self.torch_threads = self.options.torch_threads or default_torch_threads(spec.workers, cpu_count)
        self.ports: TorchServePorts | None = None
        self.startup_s: float | None = None
        self.teardown_s: float | None = None
        self.server_model: dict[str, Any] = {}
        self._artifact: ServedArtifact | None = None
        self._encoder: RequestEncoder | None = None
        self._user_file: Path | None = None  # the user's handler or archive, resolved at start
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
        # a user's archive holds its own model: the artifact only lends its signature
        if not self.options.archive and artifact.format not in SUPPORTED_FORMATS:
            raise UserError(
                f"torchserve serves {' or '.join(SUPPORTED_FORMATS)} artifacts, not {artifact.format!r}"
            )
        self._user_file = self.options.user_file(self.scenario_dir)
        if not self.options.archive and not Path(artifact.path).is_file():
            raise RunError(f"artifact file not found: {artifact.path}")
        self._encoder = self._make_encoder(artifact)
        started = time.monotonic()
        self._deadline = started + self.spec.startup_timeout_s
        self._java = find_java()
        check_pyyaml()
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

    def _make_encoder(self, artifact: ServedArtifact) -> RequestEncoder:
        try:
            return make_encoder(
                artifact.signature.inputs,
                self.options.encoding,
                template=self.options.request_template,
                content_type=self.options.content_type,
            )
        except ValueError as exc:
            raise UserError(f"serving.options.{exc}") from None

    def _started(self) -> tuple[ServedArtifact, RequestEncoder]:
        if self._process is None or self.ports is None or self._artifact is None or self._encoder is None:
            raise RunError("torchserve target is not started")
        return self._artifact, self._encoder

    def predict(self, batch: Batch) -> np.ndarray:
        """The model's outputs for `batch`, posted in chunks of `rows_per_request` rows:
        float32 (n, signature.output.width), read at `output_path` of each response."""
        artifact, encoder = self._started()
        batch = model_batch(batch, artifact.signature.inputs)
        width = artifact.signature.output.width
        total = batch_len(batch)
        step = self.options.rows_per_request
        parts = [np.zeros((0, width), dtype=np.float32)]
        for begin in range(0, total, step):
            chunk = batch_slice(batch, begin, begin + step)
            rows = min(step, total - begin)
            parts.append(
                self._post(encoder.encode(chunk), rows, timeout_s=self.options.response_timeout_s + 10)
            )
        return np.concatenate(parts)

    def encode_requests(self, batch: Batch, rows_per_request: int) -> EncodedRequests:
        """The load's bodies in the same format predict() sends, each with `rows_per_request` examples."""
        artifact, encoder = self._started()
        return encode_requests(
            encoder,
            model_batch(batch, artifact.signature.inputs),
            rows_per_request,
            output_path=self.options.output_path,
            output_width=artifact.signature.output.width,
        )

    def _post(self, body: bytes, rows: int, *, timeout_s: float) -> np.ndarray:
        assert self.ports is not None
        assert self._artifact is not None
        assert self._encoder is not None
        url = f"http://{LOOPBACK}:{self.ports.inference}{self._predict_path}"
        headers = {"Content-Type": self._encoder.content_type}
        try:
            resp = self._http().post(url, data=body, headers=headers, timeout=timeout_s)
        except requests.RequestException as exc:
            raise RunError(f"torchserve request failed: {first_line(exc)}", log=self.console_log) from exc
        if resp.status_code != 200:
            raise RunError(f"torchserve answered HTTP {resp.status_code}: {resp.text[:300]}")
        try:
            return rows_at_path(
                resp.json(), self.options.output_path, rows=rows, width=self._artifact.signature.output.width
            )
        except ValueError as exc:
            raise RunError(f"torchserve answered an unexpected body ({exc}): {resp.text[:300]}") from exc

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
            "handler": str(self._user_file or self.options.handler)
            if self.options.handler
            else "harness (torchserve_handler.py)",
            "archive": str(self._user_file or self.options.archive) if self.options.archive else None,
            "request_encoding": self._encoder.encoding if self._encoder else self.options.encoding,
            "request_content_type": self._encoder.content_type if self._encoder else None,
            "output_path": self.options.output_path,
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
        if self.options.archive:
            assert self._user_file is not None
            # served as it is, under our file name: load_models registers it as model_name
            shutil.copyfile(self._user_file, self.model_store / self._mar_name)
            return
        meta = handler_metadata(
            artifact_format=artifact.format,
            signature=artifact.signature.as_dict(),
            torch_threads=self.torch_threads,
            inject_delay_ms=self.options.inject_delay_ms,
            log_level=self.spec.log_level,
            imports=list(artifact.extra.get("imports") or []),
        )
        build_archive(
            artifact,
            meta,
            model_name=self.options.model_name,
            handler=self._user_file or HANDLER_SOURCE,
            work_dir=self.work_dir,
            model_store=self.model_store,
            log_path=self.archiver_log,
            env=env,
            timeout_s=self._remaining_s(),
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
        self._process = ManagedProcess(
            argv, self.console_log, name="torchserve", env=env, cwd=self.work_dir, cpus=self.cpus
        )
        self._process.start()

    def _await_ready(self) -> None:
        assert self._process is not None
        assert self._artifact is not None
        self._process.wait_until(self._workers_ready, timeout_s=self._remaining_s())
        self._check_listeners()
        self._check_batching_took_effect()
        assert self._encoder is not None
        signature = self._artifact.signature
        zeros = {spec.name: np.zeros((1, *spec.shape), dtype=spec.dtype) for spec in signature.inputs}
        try:
            outputs = self._post(self._encoder.encode(zeros), 1, timeout_s=self._remaining_s())
        except RunError as exc:
            raise RunError(
                f"torchserve is up but the known-good prediction failed: {first_line(exc)}",
                log=self.console_log,
                log_tail=self._process.log_tail(),
            ) from exc
        if not np.all(np.isfinite(outputs)):
            raise RunError(
                f"torchserve answered non-finite outputs {outputs[0].tolist()[:8]} for an example of zeros "
                f"({signature.describe_inputs()})"
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
