"""The broker under a campaign, with its proxies: what faults can reach and how.

An :class:`Environment` is a started target (``harness.targets``) wired through a
:class:`~chaos.topology.Topology`, plus what the nemeses need from it:

* its server nodes by name (``b1``, ``b2``, ..., ``controller``) and the client address;
* process control per node (SIGKILL, SIGSTOP/SIGCONT, clean stop and start, wiped data) when
  the harness launched the processes;
* who leads a partition *now* and which nodes hold its replicas, read from Metadata at the
  brokers' real addresses (around the proxies), so that a fault aimed at "the leader" hits the
  broker that leads when it starts;
* waiting for the cluster to recover after the faults are healed.

Four kinds:

* ``reference``: a controller and N reference brokers (``ReferenceCluster``), every path
  proxied (client, broker-to-broker in both directions, broker-to-controller);
* ``kafka``: Apache Kafka, N nodes in KRaft combined mode (``KafkaCluster``), every path
  proxied: client, and per ordered pair of nodes one replication and one controller path (a
  node's broker reaches its own controller inside the JVM); "the controller" is the node whose
  controller is active;
* ``tansu``: one Tansu process advertising a client proxy in front of it;
* ``external``: brokers someone else runs. Only client paths can be proxied, and only if the
  brokers *advertise the proxies*: the user gives ``LISTEN=UPSTREAM`` pairs (``--proxy``), the
  harness creates a proxy listening on LISTEN that forwards to UPSTREAM, and the broker must
  advertise LISTEN (docs/chaos.md explains how). No process control.

A new kind of target is one more :class:`Environment` subclass: it starts the target with its links redirected through
``Topology.add`` proxies, names its nodes, answers :meth:`Environment.partition_state`, and
overrides the process-control methods it can do; :func:`make_environment` picks it by name.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import attrs

from chaos.topology import CLIENTS, CONTROLLER, Topology, broker_name, node_id
from harness.targets import (
    DURABLE_STORAGE,
    PROCESS_CONTROL,
    ExternalTarget,
    ReferenceTarget,
    TansuTarget,
    Target,
    TargetError,
)
from launch.kafka_cluster import RESERVED_KEYS as KAFKA_RESERVED_KEYS
from launch.node import ManagedNode, ProcessControl
from launch.reference_cluster import RESERVED_KEYS as REFERENCE_RESERVED_KEYS

RECOVERY_TIMEOUT_S = 90.0


class ChaosEnvironmentError(RuntimeError):
    """The environment could not be set up, or cannot do what a fault asks."""


@attrs.frozen
class PartitionState:
    """Who leads a partition and where its replicas are, as the freshest broker sees it."""

    leader: str | None
    leader_epoch: int
    replicas: tuple[str, ...]
    isr: tuple[str, ...]


class Environment:
    """A started target behind its proxies; see the module docstring. A context manager.

    What a target is like, for the command line and the campaign (class attributes, so that no
    caller needs to know targets by name): ``launched`` (kconform starts it; else the user gives
    ``--bootstrap`` / ``--proxy``), ``single_node`` (one broker, whatever ``--brokers`` says),
    ``takes_version`` (``--kafka-version`` picks its release), ``reserved_keys`` (broker keys its
    launcher sets for each node, refused in ``--override``)."""

    name = "?"
    launched = True
    single_node = False
    takes_version = False
    reserved_keys: frozenset[str] = frozenset()

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.target: Target | None = None

    @classmethod
    def create(cls, topology: Topology, options: EnvironmentOptions) -> Environment:
        """An environment of this kind (not started) from the command line's options."""
        raise NotImplementedError

    # --- to implement --------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """What clients bootstrap from (the client proxies)."""
        raise NotImplementedError

    @property
    def brokers(self) -> list[str]:
        raise NotImplementedError

    @property
    def nodes(self) -> list[str]:
        """Every server node a fault may name (brokers, and the controller if it is separate)."""
        return self.brokers

    def start(self) -> Environment:
        raise NotImplementedError

    def close(self) -> None:
        if self.target is not None:
            self.target.stop()

    def partition_state(self, topic: str, partition: int) -> PartitionState | None:
        raise NotImplementedError

    def partition_views(self, topic: str, partition: int) -> list[PartitionState]:
        """Every view of the partition the environment can read (one per answering broker
        where it can ask each): views may differ while metadata propagates or a broker is
        cut off. By default the one view of :meth:`partition_state`."""
        state = self.partition_state(topic, partition)
        return [] if state is None else [state]

    def node_addresses(self) -> dict[str, str]:
        """Each broker's real address (``host:port``, around every proxy), for observers that
        must not be cut off by the faults they watch; empty where they are not known."""
        return {}

    def replica_placement(self, partitions: int, replication_factor: int) -> list[list[int]] | None:
        """The replicas (broker ids, preferred leader first) a campaign topic's partitions
        should get, or None to let the brokers place them."""
        return None

    def wait_recovered(self, topic: str, partitions: int, timeout_s: float = RECOVERY_TIMEOUT_S) -> list[str]:
        """Wait until every partition of ``topic`` is served again (and fully replicated where
        the environment can see it); returns warnings for what did not recover in time."""
        return self._wait_served(topic, partitions, timeout_s)

    # --- process control (environments with it override these) --------------------------------

    @property
    def process_control(self) -> bool:
        return self.target is not None and PROCESS_CONTROL in self.target.capabilities

    @property
    def durable(self) -> bool:
        """Acknowledged records survive a process restart."""
        return self.target is not None and DURABLE_STORAGE in self.target.capabilities

    def _controlled(self, node: str) -> ProcessControl:
        """The process behind ``node``; environments with process control override this."""
        raise ChaosEnvironmentError(f"the {self.name} target has no process control")

    def kill(self, node: str) -> None:
        self._controlled(node).kill()

    def pause(self, node: str) -> None:
        self._controlled(node).pause()

    def resume(self, node: str) -> None:
        self._controlled(node).resume()

    def stop(self, node: str) -> None:
        self._controlled(node).stop()

    def start_node(self, node: str) -> None:
        process = self._controlled(node)
        if not process.running:
            process.start()

    def wipe(self, node: str) -> None:
        raise ChaosEnvironmentError(f"the {self.name} target cannot wipe a node's data")

    def running(self, node: str) -> bool:
        return not self.process_control or bool(self._controlled(node).running)

    # --- shared --------------------------------------------------------------------------------

    @property
    def configures_brokers(self) -> bool:
        """The harness writes the brokers' configuration (``--override`` keys reach them)."""
        return False

    @property
    def names_controller(self) -> bool:
        """A fault can be aimed at "the controller" (:meth:`controller_node`)."""
        return CONTROLLER in self.nodes

    def controller_node(self) -> str | None:
        """The node a fault aimed at "the controller" hits now: the separate controller node,
        or (controllers inside the brokers) the node whose controller is active; None if the
        environment cannot tell."""
        return CONTROLLER if CONTROLLER in self.nodes else None

    def leader(self, topic: str, partition: int) -> str | None:
        state = self.partition_state(topic, partition)
        return None if state is None else state.leader

    def describe(self) -> dict[str, Any]:
        info = {} if self.target is None else self.target.describe()
        return {**info, "nodes": self.nodes, "bootstrap": self.bootstrap,
                "proxies": self.topology.describe()}

    def _wait_served(self, topic: str, partitions: int, timeout_s: float) -> list[str]:
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

    def __enter__(self) -> Environment:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


