"""A keep-alive stdlib HTTP server on a free loopback port for load-generator tests.

It reads the harness's one-input request formats (JSON `{"instances": ...}` or an .npy body) and
hands the test's `respond` callable the examples as lists; what it answers, and how slowly, is
`respond`'s choice.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from harness.processes import free_port

# (request path, request headers, parsed instances) -> (HTTP status, response body)
Respond = Callable[[str, dict[str, str], list[list[float]]], tuple[int, bytes]]


class JsonHttpServer:
    """Serves POSTs with `respond` on one thread per connection until `close()`."""

    def __init__(self, respond: Respond) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as model servers do
            disable_nagle_algorithm = True  # else delayed ACKs add 40 ms to each response

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if body.startswith(b"\x93NUMPY"):
                    instances = np.load(io.BytesIO(body)).tolist()
                else:
                    instances = json.loads(body)["instances"]
                status, payload = respond(self.path, dict(self.headers.items()), instances)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                pass

        class QuietServer(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # clients that time out close their socket under a sleeping handler

        self.port = free_port()
        self.server = QuietServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
