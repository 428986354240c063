"""The trivial HTTP server the load benchmarks drive: reads each body, answers one fixed JSON at once.

Used by locust_capacity.py and payload_encoding.py to isolate the load generator's own cost: the
server does no work beyond reading the request. It runs in its own process (this file run as a
script) under the harness's ManagedProcess, on a free port, ready once it answers a POST.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.processes import ManagedProcess, free_port
from harness.serving.base import HttpEndpoint

PATH = "/p"  # the server answers any path; the benchmarks post here
READ_LIMIT_BYTES = 2**20  # a roomy stream buffer: bodies run to a few MB (a 224x224x3 image as JSON)


@dataclass(frozen=True)
class TrivialServer:
    """A running trivial server: where to send requests, and its pid (for CPU sampling)."""

    endpoint: HttpEndpoint
    pid: int


@contextlib.contextmanager
def trivial_server(log_dir: Path, response: bytes) -> Iterator[TrivialServer]:
    """Start the server answering every POST with `response`; stopped when the block exits."""
    port = free_port()
    process = ManagedProcess(
        [sys.executable, __file__, "--port", str(port), "--response", response.decode()],
        log_dir / "server.log",
        name="bench server",
    )
    with process:
        url = f"http://127.0.0.1:{port}"
        process.wait_until(lambda: _ready(url + PATH), timeout_s=30)
        assert process.pid is not None
        yield TrivialServer(HttpEndpoint(url, PATH), process.pid)


def _ready(url: str) -> bool:
    req = urllib.request.Request(url, data=b"{}", method="POST")
    with urllib.request.urlopen(req, timeout=1) as resp:
        return resp.status == 200


async def _serve(port: int, response: bytes) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                    + str(len(response)).encode()
                    + b"\r\n\r\n"
                    + response
                )
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, limit=READ_LIMIT_BYTES)
    async with server:
        await server.serve_forever()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--response", required=True, help="the JSON every request gets back")
    args = parser.parse_args()
    asyncio.run(_serve(args.port, args.response.encode()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