# --- reference ------------------------------------------------------------------------------------

# Timing for campaigns, on the reference cluster and on Kafka alike: failures are noticed in
# 1.5 s instead of Kafka's 9 s (a broker is fenced after 9 s without a heartbeat, a follower
# leaves the ISR after 30 s, backs off 1 s after a fetch error and waits 30 s for a fetch
# answer), so a campaign of a few tens of seconds sees many failovers. Every key can be
# overridden (--override).
CAMPAIGN_TIMING: Mapping[str, str] = {
    "broker.session.timeout.ms": "1500",
    "broker.heartbeat.interval.ms": "300",
    "replica.lag.time.max.ms": "3000",
    "replica.fetch.wait.max.ms": "200",
    "replica.fetch.backoff.ms": "100",
    "replica.socket.timeout.ms": "3000",
    "offsets.topic.num.partitions": "3",
}
REFERENCE_TIMING: Mapping[str, str] = {**CAMPAIGN_TIMING, "group.initial.rebalance.delay.ms": "0"}


class ClusterEnvironment(Environment):
    """A cluster the harness launches with every link proxied, whose per-node API is
    ``ReferenceCluster``'s (``KafkaCluster`` mirrors it): what the reference and Kafka
    environments share. Subclasses start ``self._target`` and name the nodes."""

    def __init__(self, topology: Topology) -> None:
        super().__init__(topology)
        self._target: Any = None  # a started target whose ``cluster`` has that per-node API

    @property
    def configures_brokers(self) -> bool:
        return True

    @property
    def cluster(self) -> Any:
        if self._target is None or self._target.cluster is None:
            raise ChaosEnvironmentError(f"the {self.name} cluster is not started")
        return self._target.cluster

    @property
    def bootstrap(self) -> str:
        return str(self.cluster.bootstrap)

    @property
    def brokers(self) -> list[str]:
        return [broker_name(i) for i in sorted(self.cluster.brokers)]

    def _controlled(self, node: str) -> ManagedNode:
        try:
            node_of_cluster: ManagedNode = self.cluster.node(node_id(node))
            return node_of_cluster
        except (KeyError, ValueError) as exc:
            raise ChaosEnvironmentError(f"no node {node!r} in this cluster (nodes: {', '.join(self.nodes)})") from exc

    def wipe(self, node: str) -> None:
        """SIGKILL and delete its data (a replaced disk); :meth:`start_node` brings it back
        empty under the same id."""
        self._controlled(node).wipe()

    def running(self, node: str) -> bool:
        target = self._controlled(node)
        return bool(target.running and not target.paused)

    def node_addresses(self) -> dict[str, str]:
        return {broker_name(nid): f"{node.address[0]}:{node.address[1]}" for nid, node in self.cluster.brokers.items()}

    def partition_state(self, topic: str, partition: int) -> PartitionState | None:
        """The view of the running broker that knows the newest leader epoch."""
        best: PartitionState | None = None
        for state in self.partition_views(topic, partition):
            if best is None or state.leader_epoch > best.leader_epoch:
                best = state
        return best

    def partition_views(self, topic: str, partition: int) -> list[PartitionState]:
        """The view of every running broker that answers Metadata (at its real address)."""
        views = []
        for nid, node in self.cluster.brokers.items():
            if not node.running or node.paused:
                continue
            try:
                view = self.cluster.metadata(nid, [topic])
            except Exception:  # noqa: BLE001 - a broker starting or stopping: ask the others
                continue
            p = view.partition(topic, partition)
            if p is None:
                continue
            views.append(PartitionState(broker_name(p.leader) if p.leader >= 0 else None, p.leader_epoch,
                                        tuple(broker_name(r) for r in p.replicas),
                                        tuple(broker_name(r) for r in p.isr)))
        return views

    def wait_recovered(self, topic: str, partitions: int, timeout_s: float = RECOVERY_TIMEOUT_S) -> list[str]:
        """Every node running, every broker registered, and every partition led by a live
        broker with all its replicas back in the ISR (so the high watermark covers every
        acknowledged record before the drain reads to it)."""
        cluster = self.cluster
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
                state = self.partition_state(topic, p)
                if state is None or state.leader is None or set(state.isr) != set(state.replicas):
                    return False
            return True

        try:
            cluster.wait_until(replicated, max(1.0, deadline - time.monotonic()),
                               f"every partition of {topic} to be led with a full ISR")
        except Exception as exc:  # noqa: BLE001
            warnings.append(str(exc).splitlines()[0])
        return warnings + self._wait_served(topic, partitions, max(5.0, deadline - time.monotonic()))


