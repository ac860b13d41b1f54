"""Free loopback ports, so that every process kconform starts, and every test, can run beside
the others (pytest-xdist workers included)."""

from __future__ import annotations

import socket
from collections.abc import Iterable


def free_port(host: str = "127.0.0.1", taken: Iterable[int] = ()) -> int:
    """A port nothing listens on right now (the kernel's choice), not in ``taken``."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in taken:
            return port
