"""Drive an HTTP endpoint with the native load engine (`load.generator: native`).

Locust's per-request path costs about 200 us of client CPU per request on a 2-core VM, enough
to slow the server it shares the machine with (issue 13's measurements, README "Load
fidelity"). The native engine is one C process (harness/load/native/harness_load.c): epoll,
keep-alive sockets, whole HTTP requests prepared here and sent verbatim. It speaks the same
file protocol as the packaged locustfile (started file, samples CSV flushed while it runs, stop
file, meta file), so LocustDriver's watch, window cut, CPU sampling, placement and result are
shared; only the launch differs. It is one process: Locust's workers, remote workers and https
stay with generator: locust.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from contextlib import ExitStack
from urllib.parse import urlsplit

from harness.errors import RunError, UserError
from harness.load.interleave import Interleave
from harness.load.locust_driver import SAFETY_MARGIN_S, LocustDriver, write_bodies
from harness.load.locust_watch import FLUSH_S, LocustRunFiles
from harness.load.native_build import native_binary
from harness.load.plan import LoadPoint, WindowPlan
from harness.processes import ManagedProcess
from harness.scenario.load_spec import LoadSpec
from harness.serving.base import EncodedRequests, HttpEndpoint

NATIVE_FATAL_MARKERS = ("harness-load: fatal:",)


class NativeDriver(LocustDriver):
    """LocustDriver's run, with the native engine as its one load process."""

    name = "native"
    title = "the native load engine"
    files_prefix = "native"

    def _launch(
        self,
        stack: ExitStack,
        endpoint: HttpEndpoint,
        load: LoadSpec,
        point: LoadPoint,
        requests: EncodedRequests,
        files_: LocustRunFiles,
        plan: WindowPlan,
        processes: int,
        seed: int,
        interleave: Interleave | None,
        cpus: Sequence[int] | None,
    ) -> tuple[ManagedProcess, list[ManagedProcess]]:
        if processes:
            raise UserError(
                "load.generator: native is one process; load.workers and load.remote_workers are "
                "Locust's distributed mode (use generator: locust for them)"
            )
        binary = native_binary()
        targets = (
            [(t.endpoint, t.requests) for t in interleave.targets]
            if interleave is not None
            else [(endpoint, requests)]
        )
        lines = [
            f"users {point.users}",
            f"spawn_rate {load.spawn_rate!r}",
            f"mode {point.mode}",
            f"arrival {'constant' if load.arrival == 'constant' else 'poisson'}",
            f"seed {seed & 0xFFFFFFFFFFFFFFFF}",
            f"timeout_s {load.timeout_s!r}",
            f"flush_s {FLUSH_S!r}",
            f"max_run_s {plan.longest_s + SAFETY_MARGIN_S!r}",
            f"samples_path {files_.samples}",
            f"started_path {files_.started}",
            f"meta_path {files_.meta}",
            f"stop_path {files_.stop}",
        ]
        if point.mode == "open":
            lines.append(f"rate_rps {point.rate_rps!r}")
        if interleave is not None:
            lines.append(f"slice_s {interleave.slice_s!r}")
            lines.append("pattern " + " ".join(str(i) for i in interleave.pattern))
        for index, (target_endpoint, target_requests) in enumerate(targets):
            if target_requests.rows_per_body != load.request_batch_size or not target_requests.bodies:
                raise RunError(f"target {index}: no bodies of {load.request_batch_size} example(s) each")
            host, port, prepared = http_requests(target_endpoint, target_requests)
            path = files_.dir / f"{files_.prefix}_requests-{index}.bin"
            write_bodies(path, prepared)  # same framing as the bodies file: length, then bytes
            stack.callback(path.unlink, missing_ok=True)  # the test set, in request form
            width = -1 if target_requests.output_width is None else target_requests.output_width
            lines.append(f"target {host} {port} {target_requests.rows_per_body} {width}")
            lines.append(f"target_requests {path}")
            if target_requests.output_path:
                lines.append(f"target_output {target_requests.output_path}")
        files_.config.write_text("\n".join(lines) + "\n")
        main = ManagedProcess(
            [str(binary), str(files_.config)],
            files_.log,
            name="native load engine",
            cwd=files_.dir,
            fatal_markers=NATIVE_FATAL_MARKERS,
            cpus=cpus,
        )
        stack.enter_context(main)
        return main, []


def http_requests(endpoint: HttpEndpoint, requests: EncodedRequests) -> tuple[str, int, list[bytes]]:
    """The address to connect to and every body as a whole HTTP/1.1 POST, sent as is."""
    path = endpoint.path if endpoint.path.startswith("/") else "/" + endpoint.path
    url = urlsplit(path if "://" in path else endpoint.base_url.rstrip("/") + path)
    if url.scheme != "http":
        raise UserError(
            f"load.generator: native speaks plain HTTP; {endpoint.base_url} is {url.scheme}: use "
            "generator: locust for it"
        )
    host = url.hostname or "127.0.0.1"
    port = url.port or 80
    try:
        address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][4][0]
    except OSError as exc:
        raise RunError(f"cannot resolve {host}: {exc}") from None
    target = (url.path or "/") + (f"?{url.query}" if url.query else "")
    headers = {**(endpoint.headers or {}), "Content-Type": requests.content_type}
    head = f"POST {target} HTTP/1.1\r\nHost: {url.netloc}\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in headers.items()
    )
    prepared = [
        (head + f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1") + body for body in requests.bodies
    ]
    return str(address), port, prepared