class ReferenceEnvironment(ClusterEnvironment):
    """A reference cluster with every path proxied."""

    name = "reference"
    reserved_keys = REFERENCE_RESERVED_KEYS

    @classmethod
    def create(cls, topology: Topology, options: EnvironmentOptions) -> Environment:
        return cls(topology, options.brokers, options.overrides)

    def __init__(self, topology: Topology, brokers: int = 3, overrides: Mapping[str, str] | None = None,
                 log_level: str = "WARNING") -> None:
        super().__init__(topology)
        self.broker_count = brokers
        self.overrides = {**REFERENCE_TIMING, **(overrides or {})}
        self.log_level = log_level

    @property
    def brokers(self) -> list[str]:
        return [broker_name(i) for i in range(1, self.broker_count + 1)]

    @property
    def nodes(self) -> list[str]:
        return [*self.brokers, CONTROLLER]

    def start(self) -> ReferenceEnvironment:
        self._target = ReferenceTarget(self.broker_count, self.overrides, log_level=self.log_level,
                                       link_address=self.topology.cluster_link_address)
        self.target = self._target
        self._target.start()
        return self

    def wipe(self, node: str) -> None:
        if node == CONTROLLER:
            raise ChaosEnvironmentError("wiping the controller loses the cluster's metadata: not supported")
        super().wipe(node)


