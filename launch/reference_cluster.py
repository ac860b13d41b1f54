"""Run a reference cluster: one controller process and N broker processes on loopback.

:class:`ReferenceCluster` is what tests, the harness and ``kconform cluster`` use::

    with ReferenceCluster(brokers=3, overrides={"broker.session.timeout.ms": "1500"}) as cluster:
        cluster.wait_ready()
        producer = Producer({"bootstrap.servers": cluster.bootstrap})
        leader, epoch = cluster.wait_for_leader("t", 0)
        cluster.broker(leader).kill()                    # SIGKILL
        cluster.wait_for_leader("t", 0, not_node=leader)  # fenced after the session timeout
        cluster.broker(leader).restart()                 # same data, same port

Layout: the controller is node 0 (``process.roles=controller``, listener ``CONTROLLER``) and
brokers are nodes 1..N (``process.roles=broker``). Every node gets its own directory under one
base directory (a temporary one unless given), formatted like ``kafka-storage format`` does
(``meta.properties`` with one cluster id), and its own free port, chosen before anything starts
so that every address is known up front.

**Every network path can be redirected** (for fault injection, e.g. a Toxiproxy proxy per link):
``link_address(link, address)`` is asked once per directed :class:`Link` before the nodes start
and returns the address to use instead of the real one:

* ``Link(CLIENT, None, j)``: what broker j advertises to clients (``advertised.listeners``);
* ``Link(CONTROLLER, i, 0)``: where broker i reaches the controller
  (its own ``controller.quorum.voters``);
* ``Link(REPLICATION, i, j)``: where broker i reaches broker j
  (``kconform.replica.peer.addresses``).

Nothing is left running: :meth:`ReferenceCluster.close` (the context manager's exit, also on an
exception or Ctrl-C, and at interpreter exit as a last resort) kills every process it started
and removes the base directory it created.
"""

from __future__ import annotations

import asyncio
import atexit
import enum
import shutil
import tempfile
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import attrs
from kio.schema.errors import ErrorCode

from launch.broker_process import DEFAULT_START_TIMEOUT_S, BrokerProcess
from launch.node import ManagedNode
from launch.ports import free_port
from reference_broker.drivers.wire_client import WireClient
from reference_broker.groups import OFFSETS_TOPIC
from reference_broker.log.meta_properties import format_directory, new_cluster_id

CONTROLLER_ID = 0
MAX_BROKERS = 9  # what one machine runs usefully; every command that launches brokers takes 1 to this
CONTROLLER_LISTENER = "CONTROLLER"
BROKER_LISTENER = "PLAINTEXT"
DEFAULT_WAIT_S = 30.0
POLL_S = 0.05
REQUEST_TIMEOUT_S = 2.0
# Keys the launcher sets per node; an override of one would break the cluster's wiring.
RESERVED_KEYS = frozenset({
    "process.roles", "node.id", "broker.id", "listeners", "advertised.listeners", "log.dirs",
    "log.dir", "controller.quorum.voters", "controller.listener.names",
    "kconform.replica.peer.addresses",
})

Address = tuple[str, int]


class ClusterError(RuntimeError):
    """The cluster did not start, or did not reach a state in time."""


class LinkKind(enum.Enum):
    CLIENT = "client"  # clients -> broker j: the address broker j advertises
    CONTROLLER = "controller"  # broker i -> the controller
    REPLICATION = "replication"  # broker i -> broker j (follower fetches)


@attrs.frozen(slots=True)
class Link:
    """One directed network path of the cluster: ``source`` (a broker id, None for clients)
    connects to ``target`` (a node id)."""

    kind: LinkKind
    source: int | None
    target: int

    def __str__(self) -> str:
        source = "clients" if self.source is None else f"broker {self.source}"
        target = "controller" if self.kind is LinkKind.CONTROLLER else f"broker {self.target}"
        return f"{source} -> {target}"


LinkAddress = Callable[[Link, Address], Address]


def _same_address(link: Link, address: Address) -> Address:
    return address


# --- what a broker says in Metadata ------------------------------------------------------------


@attrs.frozen(slots=True)
class PartitionView:
    topic: str
    partition: int
    error: str  # Kafka's error name (NONE, LEADER_NOT_AVAILABLE, ...)
    leader: int
    leader_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    offline_replicas: tuple[int, ...]


@attrs.frozen(slots=True)
class MetadataView:
    """One broker's Metadata answer, simplified."""

    node_id: int  # the broker asked
    brokers: Mapping[int, Address]  # live brokers and the addresses they advertise
    controller_id: int
    topics: Mapping[str, Mapping[int, PartitionView]]
    topic_errors: Mapping[str, str]  # topic -> Kafka's error name

    def partition(self, topic: str, partition: int) -> PartitionView | None:
        return self.topics.get(topic, {}).get(partition)


