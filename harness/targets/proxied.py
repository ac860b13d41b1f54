"""What a target tells a chaos campaign about itself: how it starts with its network paths
behind proxies, what its nodes are called, who leads a partition, which node processes can be
killed or paused, and when it has recovered.

A chaos environment (``chaos.environment``) is a target plus its proxy topology: everything
that differs between targets lives here and in the target's own module, so a new target is one
module in ``harness/targets/`` (a :class:`ProxiedTarget`, registered in
``harness.targets.TARGETS``) and its launcher in ``launch/``; nothing in ``chaos/`` or the
command line names it (docs/architecture.md, "Adding things").

The proxies are the campaign's (Toxiproxy); a target sees them through :class:`Links`, the part
of ``chaos.topology.Topology`` a target may use: create the proxy of one path, or hand a
launcher's ``link_address`` hook to it. Node names are the schedules' and histories': ``b<id>``
for brokers, ``controller`` for a separate controller node.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import ClassVar, Protocol, Self

import attrs

from harness.targets.base import DURABLE_STORAGE, PROCESS_CONTROL, Target, TargetOptions, launched_capabilities
from launch.node import ManagedNode, ProcessControl
from launch.reference_cluster import Address, Link, ProcessCluster

CLIENTS = "clients"
CONTROLLER = "controller"
RECOVERY_TIMEOUT_S = 90.0


def broker_name(node_id: int) -> str:
    """The name of broker ``node_id`` in schedules and histories (``b1``)."""
    return f"b{node_id}"


def node_id(name: str) -> int:
    """The node id of a name: ``b3`` -> 3, ``controller`` -> 0."""
    if name == CONTROLLER:
        return 0
    if name.startswith("b") and name[1:].isdigit():
        return int(name[1:])
    raise ValueError(f"{name!r} is not a node name (b<id> or controller)")


class ChaosEnvironmentError(RuntimeError):
    """The environment could not be set up, or cannot do what a fault asks."""


class ProxyPath(Protocol):
    """One proxied path as a target sees it."""

    @property
    def listen(self) -> str: ...

    @property
    def upstream(self) -> str: ...


class Links(Protocol):
    """The proxies a target's paths go through (``chaos.topology.Topology`` is one)."""

    def add(self, source: str, target: str, kind: str, upstream: str, listen: str = "127.0.0.1:0") -> ProxyPath:
        """Create the proxy of path ``source -> target`` of ``kind``."""

    def cluster_link_address(self, link: Link, address: Address) -> Address:
        """A launcher's ``link_address`` hook for a cluster with a separate controller."""

    def combined_link_address(self, link: Link, address: Address, listen: str = "127.0.0.1:0") -> Address:
        """The same for combined broker+controller nodes (KRaft combined mode)."""

    def name_targets(self, names: Mapping[str, str]) -> None:
        """Name the nodes behind proxies by their listen addresses (brokers someone else runs);
        paths to no named node are forgotten."""


@attrs.frozen
class PartitionLeadership:
    """Who leads a partition and where its replicas are, as one broker sees it (by node name;
    ``reference_broker.replication.PartitionState`` is a replica's own state, by node id)."""

    leader: str | None
    leader_epoch: int
    replicas: tuple[str, ...]
    isr: tuple[str, ...]


def freshest(views: Sequence[PartitionLeadership]) -> PartitionLeadership | None:
    """The view that knows the newest leader epoch."""
    return max(views, key=lambda view: view.leader_epoch, default=None)