# --- kafka ----------------------------------------------------------------------------------------

# Kafka keeps its quorum's own timeouts (controller.quorum.*) and moves leaders only because of
# faults.
KAFKA_TIMING: Mapping[str, str] = {**CAMPAIGN_TIMING, "transaction.state.log.num.partitions": "3",
                                   "auto.leader.rebalance.enable": "false"}


class KafkaEnvironment(ClusterEnvironment):
    """Apache Kafka in KRaft combined mode (``harness.targets.kafka``), every link proxied.

    Each node ``bJ`` is a broker and a controller in one JVM. Clients reach ``bJ`` through
    ``clients -> bJ`` (the address it advertises); node I reaches node J through two proxies,
    ``bI -> bJ`` of kind ``replication`` (follower fetches, on the listener ``REPLICA_FROM_I``)
    and of kind ``controller`` (Raft traffic to J's controller, and I's heartbeats and
    AlterPartition when J is the active controller). A node's broker and its own controller
    talk inside the JVM: no proxy can cut that. There is no separate controller node: a fault
    aimed at "the controller" is aimed at the active controller's node, looked up with
    DescribeQuorum when the fault starts.
    """

    name = "kafka"
    takes_version = True
    reserved_keys = KAFKA_RESERVED_KEYS

    @classmethod
    def create(cls, topology: Topology, options: EnvironmentOptions) -> Environment:
        return cls(topology, options.brokers, options.overrides, options.version)

    def __init__(self, topology: Topology, brokers: int = 3, overrides: Mapping[str, str] | None = None,
                 version: str | None = None, log_level: str = "INFO") -> None:
        super().__init__(topology)
        self.broker_count = brokers
        self.overrides = {**KAFKA_TIMING, **(overrides or {})}
        self.version = version
        self.log_level = log_level

    @property
    def brokers(self) -> list[str]:
        return [broker_name(i) for i in range(1, self.broker_count + 1)]

    def start(self) -> KafkaEnvironment:
        from harness.targets.kafka import KafkaTarget

        self._target = KafkaTarget(self.version, self.broker_count, self.overrides,
                                   link_address=self._link_address, log_level=self.log_level)
        self.target = self._target
        self._target.start()
        return self

    def _link_address(self, link: Any, address: tuple[str, int]) -> tuple[str, int]:
        """A proxy per link, listening on a port the cluster has not reserved for a node: the
        cluster picks every node's ports before it asks for links, and binds them only when
        the JVMs start, so a proxy on a port of the kernel's choice could take one of them."""
        from launch.ports import free_port

        taken = self.cluster.taken_ports
        port = free_port("127.0.0.1", taken)
        taken.append(port)
        return self.topology.combined_link_address(link, address, listen=f"127.0.0.1:{port}")

    def start_node(self, node: str) -> None:
        """Launch the JVM again and return without waiting for it: a Kafka node finishes
        starting only once a quorum of controllers answers, which may need the other nodes
        of the same fault (they are started after it). :meth:`wait_recovered` waits."""
        target = self._controlled(node)
        if not target.running:
            target.launch()

    @property
    def names_controller(self) -> bool:
        return True

    def controller_node(self) -> str | None:
        """The node whose controller is active now (the Raft leader of ``__cluster_metadata``)."""
        nid = self.cluster.active_controller()
        return None if nid is None else broker_name(nid)

    def replica_placement(self, partitions: int, replication_factor: int) -> list[list[int]] | None:
        """Keep the replicas off the node whose controller is active, when there are nodes
        enough: a fault aimed at a replica (isolate or kill the leader or a follower) then
        never also cuts off or kills the active controller, whose loss would add a quorum
        election (and, with one voter of three cut off and another killed, no quorum at all)
        to the fault. Partitions rotate over the other nodes; None (the brokers place them)
        when the replicas need every node or no controller can be named."""
        ids = sorted(int(i) for i in self.cluster.brokers)
        if replication_factor >= len(ids):
            return None
        active = self.cluster.active_controller()
        if active is None:
            return None
        others = [i for i in ids if i != active]
        return [[others[(p + k) % len(others)] for k in range(replication_factor)] for p in range(partitions)]