async def _metadata(address: Address, topics: list[str] | None) -> Any:
    async with WireClient(address[0], address[1], REQUEST_TIMEOUT_S) as client:
        return await client.call(3, 12, {
            "topics": None if topics is None else [{"name": name} for name in topics],
            "allow_auto_topic_creation": False,
            "include_topic_authorized_operations": False,
        })


async def _find_coordinator(address: Address, group: str) -> Any:
    async with WireClient(address[0], address[1], REQUEST_TIMEOUT_S) as client:
        return await client.call(10, 3, {"key": group, "key_type": 0})


def metadata_view(node_id: int, response: Any) -> MetadataView:
    """A Metadata response as a :class:`MetadataView` of broker ``node_id``."""
    topics: dict[str, dict[int, PartitionView]] = {}
    errors: dict[str, str] = {}
    for topic in response.topics:
        if topic.error_code != ErrorCode.none:
            errors[topic.name] = topic.error_code.name.upper()
            continue
        topics[topic.name] = {
            p.partition_index: PartitionView(
                topic.name, p.partition_index, p.error_code.name.upper(), p.leader_id, p.leader_epoch,
                tuple(p.replica_nodes), tuple(p.isr_nodes), tuple(p.offline_replicas),
            )
            for p in topic.partitions
        }
    return MetadataView(
        node_id, {b.node_id: (b.host, b.port) for b in response.brokers},
        response.controller_id, topics, errors,
    )


_LIVE: weakref.WeakSet[ProcessCluster] = weakref.WeakSet()
"""Clusters started and not closed yet (of either launcher): killed when the interpreter exits."""


@atexit.register
def _close_leftovers() -> None:
    for cluster in list(_LIVE):
        cluster.kill_all()


