"""The ``external`` target: a broker someone else runs, reached through ``--bootstrap``.

The harness has no process control over it and does not know its configuration, so checks
that need either are skipped. Its protocol capabilities come from its ApiVersions answer; add
what the harness cannot see (e.g. ``replication`` for a multi-broker cluster) with
``extra_capabilities``. Checks create their own uniquely named topics and groups, so several
runs (and several pytest-xdist workers) can share one external cluster.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from harness.targets.base import ALL_CAPABILITIES, Target, TargetError


def parse_bootstrap(bootstrap: str) -> str:
    """Validate ``HOST:PORT[,HOST:PORT...]``; raise TargetError naming the bad part."""
    parts = [p.strip() for p in bootstrap.split(",") if p.strip()]
    if not parts:
        raise TargetError("--bootstrap needs HOST:PORT[,HOST:PORT...], got nothing")
    for part in parts:
        host, sep, port = part.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise TargetError(f"--bootstrap: {part!r} is not HOST:PORT")
    return ",".join(parts)


class ExternalTarget(Target):
    """A running broker or cluster at ``bootstrap``."""

    name = "external"

    def __init__(self, bootstrap: str, extra_capabilities: Iterable[str] = ()) -> None:
        super().__init__()
        self._bootstrap = parse_bootstrap(bootstrap)
        extra = frozenset(extra_capabilities)
        unknown = sorted(extra - set(ALL_CAPABILITIES))
        if unknown:
            raise TargetError(f"unknown capabilities {unknown}; known: {', '.join(ALL_CAPABILITIES)}")
        self.extra_capabilities = extra

    @property
    def bootstrap(self) -> str:
        return self._bootstrap

    def declared_capabilities(self) -> frozenset[str]:
        return self.extra_capabilities

    def _start(self) -> None:
        pass  # nothing to launch: start() probes ApiVersions, which fails clearly if unreachable

    def _stop(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "bootstrap": self._bootstrap}