class ProxiedTarget(Target):
    """A target a chaos campaign can run behind proxies; the defaults suit a target with no
    process control whose brokers are reached only through the client paths.

    Class attributes, so the command line and the campaign never test a target's name (with
    :attr:`Target.launched` and :attr:`Target.takes_version`): ``configures_brokers`` (the
    harness writes the brokers' configuration), ``single_node`` (one broker, whatever
    ``--brokers`` says), ``reserved_keys`` (broker keys its launcher sets
    for each node, refused in ``--override``), ``campaign_timing`` (broker settings a campaign
    adds to the shared campaign timing when the harness configures the brokers).
    """

    single_node: ClassVar[bool] = False
    reserved_keys: ClassVar[frozenset[str]] = frozenset()
    campaign_timing: ClassVar[Mapping[str, str]] = {}
    configures_brokers: ClassVar[bool] = False
    """The harness writes the brokers' configuration (``--override`` keys reach them)."""

    @classmethod
    def behind(cls, links: Links, options: TargetOptions) -> Self:
        """A target of this kind (not started) whose paths will go through ``links``."""
        raise NotImplementedError

    # --- the nodes -----------------------------------------------------------------------------

    @property
    def broker_nodes(self) -> list[str]:
        """The brokers' node names (``b1``, ...)."""
        raise NotImplementedError

    @property
    def nodes(self) -> list[str]:
        """Every server node a fault may name (brokers, and the controller if it is separate)."""
        return self.broker_nodes

    def node_addresses(self) -> dict[str, str]:
        """Each broker's real address (``host:port``, around every proxy), for observers that
        must not be cut off by the faults they watch; empty where they are not known."""
        return {}

    # --- partitions ------------------------------------------------------------------------------

    def partition_views(self, topic: str, partition: int) -> list[PartitionLeadership]:
        """Every view of the partition the target can read (one per answering broker where it
        can ask each): views differ while metadata propagates or a broker is cut off."""
        raise NotImplementedError

    def replica_placement(self, partitions: int, replication_factor: int) -> list[list[int]] | None:
        """The replicas (broker ids, preferred leader first) a campaign topic's partitions
        should get, or None to let the brokers place them."""
        return None

    def controller_node(self) -> str | None:
        """The node a fault aimed at "the controller" hits now: the separate controller node,
        or (controllers inside the brokers) the node whose controller is active; None if the
        target cannot tell."""
        return CONTROLLER if CONTROLLER in self.nodes else None

    @property
    def names_controller(self) -> bool:
        """A fault can be aimed at "the controller" (:meth:`controller_node`)."""
        return CONTROLLER in self.nodes

    def wait_recovered(self, topic: str, partitions: int, timeout_s: float = RECOVERY_TIMEOUT_S) -> list[str]:
        """Wait until every partition of ``topic`` is served again (and fully replicated where
        the target can see it); returns warnings for what did not recover in time."""
        return self.wait_served(topic, partitions, timeout_s)

    def wait_served(self, topic: str, partitions: int, timeout_s: float) -> list[str]:
        from harness.session import SessionError, WireSession

        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            try:
                with WireSession(self.bootstrap, timeout_s=5.0) as session:
                    got = session.list_offsets_many([(topic, p) for p in range(partitions)], -1)
                if all(r.error == "NONE" for r in got.values()):
                    return []
                last = ", ".join(f"{t}-{p}: {r.error}" for (t, p), r in got.items() if r.error != "NONE")
            except (SessionError, OSError) as exc:
                last = str(exc)
            time.sleep(0.25)
        return [f"{topic} was not served again within {timeout_s:.0f} s ({last})"]

    # --- process control (targets with it override node_process) --------------------------------

    @property
    def process_control(self) -> bool:
        return PROCESS_CONTROL in self.capabilities

    @property
    def durable(self) -> bool:
        """Acknowledged records survive a process restart."""
        return DURABLE_STORAGE in self.capabilities

    def node_process(self, node: str) -> ProcessControl:
        """The process behind ``node``."""
        raise ChaosEnvironmentError(f"the {self.name} target has no process control")

    def start_node(self, node: str) -> None:
        process = self.node_process(node)
        if not process.running:
            process.start()

    def wipe_node(self, node: str) -> None:
        raise ChaosEnvironmentError(f"the {self.name} target cannot wipe a node's data")

    def node_running(self, node: str) -> bool:
        return not self.process_control or bool(self.node_process(node).running)


