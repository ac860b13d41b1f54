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
from typing import Any, ClassVar, Self

from harness.targets.base import TargetError, TargetOptions
from harness.targets.proxied import ClusterTarget, Links, broker_name
from launch import kafka_jars
from launch.kafka_cluster import RESERVED_KEYS, KafkaCluster, KafkaClusterError
from launch.ports import free_port
from launch.reference_cluster import Address, Link, LinkAddress

DEFAULT_NODES = 3


class KafkaTarget(ClusterTarget):
    """Apache Kafka: ``brokers`` combined broker+controller JVMs (``KafkaCluster``).

    Behind proxies each node ``bJ`` is a broker and a controller in one JVM. Clients reach ``bJ``
    through ``clients -> bJ`` (the address it advertises); node I reaches node J through two
    proxies, ``bI -> bJ`` of kind ``replication`` (follower fetches, on the listener
    ``REPLICA_FROM_I``) and of kind ``controller`` (Raft traffic to J's controller, and I's
    heartbeats and AlterPartition when J is the active controller). A node's broker and its own
    controller talk inside the JVM: no proxy can cut that. There is no separate controller node:
    a fault aimed at "the controller" is aimed at the active controller's node, looked up with
    DescribeQuorum when the fault starts.
    """

    name = "kafka"
    takes_version: ClassVar[bool] = True
    reserved_keys: ClassVar[frozenset[str]] = RESERVED_KEYS
    # Kafka keeps its quorum's own timeouts (controller.quorum.*) and moves leaders only because
    # of faults.
    campaign_timing: ClassVar[Mapping[str, str]] = {"transaction.state.log.num.partitions": "3",
                                                    "auto.leader.rebalance.enable": "false"}

    @classmethod
    def from_options(cls, options: TargetOptions) -> Self:
        return cls(version=options.version)

    @classmethod
    def behind(cls, links: Links, options: TargetOptions) -> Self:
        target = cls(options.version, options.brokers, options.overrides)

        def link_address(link: Link, address: Address) -> Address:
            # A proxy per link, listening on a port the cluster has not reserved for a node: the
            # cluster picks every node's ports before it asks for links, and binds them only when
            # the JVMs start, so a proxy on a port of the kernel's choice could take one of them.
            assert target.cluster is not None
            taken = target.cluster.taken_ports
            port = free_port("127.0.0.1", taken)
            taken.append(port)
            return links.combined_link_address(link, address, listen=f"127.0.0.1:{port}")

        target.link_address = link_address
        return target

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

    def start_node(self, node: str) -> None:
        """Launch the JVM again and return without waiting for it: a Kafka node finishes
        starting only once a quorum of controllers answers, which may need the other nodes
        of the same fault (they are started after it). :meth:`wait_recovered` waits."""
        process = self.node_process(node)
        if not process.running:
            process.launch()

    @property
    def names_controller(self) -> bool:
        return True

    def controller_node(self) -> str | None:
        """The node whose controller is active now (the Raft leader of ``__cluster_metadata``)."""
        nid = self._started_cluster().active_controller()
        return None if nid is None else broker_name(nid)

    def replica_placement(self, partitions: int, replication_factor: int) -> list[list[int]] | None:
        """Keep the replicas off the node whose controller is active, when there are nodes
        enough: a fault aimed at a replica (isolate or kill the leader or a follower) then
        never also cuts off or kills the active controller, whose loss would add a quorum
        election (and, with one voter of three cut off and another killed, no quorum at all)
        to the fault. Partitions rotate over the other nodes; None (the brokers place them)
        when the replicas need every node or no controller can be named."""
        cluster = self._started_cluster()
        ids = sorted(int(i) for i in cluster.brokers)
        if replication_factor >= len(ids):
            return None
        active = cluster.active_controller()
        if active is None:
            return None
        others = [i for i in ids if i != active]
        return [[others[(p + k) % len(others)] for k in range(replication_factor)] for p in range(partitions)]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "version": f"Apache Kafka {self.version}", "brokers": self.brokers,
                "heap": self._cluster.heap if self._cluster is not None else self.heap, "overrides": dict(self.overrides),
                "pids": [n.pid for n in self._cluster.nodes] if self._cluster is not None else []}