# --- tansu -----------------------------------------------------------------------------------------


class TansuEnvironment(Environment):
    """One Tansu process behind one client proxy (it advertises the proxy)."""

    name = "tansu"
    single_node = True

    @classmethod
    def create(cls, topology: Topology, options: EnvironmentOptions) -> Environment:
        return cls(topology)

    def __init__(self, topology: Topology) -> None:
        super().__init__(topology)
        self._target: TansuTarget | None = None
        self._node = "b1"

    @property
    def bootstrap(self) -> str:
        address = self.topology.client_address(self._node)
        if address is None:
            raise ChaosEnvironmentError("the tansu target is not started")
        return address

    @property
    def brokers(self) -> list[str]:
        return [self._node]

    def start(self) -> TansuEnvironment:
        from launch.ports import free_port

        port = free_port()
        link = self.topology.add(CLIENTS, self._node, "client", f"127.0.0.1:{port}")
        self._target = TansuTarget(port=port, advertised=link.listen)
        self.target = self._target
        self._target.start()
        return self

    def _controlled(self, node: str) -> ProcessControl:
        if node != self._node or self._target is None or self._target.process is None:
            raise ChaosEnvironmentError(f"no node {node!r} (the tansu target has one: {self._node})")
        return self._target.process

    def node_addresses(self) -> dict[str, str]:
        return {} if self._target is None else {self._node: f"127.0.0.1:{self._target.port}"}

    def partition_state(self, topic: str, partition: int) -> PartitionState | None:
        return PartitionState(self._node, 0, (self._node,), (self._node,))

    def wait_recovered(self, topic: str, partitions: int, timeout_s: float = RECOVERY_TIMEOUT_S) -> list[str]:
        process = self._controlled(self._node)
        process.resume()
        if not process.running:
            process.start()
        return self._wait_served(topic, partitions, timeout_s)


# --- external --------------------------------------------------------------------------------------


def parse_proxies(pairs: Sequence[str]) -> list[tuple[str, str]]:
    """``LISTEN=UPSTREAM`` pairs (both ``HOST:PORT``), validated."""
    out = []
    for pair in pairs:
        listen, sep, upstream = pair.partition("=")
        for part in (listen, upstream):
            host, colon, port = part.rpartition(":")
            if not sep or not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ChaosEnvironmentError(f"--proxy {pair!r}: expected LISTEN=UPSTREAM, both HOST:PORT "
                                        "(e.g. 127.0.0.1:19092=127.0.0.1:9092)")
        out.append((listen, upstream))
    return out


