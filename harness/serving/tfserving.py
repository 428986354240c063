"""TF Serving as a serving target: the real tensorflow_model_server, run from a binary, in docker,
or already running elsewhere (`serving.options.mode`).

The artifact is laid out as a numbered version folder with model, monitoring and batching config
files (tfserving_launch); readiness is the model status API reporting AVAILABLE plus one known-good
prediction; predict() goes over REST (default; row or columnar JSON, `rest_format`) or gRPC
(tfserving_grpc: raw tensor bytes, for large inputs). Load from Locust always uses the REST
predict API, with bodies encoded once before it starts. Input names on the wire are the server's
(its metadata), which for a one-input model may differ from the data's name. For a TFLite file
with integer I/O (tf.ptq io uint8) every request path quantizes the float data to the file's
dtype with the scale and zero point the artifact records, and dequantizes the integer replies
(harness.serving.quantized_io), so the wire carries uint8 pixels like a real client's.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import requests

from harness.artifacts import ServedArtifact
from harness.data.tensors import Batch, TensorSpec, batch_len, batch_slice
from harness.errors import RunError, UserError, first_line
from harness.scenario.schema import ServingSpec
from harness.serving.base import EncodedRequests, HttpEndpoint, Target
from harness.serving.payloads import (
    RequestEncoder,
    as_output_rows,
    encode_requests,
    make_encoder,
    model_batch,
    tfserving_output_path,
    tfserving_rows,
)
from harness.serving.quantized_io import WireQuantization
from harness.serving.tfserving_config import (
    BIND_ADDRESS,
    MODEL_VERSION,
    PROMETHEUS_PATH,
    SUPPORTED_FORMATS,
    TfServingOptions,
    model_state,
    signature_keys,
)
from harness.serving.tfserving_grpc import TfServingGrpcClient
from harness.serving.tfserving_launch import (
    PORT_CLASH_MARKERS,
    Runner,
    TfServingProcess,
    layout_model,
    run_command,
    unavailable_reason,
)


class TfServingTarget(Target):
    """The real TF Serving for one artifact; logs, configs and the model folder in the run folder."""

    name: ClassVar[str] = "tfserving"

    def __init__(
        self,
        spec: ServingSpec,
        run_dir: Path,
        *,
        scenario_dir: Path | None = None,
        runner: Runner | None = None,
        cpus: Sequence[int] | None = None,
    ) -> None:
        super().__init__(spec, run_dir, scenario_dir=scenario_dir, cpus=cpus)
        self.options = TfServingOptions.from_options(spec.options)
        self._runner: Runner = runner or run_command
        self.work_dir = self.run_dir.resolve() / "tfserving"
        self.server: TfServingProcess | None = None
        if self.options.mode != "remote":
            self.server = TfServingProcess(self.options, spec, self.work_dir, self._runner, cpus=self.cpus)
        self.signature: dict[str, list[str]] = {}
        self.prometheus_answered: bool | None = None
        self.startup_s: float | None = None
        self.teardown_s: float | None = None
        self._artifact: ServedArtifact | None = None
        self._base_url: str | None = None
        self._session: requests.Session | None = None
        self._grpc: Any = None  # TfServingGrpcClient, imported with TensorFlow on first gRPC use
        self._wire_inputs: tuple[
            TensorSpec, ...
        ] = ()  # the artifact's inputs, named as the server names them
        self._output_name: str | None = None
        # an integer-I/O TFLite file: requests carry its quantized dtypes, replies are dequantized
        self._quantization = WireQuantization()
        self._rest: RequestEncoder | None = None
        self._last_status = "no answer yet"
        self._deadline = 0.0

    @classmethod
    def server_location(cls, spec: ServingSpec) -> str:
        return "remote" if TfServingOptions.from_options(spec.options).mode == "remote" else "local"

    @classmethod
    def unavailable_reason(cls, spec: ServingSpec, *, runner: Runner | None = None) -> str | None:
        """None when the configured mode can run here, else one line saying what is missing."""
        return unavailable_reason(TfServingOptions.from_options(spec.options), runner or run_command)

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self, artifact: ServedArtifact) -> None:
        if self._base_url is not None:
            raise RunError("tfserving target already started; stop() it first")
        if artifact.format not in SUPPORTED_FORMATS:
            raise UserError(
                f"tfserving serves {' or '.join(SUPPORTED_FORMATS)} artifacts, not {artifact.format!r}"
            )
        quantization = WireQuantization.from_extra(artifact.extra)
        problem = _wire_dtype_problem(artifact, quantization)
        if problem:
            raise UserError(f"tfserving: {problem}")
        signature = artifact.extra.get("signature")
        if signature not in (None, "serving_default"):
            raise UserError(
                f"tfserving: requests without a signature_name (Locust's) use serving_default, but "
                f"{Path(artifact.path).name} serves {signature!r}"
            )
        reason = self.unavailable_reason(self.spec, runner=self._runner)
        if reason:
            raise UserError(reason)
        started = time.monotonic()
        self._deadline = started + self.spec.startup_timeout_s
        self._artifact = artifact
        self._quantization = quantization
        try:
            if self.server is None:
                self._base_url = self.options.url
                self._poll_remote()
            else:
                layout_model(artifact, self.server.models_root, self.options.model_name)
                self._launch_with_port_retry(self.server)
            self._check_served()
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - started

    def stop(self) -> None:
        began = time.monotonic()
        had_server = self.server is not None and (self.server.process or self.server.container) is not None
        try:
            if self._session is not None:
                self._session.close()
            if self._grpc is not None:
                self._grpc.close()
            if self.server is not None:
                self.server.stop()
        finally:
            self._session = None
            self._grpc = None
            self._base_url = None
        if had_server:
            self.teardown_s = time.monotonic() - began

    def _remaining_s(self) -> float:
        """Seconds left of startup_timeout_s, which bounds the whole of start()."""
        return max(1.0, self._deadline - time.monotonic())

    def _launch_with_port_retry(self, server: TfServingProcess) -> None:
        # free_port() can race with another process; one retry with fresh ports covers that
        prefer_tflite = self._artifact is not None and self._artifact.format == "tflite"
        for attempt in range(2):
            server.launch(prefer_tflite=prefer_tflite, remaining_s=self._remaining_s)
            self._base_url = server.base_url
            assert server.process is not None
            try:
                server.process.wait_until(self._status_settled, timeout_s=self._remaining_s())
                return
            except RunError as exc:
                if attempt == 0 and any(marker in f"{exc}\n{exc.log_tail}" for marker in PORT_CLASH_MARKERS):
                    server.stop()
                    continue
                raise RunError(
                    f"{exc}; last model status: {self._last_status}", log=exc.log, log_tail=exc.log_tail
                ) from exc

    # ---- readiness -------------------------------------------------------------------------

    def _status_settled(self) -> bool:
        """The model status API reports AVAILABLE, or a failed load (END with an error)."""
        resp = self._http().get(f"{self._base_url}/v1/models/{self.options.model_name}", timeout=2)
        if resp.status_code == 404:  # "Could not find any versions of model ..." while loading
            self._last_status = f"HTTP 404: {resp.text[:200]}"
            return False
        state, error = model_state(resp.json())
        self._last_status = f"{state} {error}".strip()
        return state == "AVAILABLE" or (state == "END" and bool(error))

    def _poll_remote(self) -> None:
        """No process to watch: poll the status API until it settles or the deadline passes."""
        while True:
            try:
                if self._status_settled():
                    return
            except (requests.RequestException, ValueError) as exc:
                self._last_status = f"{type(exc).__name__}: {exc}"[:200]
            if time.monotonic() > self._deadline:
                raise RunError(
                    f"tfserving at {self._base_url} has no AVAILABLE version of model "
                    f"{self.options.model_name!r} after {self.spec.startup_timeout_s:.0f}s; "
                    f"last: {self._last_status}"
                )
            time.sleep(0.25)

    def _check_served(self) -> None:
        """A settled status must be AVAILABLE; then read the signature, predict zeros, probe metrics."""
        assert self._artifact is not None
        where = f"log {self.server.log_path}" if self.server is not None else f"server {self._base_url}"
        if not self._last_status.startswith("AVAILABLE"):
            name = self.options.model_name
            raise RunError(f"tfserving could not load model {name!r}: {self._last_status}; {where}")
        with contextlib.suppress(requests.RequestException, ValueError, KeyError, TypeError):
            url = f"{self._base_url}/v1/models/{self.options.model_name}/metadata"
            inputs, outputs = signature_keys(self._http().get(url, timeout=10).json())
            self.signature = {"inputs": inputs, "outputs": outputs}
        self._settle_names(self._artifact)
        signature = self._artifact.signature
        zeros = {spec.name: np.zeros((1, *spec.shape), dtype=spec.dtype) for spec in signature.inputs}
        try:
            answer = self._predict_chunk(zeros, 1, timeout_s=self._remaining_s())
        except RunError as exc:
            raise RunError(
                f"tfserving is up but the known-good prediction failed: {first_line(exc)}; {where}",
                log=exc.log,
                log_tail=exc.log_tail,
            ) from exc
        if not np.all(np.isfinite(answer)):
            raise RunError(f"tfserving answered non-finite outputs for an example of zeros; {where}")
        metrics_url = self.server_metrics_url
        if metrics_url is not None:
            with contextlib.suppress(requests.RequestException):
                self.prometheus_answered = self._http().get(metrics_url, timeout=5).status_code == 200

    # ---- serving ---------------------------------------------------------------------------

    @property
    def endpoint(self) -> HttpEndpoint | None:
        if self._base_url is None:
            return None
        return HttpEndpoint(base_url=self._base_url, path=f"/v1/models/{self.options.model_name}:predict")

    @property
    def server_metrics_url(self) -> str | None:
        """TF Serving's Prometheus page (enabled by our monitoring config); unknown for a remote server."""
        if self._base_url is None or self.server is None:
            return None
        return f"{self._base_url}{PROMETHEUS_PATH}"

    @property
    def server_metrics_format(self) -> str:
        return "tfserving"

    def died(self) -> RunError | None:
        process = self.server.process if self.server is not None else None
        if process is None or process.is_alive():
            return None
        assert self.server is not None
        return RunError(
            f"tfserving exited (code {process.returncode}) while it was being measured",
            log=self.server.log_path,
            log_tail=process.log_tail(),
        )

    @property
    def server_pid(self) -> int | None:
        return self.server.pid() if self.server is not None else None

    def _settle_names(self, artifact: ServedArtifact) -> None:
        """Input and output names as the server knows them (its metadata wins where it is known)."""
        inputs = self._quantization.wire_specs(artifact.signature.inputs)  # dtypes on the wire
        served = self.signature.get("inputs") or []
        if len(inputs) == 1 and len(served) == 1:
            # one input: the data's name need not be the SavedModel's ("inputs" vs "input_1")
            self._wire_inputs = (TensorSpec(served[0], inputs[0].shape, inputs[0].dtype),)
        else:
            if served and sorted(served) != sorted(s.name for s in inputs):
                raise UserError(
                    f"tfserving serves inputs {served} but the model's signature has "
                    f"{artifact.signature.describe_inputs()}"
                )
            self._wire_inputs = inputs
        outputs = self.signature.get("outputs") or []
        self._output_name = artifact.extra.get("output_name") or (outputs[0] if len(outputs) == 1 else None)
        json_format = "columnar" if self.options.rest_format == "columnar" else "instances"
        self._rest = make_encoder(self._wire_inputs, "json", json_format=json_format)

    def _to_wire(self, batch: Batch) -> dict[str, np.ndarray]:
        """The batch (signature names and dtypes) as the server takes it: its input names, and
        quantized floats for an integer-I/O file. Every request path goes through here."""
        assert self._artifact is not None
        inputs = self._artifact.signature.inputs
        quantized = self._quantization.to_wire(batch, inputs)
        return {wire.name: quantized[spec.name] for wire, spec in zip(self._wire_inputs, inputs, strict=True)}

    def _from_wire(self, values: np.ndarray) -> np.ndarray:
        """Output rows as the server sent them (integers for an integer-I/O file) as float32 scores."""
        return self._quantization.from_wire(values, self._output_name)

    def predict(self, batch: Batch) -> np.ndarray:
        """The model's outputs for `batch`, sent in chunks over the configured protocol:
        float32 (n, signature.output.width)."""
        if self._base_url is None or self._artifact is None:
            raise RunError("tfserving target is not started")
        batch = model_batch(batch, self._artifact.signature.inputs)
        total = batch_len(batch)
        step = self.options.rows_per_request
        if self.spec.batch_size > 1 and self.server is not None:
            # with batching on, TF Serving rejects a request of more rows than max_batch_size
            step = min(step, self.spec.batch_size)
        parts = [np.zeros((0, self._artifact.signature.output.width), dtype=np.float32)]
        for begin in range(0, total, step):
            chunk = batch_slice(batch, begin, begin + step)
            rows = min(step, total - begin)
            parts.append(self._predict_chunk(chunk, rows, timeout_s=self.options.request_timeout_s + 10))
        return np.concatenate(parts)

    def encode_requests(self, batch: Batch, rows_per_request: int) -> EncodedRequests:
        """REST bodies in `rest_format` for the load (Locust speaks REST only), each with
        `rows_per_request` examples."""
        if self._base_url is None or self._artifact is None or self._rest is None:
            raise RunError("tfserving target is not started")
        multi_output = len(self.signature.get("outputs") or []) > 1
        return encode_requests(
            self._rest,
            self._to_wire(model_batch(batch, self._artifact.signature.inputs)),
            rows_per_request,
            output_path=tfserving_output_path(self.options.rest_format, self._output_name, multi_output),
            output_width=self._artifact.signature.output.width,
        )

    def _predict_chunk(self, batch: Batch, rows: int, *, timeout_s: float) -> np.ndarray:
        assert self._artifact is not None
        assert self._rest is not None
        width = self._artifact.signature.output.width
        if self.options.protocol == "grpc":
            return self._predict_grpc(batch, rows, width, timeout_s=timeout_s)
        url = f"{self._base_url}/v1/models/{self.options.model_name}:predict"
        body = self._rest.encode(self._to_wire(batch))
        headers = {"Content-Type": self._rest.content_type}
        try:
            resp = self._http().post(url, data=body, headers=headers, timeout=timeout_s)
        except requests.RequestException as exc:
            raise RunError(f"tfserving request failed: {exc}") from exc
        if resp.status_code != 200:
            raise RunError(f"tfserving answered HTTP {resp.status_code}: {resp.text[:300]}")
        try:
            return self._from_wire(
                tfserving_rows(
                    resp.json(),
                    rest_format=self.options.rest_format,
                    output_name=self._output_name,
                    rows=rows,
                    width=width,
                )
            )
        except ValueError as exc:
            raise RunError(f"tfserving answered an unexpected body ({exc}): {resp.text[:300]}") from exc

    def _predict_grpc(self, batch: Batch, rows: int, width: int, *, timeout_s: float) -> np.ndarray:
        if self._grpc is None:
            target = self.server.grpc_target if self.server is not None else self.options.remote_grpc
            self._grpc = TfServingGrpcClient(target or "", model_name=self.options.model_name)
        values = self._grpc.predict(self._to_wire(batch), output_name=self._output_name, timeout_s=timeout_s)
        try:
            return self._from_wire(as_output_rows(values, rows=rows, width=width))
        except ValueError as exc:
            raise RunError(f"tfserving gRPC answer: {exc}") from exc

    def _http(self) -> requests.Session:
        if self._session is None:
            self._session = requests.Session()
            self._session.trust_env = False  # never route loopback traffic through an HTTP(S)_PROXY
        return self._session

    def describe(self) -> dict[str, Any]:
        mode, server = self.options.mode, self.server
        tflite = self._artifact is not None and self._artifact.format == "tflite"
        facts: dict[str, Any] = {
            "target": self.name,
            "mode": mode,
            "model_name": self.options.model_name,
            "artifact_format": self._artifact.format if self._artifact else None,
            "bind_address": BIND_ADDRESS[mode],
            "protocol": {
                "predict": self.options.protocol,
                "load": "rest (Locust posts to the REST predict API)",
                "rest_format": self.options.rest_format,
            },
            "wire_inputs": [spec.describe() for spec in self._wire_inputs],
            **self._quantization.as_extra(),
            "output_name": self._output_name,
            "signature": dict(self.signature),
            "prometheus_path": PROMETHEUS_PATH if server is not None else None,
            "prometheus_answered": self.prometheus_answered,
            "extra_flags": list(self.options.extra_flags),
            "startup_s": self.startup_s,
            "teardown_s": self.teardown_s,
        }
        if server is None:
            facts.update(
                rest_url=self.options.url,
                grpc=self.options.remote_grpc,
                model_layout="remote: the harness assumes the server at url serves this artifact",
            )
            return facts
        version_dir = f"{server.models_root}/{self.options.model_name}/{MODEL_VERSION}/"
        facts.update(server.facts())
        facts.update(
            rest_url=server.base_url,
            model_layout=version_dir
            + ("model.tflite (--prefer_tflite_model=true)" if tflite else "SavedModel"),
            batching={"enabled": True, **server.batching_params()} if server.batching else {"enabled": False},
        )
        return facts


def _wire_dtype_problem(artifact: ServedArtifact, quantization: WireQuantization) -> str | None:
    """Why requests built from the signature would not match the file's input dtypes, or None.

    A file input whose dtype differs from the signature's (int8 in the file, float32 data) is
    fine when the artifact records its scale and zero point: the client quantizes."""
    inputs = artifact.signature.inputs
    declared: dict[str, str] = dict(artifact.extra.get("input_dtypes") or {})
    if len(inputs) == 1 and artifact.extra.get("input_dtype") is not None:
        declared = {inputs[0].name: str(artifact.extra["input_dtype"])}
    for i, spec in enumerate(inputs):
        file_dtype = declared.get(spec.name)
        quantized = quantization.input_for(spec.name, i, len(inputs))
        wire = quantized.dtype if quantized is not None else spec.dtype
        if file_dtype is not None and file_dtype != wire:
            return (
                f"{Path(artifact.path).name} takes {file_dtype} input but its signature says "
                f"{spec.describe()}, with no scale and zero point recorded to convert: requests would "
                "carry the wrong type"
            )
    return None