class ClusterTarget(ProxiedTarget):
    """A cluster the harness launches with every path proxied, whose per-node API is
    ``launch.reference_cluster.ReferenceCluster``'s (``KafkaCluster`` mirrors it): what the
    reference and Kafka targets share. Subclasses set :attr:`brokers` (how many) and start
    :attr:`cluster`; the harness runs their processes on disk with its own configuration."""

    configures_brokers: ClassVar[bool] = True
    brokers: int

    def declared_capabilities(self) -> frozenset[str]:
        return launched_capabilities(self.brokers)

    @property
    def cluster(self) -> ProcessCluster | None:
        raise NotImplementedError

    def _started_cluster(self) -> ProcessCluster:
        if self.cluster is None:
            raise ChaosEnvironmentError(f"the {self.name} cluster is not started")
        return self.cluster

    @property
    def broker_nodes(self) -> list[str]:
        return [broker_name(i) for i in sorted(self._started_cluster().brokers)]

    def node_process(self, node: str) -> ManagedNode:
        try:
            return self._started_cluster().node(node_id(node))
        except (KeyError, ValueError) as exc:
            raise ChaosEnvironmentError(f"no node {node!r} in this cluster (nodes: {', '.join(self.nodes)})") from exc

    def wipe_node(self, node: str) -> None:
        """SIGKILL and delete its data (a replaced disk); :meth:`start_node` brings it back
        empty under the same id."""
        self.node_process(node).wipe()

    def node_running(self, node: str) -> bool:
        process = self.node_process(node)
        return bool(process.running and not process.paused)

    def node_addresses(self) -> dict[str, str]:
        return {broker_name(nid): f"{node.address[0]}:{node.address[1]}"
                for nid, node in self._started_cluster().brokers.items()}

    def partition_views(self, topic: str, partition: int) -> list[PartitionLeadership]:
        """The view of every running broker that answers Metadata (at its real address)."""
        cluster = self._started_cluster()
        views = []
        for nid, node in cluster.brokers.items():
            if not node.running or node.paused:
                continue
            try:
                view = cluster.metadata(nid, [topic])
            except Exception:  # noqa: BLE001 - a broker starting or stopping: ask the others
                continue
            p = view.partition(topic, partition)
            if p is None:
                continue
            views.append(PartitionLeadership(broker_name(p.leader) if p.leader >= 0 else None, p.leader_epoch,
                                        tuple(broker_name(r) for r in p.replicas),
                                        tuple(broker_name(r) for r in p.isr)))
        return views

    def wait_recovered(self, topic: str, partitions: int, timeout_s: float = RECOVERY_TIMEOUT_S) -> list[str]:
        """Every node running, every broker registered, and every partition led by a live
        broker with all its replicas back in the ISR (so the high watermark covers every
        acknowledged record before the drain reads to it)."""
        cluster = self._started_cluster()
        warnings: list[str] = []
        deadline = time.monotonic() + timeout_s
        for node in cluster.nodes:
            if node.paused:
                node.resume()
        # Launch every stopped node first, then wait: a node may not finish starting without
        # the others (a KRaft node needs a quorum of controllers).
        stopped = [node for node in cluster.nodes if not node.running]
        for node in stopped:
            node.launch()
        for node in stopped:
            try:
                node.wait_started(max(1.0, deadline - time.monotonic()))
            except Exception as exc:  # noqa: BLE001 - reported, the drain still runs
                warnings.append(f"node {node.node_id} did not start again: {str(exc).splitlines()[0]}")
        try:
            cluster.wait_for_brokers(timeout_s=max(1.0, deadline - time.monotonic()))
        except Exception as exc:  # noqa: BLE001 - reported, the drain still runs
            warnings.append(f"not every broker came back: {str(exc).splitlines()[0]}")

        def replicated() -> bool:
            for p in range(partitions):
                state = freshest(self.partition_views(topic, p))
                if state is None or state.leader is None or set(state.isr) != set(state.replicas):
                    return False
            return True

        try:
            cluster.wait_until(replicated, max(1.0, deadline - time.monotonic()),
                               f"every partition of {topic} to be led with a full ISR")
        except Exception as exc:  # noqa: BLE001
            warnings.append(str(exc).splitlines()[0])
        return warnings + self.wait_served(topic, partitions, max(5.0, deadline - time.monotonic()))
