"""Free loopback ports for tests, taken below the kernel's ephemeral range.

A port the system hands out for ``bind(("127.0.0.1", 0))`` lies in the ephemeral range, the
same range outgoing connections take their local port from. A client that polls such a port
before the server has bound it can be given that very port as its own local port, and TCP
then connects the socket to itself (a "self-connect"): the server's bind fails with
EADDRINUSE. A port below the range is never an outgoing connection's, so it cannot happen.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 10_000


def _ephemeral_start() -> int:
    """The first port of the ephemeral range (Linux: /proc; elsewhere IANA's 49152)."""
    try:
        return int(_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 49152


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing holds now, below the ephemeral range.

    Raises:
        OSError: none of 200 random ports was free.
    """
    top = max(_ephemeral_start(), LOWEST + 1000)
    for _ in range(200):
        port = random.randrange(LOWEST, top)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError("no free TCP port below the ephemeral range on 127.0.0.1")
