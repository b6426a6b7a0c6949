"""A free TCP port on loopback for a server that another process will bind.

A port the kernel picks with ``bind(0)`` comes from its ephemeral range, the
same range every outgoing connection on the machine takes its source port
from: between our pick and the server's bind, a client (a database
connection, an HTTP request) can take it, and the server fails with
"address in use". So the port is drawn at random from below that range, where
only listeners live, and checked free by binding it.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10_000
_TRIES = 200


def _ephemeral_low() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def free_port(host: str = "127.0.0.1") -> int:
    """A port on `host` that nothing listens on and no outgoing connection will take."""
    high = _ephemeral_low()
    if high - _LOWEST < 1_000:  # an unusual kernel range: let the kernel pick
        return _bound_port(host, 0)
    for _ in range(_TRIES):
        port = random.randrange(_LOWEST, high)
        try:
            return _bound_port(host, port)
        except OSError:
            continue
    return _bound_port(host, 0)


def _bound_port(host: str, port: int) -> int:
    with socket.socket() as sock:
        sock.bind((host, port))
        return int(sock.getsockname()[1])