class ProcessCluster:
    """What a cluster of broker processes does the same way here and in harness's Apache Kafka
    cluster: a context manager that never leaves half a cluster behind, SIGKILL of every node,
    and waiting for what the brokers' Metadata says. A subclass gives ``nodes`` and ``brokers``
    (node id -> a node with ``running`` and ``paused``), ``start``, ``stop_all``, ``metadata`` and
    ``describe``, sets itself up with :meth:`_configure`, and may widen ``transient`` (errors that
    mean "ask again") and ``failure`` (what a timeout raises)."""

    brokers: Mapping[int, ManagedNode]
    failure: type[Exception] = ClusterError
    transient: tuple[type[BaseException], ...] = (OSError, asyncio.TimeoutError, ConnectionError)
    wait_s: float = DEFAULT_WAIT_S  # how long a wait lasts unless told
    reserved_keys: frozenset[str] = RESERVED_KEYS  # set by the launcher for each node, never overridden
    clean_stop_of_own_data = True  # False: close(clean=True) skips the stop when it removes the data anyway

    def _configure(self, overrides: dict[str, str], node_overrides: Mapping[int, Mapping[str, str]] | None,
                   base_dir: Path | None, dir_prefix: str, host: str, log_level: str,
                   link_address: LinkAddress | None) -> None:
        """What each launcher's constructor sets the same way before it makes its nodes: the
        configuration (refusing the keys it sets per node), the data directory (a new temporary
        one, removed by :meth:`close`, when ``base_dir`` is None) and how links are addressed."""
        self.overrides = overrides
        self.node_overrides = {node: dict(values) for node, values in (node_overrides or {}).items()}
        for values in (self.overrides, *self.node_overrides.values()):
            reserved = sorted(self.reserved_keys & values.keys())
            if reserved:
                raise ValueError(f"{', '.join(reserved)}: set by the cluster launcher for each node "
                                 "(use link_address to change addresses)")
        self.host = host
        self.log_level = log_level
        self._own_dir = base_dir is None
        self.base_dir = Path(tempfile.mkdtemp(prefix=dir_prefix)) if base_dir is None else base_dir
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self._link_address = link_address or _same_address
        self.links: dict[Link, Address] = {}
        self._planned = False
        self._closed = False

    @property
    def nodes(self) -> Sequence[ManagedNode]:
        """Every process of the cluster."""
        raise NotImplementedError

    def node(self, node_id: int) -> ManagedNode:
        """The process of node ``node_id`` (KeyError if there is none)."""
        raise NotImplementedError

    @property
    def bootstrap(self) -> str:
        raise NotImplementedError

    def start(self, timeout_s: float = DEFAULT_START_TIMEOUT_S) -> Self:
        raise NotImplementedError

    def wait_for_brokers(self, expected: Iterable[int] | None = None, timeout_s: float = DEFAULT_WAIT_S) -> None:
        """Wait until every broker (or ``expected``) is registered and unfenced."""
        raise NotImplementedError

    def active_controller(self) -> int | None:
        """The node whose controller is active now, where controllers live in the brokers."""
        return None

    def stop_all(self, timeout_s: float = 30.0) -> None:
        raise NotImplementedError

    def _opening(self) -> None:
        """Called first by ``start``: refuses a closed cluster, and has the processes it is about
        to start killed at exit should the cluster never be closed."""
        if self._closed:
            raise self.failure("this cluster has been closed")
        _LIVE.add(self)

    def close(self, clean: bool = False) -> None:
        """Stop everything (cleanly when ``clean``, else SIGKILL) and remove the base directory
        if this cluster created it. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            if clean and (self.clean_stop_of_own_data or not self._own_dir):
                self.stop_all()
        finally:
            self.kill_all()
            _LIVE.discard(self)
            if self._own_dir:
                shutil.rmtree(self.base_dir, ignore_errors=True)

    def metadata(self, node_id: int | None = None, topics: list[str] | None = None) -> MetadataView:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:  # also Ctrl-C: never leave half a cluster behind
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(clean=exc_type is None)

    def kill_all(self) -> None:
        """SIGKILL every process of the cluster (no clean shutdown)."""
        for node in self.nodes:
            try:
                node.kill()
            except Exception:  # keep going: the others must die too
                pass

    def _views(self, topics: list[str] | None) -> list[MetadataView]:
        """Metadata from every running, unpaused broker (those that do not answer are left out)."""
        views = []
        for node_id, node in self.brokers.items():
            if node.running and not node.paused:
                try:
                    views.append(self.metadata(node_id, topics))
                except Exception:  # a broker starting or stopping: ask again later
                    continue
        return views

    def wait_until(self, condition: Callable[[], Any], timeout_s: float | None = None,
                   what: str = "the condition") -> Any:
        """Poll ``condition`` until it returns something truthy (returned), or fail."""
        timeout_s = self.wait_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                result = condition()
            except self.transient:
                result = None
            if result:
                return result
            if time.monotonic() >= deadline:
                raise self.failure(f"timed out after {timeout_s:.0f} s waiting for {what}\n"
                                   + self.describe())
            time.sleep(POLL_S)


    def wait_for_leader(
        self, topic: str, partition: int, not_node: int | None = None,
        timeout_s: float | None = None,
    ) -> tuple[int, int]:
        """Until every running broker agrees that ``topic``-``partition`` has a live leader
        (other than ``not_node``); returns (leader, leader epoch)."""

        def agreed() -> tuple[int, int] | None:
            views = self._views([topic])
            seen = {(p.leader, p.leader_epoch) for v in views
                    if (p := v.partition(topic, partition)) is not None}
            if len(views) == 0 or len(seen) != 1:
                return None
            leader, epoch = next(iter(seen))
            if leader < 0 or leader == not_node or leader not in views[0].brokers:
                return None
            if len([v for v in views if v.partition(topic, partition)]) != len(views):
                return None
            return leader, epoch

        result: tuple[int, int] = self.wait_until(
            agreed, timeout_s,
            f"a leader of {topic}-{partition}" + ("" if not_node is None else f" other than {not_node}"),
        )
        return result


# --- nodes ---------------------------------------------------------------------------------------


class ClusterNode(ManagedNode):
    """One process of the cluster (the controller or a broker) and what can be done to it."""

    start_timeout_s = DEFAULT_START_TIMEOUT_S

    def __init__(self, cluster: ReferenceCluster, node_id: int, role: str, port: int) -> None:
        self.cluster = cluster
        self.node_id = node_id
        self.role = role
        self.directory = cluster.base_dir / f"{role}-{node_id}"
        self.address: Address = (cluster.host, port)  # where it really listens
        self.process: BrokerProcess = BrokerProcess(
            data_dir=self.directory,
            host=cluster.host,
            port=port,
            log_level=cluster.log_level,
            listener_name=CONTROLLER_LISTENER if role == "controller" else BROKER_LISTENER,
        )

    def __repr__(self) -> str:
        state = "paused" if self.paused else "running" if self.running else "stopped"
        return f"<{self.role} {self.node_id} at {self.address[0]}:{self.address[1]} {state}>"

    @property
    def data_dir(self) -> Path:
        """The node's log.dirs (its broker.log is beside it, in :attr:`directory`)."""
        return self.directory / "data"

    @property
    def log_path(self) -> Path:
        return self.process.log_path

    def format(self) -> None:
        format_directory(self.data_dir, self.cluster.cluster_id, self.node_id)

    def launch(self) -> None:
        self.process.launch()

    def wait_started(self, timeout_s: float | None = None) -> None:
        self.process.wait_started(self.start_timeout_s if timeout_s is None else timeout_s)


