"""Free TCP ports for servers tests start, chosen where nothing else takes them.

``bind(0)`` hands out a port from the ephemeral range (32768-60999 here), the same range
every outgoing connection takes its source port from: between the check and the server's
own bind, a client socket of another test (PostgreSQL, ZeroMQ, HTTP) may take it, and the
server fails with "Address already in use". Ports below that range are only ever taken by
a bind, so a port checked free there stays free; none is handed out twice in a run."""

from __future__ import annotations

import random
import socket

__all__ = ["free_port"]

_LOW, _HIGH = 20000, 32767  # below net.ipv4.ip_local_port_range's default start
_given: set[int] = set()


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on, not given before in this process."""
    for _ in range(1000):
        port = random.randrange(_LOW, _HIGH)
        if port in _given:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise RuntimeError(f"no free port in {_LOW}-{_HIGH}")
