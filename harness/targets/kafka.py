"""The ``kafka`` target: the harness launches Apache Kafka itself, a 3-node KRaft cluster.

Each node is a JVM run from the jars of ``org.apache.kafka:kafka_2.13`` (fetched once from Maven
Central into ``.cache/kafka``; :mod:`launch.kafka_jars`), in combined broker+controller mode, on
free loopback ports, with its own data directory (removed on exit). The cluster is
:class:`launch.kafka_cluster.KafkaCluster`; the target is ready when the Admin API's
DescribeCluster lists every broker at every node and ``__consumer_offsets`` has leaders.

The version is ``--kafka-version`` (``$KCONFORM_KAFKA_VERSION``, default the latest 4.x,
:data:`launch.kafka_jars.DEFAULT_VERSION`). As for the reference target, the harness lowers
``group.initial.rebalance.delay.ms`` to 0 and keeps Kafka's defaults for everything else, except
the replication factors of the internal topics, which follow the number of nodes.

Capabilities: the harness runs the JVMs (process control), Kafka keeps its log on disk (durable
storage), three brokers replicate, compaction is Kafka's own, and the harness writes the
configuration; the protocol features come from Kafka's ApiVersions answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.targets.base import Target, TargetError, launched_capabilities
from launch import kafka_jars
from launch.kafka_cluster import KafkaCluster, KafkaClusterError
from launch.reference_cluster import LinkAddress

DEFAULT_NODES = 3


class KafkaTarget(Target):
    """Apache Kafka: ``brokers`` combined broker+controller JVMs (``KafkaCluster``)."""

    name = "kafka"

    def __init__(self, version: str | None = None, brokers: int = DEFAULT_NODES,
                 overrides: Mapping[str, str] | None = None, *, link_address: LinkAddress | None = None,
                 heap: str | None = None, data_dir: Path | None = None, log_level: str = "INFO") -> None:
        """``link_address`` (``launch.reference_cluster.LinkAddress``) redirects the cluster's
        network paths, e.g. through Toxiproxy proxies (what Kafka lets a proxy sit on is in
        docs/kafka.md); ``heap`` is each JVM's ``-Xmx`` (default 512m)."""
        super().__init__()
        if brokers < 1:
            raise TargetError(f"a kafka target needs at least one node, not {brokers}")
        try:
            self.version = version or kafka_jars.default_version()
            kafka_jars.parse_version(self.version)
        except kafka_jars.KafkaJarsError as exc:
            raise TargetError(str(exc)) from exc
        self.brokers = brokers
        self.overrides = dict(overrides or {})
        self.link_address = link_address
        self.heap = heap
        self.data_dir = data_dir
        self.log_level = log_level
        self._cluster: KafkaCluster | None = None

    @property
    def bootstrap(self) -> str:
        return self._running(self._cluster).bootstrap

    @property
    def cluster(self) -> KafkaCluster | None:
        """The running ``KafkaCluster`` (per-node control, leaders, addresses), once started."""
        return self._cluster

    def declared_capabilities(self) -> frozenset[str]:
        return launched_capabilities(self.brokers)

    def _start(self) -> None:
        try:
            self._cluster = KafkaCluster(self.brokers, self.overrides, version=self.version,
                                         link_address=self.link_address, base_dir=self.data_dir,
                                         log_level=self.log_level, heap=self.heap)
            self._cluster.start()
            self._cluster.wait_ready()
        except (KafkaClusterError, ValueError) as exc:
            raise TargetError(f"Apache Kafka {self.version} could not start: {exc}") from exc

    def _stop(self) -> None:
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def restart(self) -> None:
        """Stop every node cleanly, start them again on the same ports and data, wait until ready."""
        cluster = self._running(self._cluster)
        try:
            cluster.stop_all()
            cluster.start()
            cluster.wait_ready()
        except KafkaClusterError as exc:
            raise TargetError(f"Apache Kafka {self.version} did not come back after a restart: {exc}") from exc

    def kill(self) -> None:
        if self._cluster is not None:
            self._cluster.kill_all()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "version": f"Apache Kafka {self.version}", "brokers": self.brokers,
                "heap": self._cluster.heap if self._cluster is not None else self.heap, "overrides": dict(self.overrides),
                "pids": [n.pid for n in self._cluster.nodes] if self._cluster is not None else []}
