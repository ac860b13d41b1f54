"""Free loopback ports, so that every process kconform starts, and every test, can run beside
the others (pytest-xdist workers included).

A port is picked below the kernel's ephemeral range (``ip_local_port_range``) when it can be:
the kernel's own choice for ``bind(port 0)`` comes from that range, which is also where every
outgoing connection on the machine takes its local port, so between the pick and the moment a
broker binds it a client connection could take it ("address already in use" at start-up).
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterable
from pathlib import Path

EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 10_000  # below: well-known and registered services' ports
TRIES = 50
_pick = random.SystemRandom()  # not a test's choice: no seed to print, none to replay


def _below_ephemeral() -> range | None:
    try:
        low = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return range(LOWEST, low) if low - LOWEST >= 1000 else None


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1", taken: Iterable[int] = ()) -> int:
    """A port nothing listens on right now, not in ``taken``: below the ephemeral range if
    possible (see the module docstring), else the kernel's choice."""
    avoid = set(taken)
    ports = _below_ephemeral()
    if ports is not None:
        for _ in range(TRIES):
            port = _pick.choice(ports)
            if port not in avoid and _bindable(host, port):
                return port
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in avoid:
            return port
