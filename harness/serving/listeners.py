"""Which addresses a server's process tree really listens on, checked against what was intended.

The report states where a server listens; this makes that statement checked rather than assumed:
after start-up every TCP/UDP socket in LISTEN state anywhere in the tree must be one we asked for.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

import psutil

from harness.errors import RunError


@dataclass(frozen=True)
class ListeningSocket:
    """One listening inet socket of a server process."""

    pid: int
    process: str  # process name, for the error message
    ip: str
    port: int


def listening_sockets(root_pid: int) -> list[ListeningSocket]:
    """The listening inet sockets of `root_pid` and all its descendants."""
    try:
        root = psutil.Process(root_pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    found = []
    for proc in procs:
        try:
            name = proc.name()
            conns = proc.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        for conn in conns:
            if conn.status == psutil.CONN_LISTEN and conn.laddr:
                found.append(ListeningSocket(proc.pid, name, conn.laddr.ip, conn.laddr.port))
    return found


def _plain_ip(ip: str) -> str:
    # a dual-stack socket reports an IPv4 address in its IPv6 mapped form
    return ip.removeprefix("::ffff:")


def unexpected_listeners(
    sockets: Iterable[ListeningSocket],
    *,
    address: str,
    ports: Collection[int],
    any_address_ports: Collection[int] = (),
) -> list[str]:
    """One line per socket that is not `address` on one of `ports`, e.g. `0.0.0.0:8082 (pid 12, java)`.

    `any_address_ports` may listen on any address: for a server that cannot be told where to bind
    (TF Serving's REST port), which the report states instead.
    """
    wrong = []
    for sock in sockets:
        if sock.port in any_address_ports:
            continue
        if _plain_ip(sock.ip) != address or sock.port not in ports:
            shown = f"[{sock.ip}]" if ":" in sock.ip else sock.ip
            wrong.append(f"{shown}:{sock.port} (pid {sock.pid}, {sock.process})")
    return sorted(set(wrong))


def check_listeners(
    server: str,
    root_pid: int,
    *,
    address: str,
    ports: Collection[int],
    any_address_ports: Collection[int] = (),
) -> None:
    """RunError naming every socket of the tree at `root_pid` that listens where it should not."""
    wrong = unexpected_listeners(
        listening_sockets(root_pid), address=address, ports=ports, any_address_ports=any_address_ports
    )
    if wrong:
        expected = ", ".join(f"{address}:{port}" for port in sorted(ports))
        raise RunError(
            f"{server} listens where it was not told to: {'; '.join(wrong)} (expected only {expected})"
        )