class ExternalEnvironment(Environment):
    """Brokers someone else runs, each advertising a client proxy the harness creates."""

    name = "external"
    launched = False

    @classmethod
    def create(cls, topology: Topology, options: EnvironmentOptions) -> Environment:
        if not options.proxies and not options.bootstrap:
            raise TargetError("--target external needs --proxy LISTEN=UPSTREAM for each broker (see docs/chaos.md)")
        return cls(topology, options.proxies, options.bootstrap, options.capabilities)

    def __init__(self, topology: Topology, proxies: Sequence[tuple[str, str]],
                 bootstrap: str | None = None, capabilities: Sequence[str] = ()) -> None:
        super().__init__(topology)
        self.proxies = list(proxies)
        self._bootstrap = bootstrap
        self.capabilities = tuple(capabilities)
        self._names: dict[str, str] = {}  # advertised HOST:PORT -> node name
        self._upstreams: dict[str, str] = {}  # node name -> real HOST:PORT

    @property
    def bootstrap(self) -> str:
        if self.proxies:
            return ",".join(listen for listen, _ in self.proxies)
        if self._bootstrap is None:
            raise ChaosEnvironmentError("--target external needs --proxy LISTEN=UPSTREAM (or --bootstrap)")
        return self._bootstrap

    @property
    def brokers(self) -> list[str]:
        return sorted(self._upstreams, key=lambda n: node_id(n))

    def start(self) -> ExternalEnvironment:
        from harness.session import SessionError, WireSession

        created: dict[str, str] = {}
        for listen, upstream in self.proxies:
            self.topology.add(CLIENTS, f"proxy-{len(created)}", "client", upstream, listen)
            created[listen] = upstream
        # Which broker is behind which proxy: ask Metadata through the proxies and match what
        # each broker advertises; a broker that does not advertise a proxy cannot be cut.
        try:
            with WireSession(self.bootstrap, timeout_s=10.0) as session:
                response = session.metadata([])
        except (SessionError, OSError) as exc:
            raise TargetError(f"the external brokers do not answer Metadata at {self.bootstrap}: {exc}") from exc
        advertised = {f"{b.host}:{b.port}": int(b.node_id) for b in response.brokers}
        unproxied = sorted(set(advertised) - set(created))
        if self.proxies and unproxied:
            raise TargetError(
                f"brokers advertise {', '.join(unproxied)}, which no --proxy listens on: clients would "
                "bypass the proxies. Make every broker advertise its proxy's LISTEN address "
                "(advertised.listeners), see docs/chaos.md")
        # Rename the proxies after the brokers behind them.
        renamed = {}
        for (source, _target, kind), link in list(self.topology.links.items()):
            nid = advertised.get(link.listen)
            if nid is not None:
                renamed[(source, broker_name(nid), kind)] = attrs.evolve(link, target=broker_name(nid))
                self._upstreams[broker_name(nid)] = link.upstream
                self._names[link.listen] = broker_name(nid)
        self.topology.links = renamed
        if not self.proxies:  # no proxies: no network faults, but leaders can still be looked up
            for address, nid in advertised.items():
                self._upstreams[broker_name(nid)] = address
        self.target = ExternalTarget(self.bootstrap, self.capabilities)
        self.target.start()
        return self

    def node_addresses(self) -> dict[str, str]:
        return dict(self._upstreams)

    def partition_state(self, topic: str, partition: int) -> PartitionState | None:
        from harness.session import SessionError, WireSession

        best: PartitionState | None = None
        for upstream in self._upstreams.values():
            try:
                with WireSession(upstream, timeout_s=3.0) as session:
                    response = session.metadata([topic])
            except (SessionError, OSError):
                continue
            for t in response.topics:
                for p in t.partitions:
                    if t.name != topic or int(p.partition_index) != partition:
                        continue
                    leader = int(p.leader_id)
                    state = PartitionState(broker_name(leader) if leader >= 0 else None, int(p.leader_epoch),
                                           tuple(broker_name(int(r)) for r in p.replica_nodes),
                                           tuple(broker_name(int(r)) for r in p.isr_nodes))
                    if best is None or state.leader_epoch > best.leader_epoch:
                        best = state
        return best


ENVIRONMENTS: Mapping[str, type[Environment]] = {
    cls.name: cls for cls in (ReferenceEnvironment, KafkaEnvironment, TansuEnvironment, ExternalEnvironment)
}
"""Every target a chaos campaign runs against, by name."""


@attrs.frozen
class EnvironmentOptions:
    """What the command line says about the target (each kind takes what it needs)."""

    brokers: int = 3
    overrides: Mapping[str, str] = attrs.field(factory=dict)
    proxies: Sequence[tuple[str, str]] = ()
    bootstrap: str | None = None
    capabilities: Sequence[str] = ()
    version: str | None = None


def make_environment(target: str, topology: Topology, options: EnvironmentOptions) -> Environment:
    """An environment by target name (not started)."""
    kind = ENVIRONMENTS.get(target)
    if kind is None:
        raise TargetError(f"chaos campaigns run against {', '.join(ENVIRONMENTS)}, not {target!r}")
    return kind.create(topology, options)