# --- the cluster ---------------------------------------------------------------------------------


class ReferenceCluster(ProcessCluster):
    """A controller and ``brokers`` broker processes; see the module docstring."""

    def __init__(
        self,
        brokers: int = 3,
        overrides: Mapping[str, str] | None = None,
        *,
        node_overrides: Mapping[int, Mapping[str, str]] | None = None,
        link_address: LinkAddress | None = None,
        base_dir: Path | None = None,
        host: str = "127.0.0.1",
        log_level: str = "INFO",
    ) -> None:
        if brokers < 1:
            raise ValueError(f"a cluster needs at least one broker, not {brokers}")
        self._configure(dict(overrides or {}), node_overrides, base_dir, "kconform-cluster-", host, log_level,
                        link_address)
        self.cluster_id = new_cluster_id()
        taken: list[int] = []
        for _ in range(brokers + 1):
            taken.append(free_port(host, taken))
        self.controller = ClusterNode(self, CONTROLLER_ID, "controller", taken[0])
        self.brokers: dict[int, ClusterNode] = {
            node: ClusterNode(self, node, "broker", taken[node]) for node in range(1, brokers + 1)
        }

    # --- addresses --------------------------------------------------------------------------

    def broker(self, node_id: int) -> ClusterNode:
        return self.brokers[node_id]

    def node(self, node_id: int) -> ClusterNode:
        return self.controller if node_id == CONTROLLER_ID else self.brokers[node_id]

    @property
    def nodes(self) -> list[ClusterNode]:
        return [self.controller, *self.brokers.values()]

    def advertised(self, node_id: int) -> Address:
        """The address broker ``node_id`` gives clients (a proxy, if link_address chose one)."""
        return self.links[Link(LinkKind.CLIENT, None, node_id)]

    @property
    def bootstrap(self) -> str:
        """``bootstrap.servers`` for clients: every broker's advertised address."""
        return ",".join(f"{host}:{port}" for host, port in
                        (self.advertised(node) for node in self.brokers))

    def _plan_links(self) -> None:
        """Ask link_address for every directed link, once, before anything starts."""
        if self._planned:
            return
        controller = self.controller.address
        for j, target in self.brokers.items():
            self.links[Link(LinkKind.CLIENT, None, j)] = self._link_address(
                Link(LinkKind.CLIENT, None, j), target.address)
        for i in self.brokers:
            link = Link(LinkKind.CONTROLLER, i, CONTROLLER_ID)
            self.links[link] = self._link_address(link, controller)
            for j, target in self.brokers.items():
                if i != j:
                    link = Link(LinkKind.REPLICATION, i, j)
                    self.links[link] = self._link_address(link, target.address)
        self._planned = True

    def _node_settings(self, node: ClusterNode) -> dict[str, str]:
        settings = dict(self.overrides)
        if node.role == "controller":
            settings.update({
                "process.roles": "controller",
                "node.id": str(node.node_id),
                "controller.listener.names": CONTROLLER_LISTENER,
            })
        else:
            controller = self.links[Link(LinkKind.CONTROLLER, node.node_id, CONTROLLER_ID)]
            host, port = self.advertised(node.node_id)
            peers = ",".join(
                f"{j}@{self.links[Link(LinkKind.REPLICATION, node.node_id, j)][0]}:"
                f"{self.links[Link(LinkKind.REPLICATION, node.node_id, j)][1]}"
                for j in self.brokers if j != node.node_id
            )
            settings.setdefault("offsets.topic.replication.factor", str(min(3, len(self.brokers))))
            # Kafka's defaults for __transaction_state where the cluster can hold them.
            settings.setdefault("transaction.state.log.replication.factor", str(min(3, len(self.brokers))))
            settings.setdefault("transaction.state.log.min.isr", str(min(2, len(self.brokers))))
            settings.update({
                "process.roles": "broker",
                "node.id": str(node.node_id),
                "advertised.listeners": f"{BROKER_LISTENER}://{host}:{port}",
                "controller.quorum.voters": f"{CONTROLLER_ID}@{controller[0]}:{controller[1]}",
            })
            if peers:
                settings["kconform.replica.peer.addresses"] = peers
        settings.update(self.node_overrides.get(node.node_id, {}))
        return settings

    # --- lifecycle --------------------------------------------------------------------------

    def start(self, timeout_s: float = DEFAULT_START_TIMEOUT_S) -> Self:
        """Format the directories (first start), start every process at once and wait for
        their ready lines. Use :meth:`wait_ready` for the cluster to be usable."""
        self._opening()
        self._plan_links()
        for node in self.nodes:
            if not (node.data_dir / "meta.properties").exists():
                node.format()
            node.process.overrides = self._node_settings(node)
        try:
            for node in self.nodes:
                if not node.running:
                    node.launch()
            for node in self.nodes:
                node.wait_started(timeout_s)
        except BaseException:
            self.kill_all()
            raise
        return self

    def stop_all(self, timeout_s: float = 20.0) -> None:
        """Stop every process cleanly: all brokers together (each moves its leadership away
        while the controller still runs), then the controller."""
        brokers = [node for node in self.brokers.values() if node.running]
        for node in brokers:
            node.process.terminate()
        deadline = time.monotonic() + timeout_s
        for node in brokers:
            node.stop(max(0.1, deadline - time.monotonic()))
        self.controller.stop(timeout_s)

    def describe(self) -> str:
        """Where everything is: addresses, redirected links, data directories."""
        lines = [f"cluster {self.cluster_id}, data in {self.base_dir}"]
        lines.append(f"  controller {CONTROLLER_ID}: {self.controller.address[0]}:"
                     f"{self.controller.address[1]} ({self.controller.directory})")
        for node_id, node in self.brokers.items():
            host, port = node.address
            adv = self.advertised(node_id) if self._planned else node.address
            shown = "" if adv == node.address else f", advertised as {adv[0]}:{adv[1]}"
            lines.append(f"  broker {node_id}: {host}:{port}{shown} ({node.directory})")
        redirected = [(link, address) for link, address in self.links.items()
                      if link.kind is not LinkKind.CLIENT
                      and address != self.node(link.target).address]
        for link, (host, port) in redirected:
            lines.append(f"  {link} via {host}:{port}")
        return "\n".join(lines)

    # --- looking at it ----------------------------------------------------------------------

    def metadata(self, node_id: int | None = None, topics: list[str] | None = None) -> MetadataView:
        """Metadata as broker ``node_id`` (default: the first running one) answers it, asked
        at its real address (around any proxy)."""
        if node_id is None:
            node_id = next((n for n, node in self.brokers.items()
                            if node.running and not node.paused), None)
            if node_id is None:
                raise ClusterError("no broker is running")
        response = asyncio.run(_metadata(self.brokers[node_id].address, topics))
        return metadata_view(node_id, response)

    def live_brokers(self, node_id: int | None = None) -> set[int]:
        """Brokers a broker's Metadata lists (the unfenced ones)."""
        return set(self.metadata(node_id).brokers)

    def wait_for_brokers(self, expected: Iterable[int] | None = None,
                         timeout_s: float = DEFAULT_WAIT_S) -> None:
        """Until every running broker lists exactly ``expected`` (default: all running brokers)
        as live."""
        wanted = set(expected) if expected is not None else {
            n for n, node in self.brokers.items() if node.running and not node.paused}

        def agreed() -> bool:
            views = self._views([])
            running = [n for n, node in self.brokers.items() if node.running and not node.paused]
            return len(views) == len(running) and all(set(v.brokers) == wanted for v in views)

        self.wait_until(agreed, timeout_s, f"brokers {sorted(wanted)} to be live")

    def wait_ready(self, timeout_s: float = DEFAULT_WAIT_S) -> None:
        """Until every broker is unfenced and every partition of the internal topic
        ``__consumer_offsets`` has a leader, as every broker sees it (the topic is created
        here, as a first FindCoordinator would)."""
        self.wait_for_brokers(timeout_s=timeout_s)
        first = next((node for node in self.brokers.values() if node.running and not node.paused),
                     None)
        if first is None:
            raise ClusterError("no broker is running")
        asyncio.run(_find_coordinator(first.address, "kconform-cluster-ready"))

        def internal_topics_led() -> bool:
            views = self._views([OFFSETS_TOPIC])
            return bool(views) and all(
                OFFSETS_TOPIC in v.topics and v.topics[OFFSETS_TOPIC]
                and all(p.leader >= 0 for p in v.topics[OFFSETS_TOPIC].values())
                for v in views
            )

        self.wait_until(internal_topics_led, timeout_s,
                        f"every partition of {OFFSETS_TOPIC} to have a leader")
