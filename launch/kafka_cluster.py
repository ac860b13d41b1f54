"""Run Apache Kafka from its jars: a KRaft cluster of N combined broker+controller JVMs on loopback.

:class:`KafkaCluster` is what the ``kafka`` target, the tests and the benchmarks use::

    with KafkaCluster(3) as cluster:                   # formats, starts 3 JVMs, waits for them
        cluster.wait_ready()                           # every broker unfenced, offsets topic led
        producer = Producer({"bootstrap.servers": cluster.bootstrap})
        leader, epoch = cluster.wait_for_leader("t", 0)
        cluster.node(leader).kill()                    # SIGKILL
        cluster.wait_for_leader("t", 0, not_node=leader)
        cluster.node(leader).restart()                 # same data, same ports

Each node is one JVM (``kafka.Kafka node.properties``, ``-Xmx512m`` by default, 1 GiB at most) with
``process.roles=broker,controller``, a static quorum (``controller.quorum.voters`` naming every
node) and its own directory under one base directory: ``node.properties``, the logging
configuration, ``server.log`` (Kafka's log), ``stdout.log`` (the JVM's) and ``data/`` (``log.dirs``,
formatted once with ``kafka.tools.StorageTool format``). Every port is chosen before anything
starts, so every address is known up front. The jars come from :mod:`launch.kafka_jars`.

**Network paths and what can be redirected.** ``link_address(link, address)`` (the same hook,
and the same :class:`~launch.reference_cluster.Link` type, as ``ReferenceCluster``'s) is asked
once per directed link before the nodes start, and returns the address to use instead:

* ``Link(CLIENT, None, j)``: what node j advertises to clients on its ``PLAINTEXT`` listener;
* ``Link(CONTROLLER, i, j)`` (i != j): where node i reaches node j's controller: Raft traffic
  (votes, metadata log fetches) and node i's broker talking to the active controller
  (registration, heartbeats, AlterPartition). Kafka takes these from each node's own
  ``controller.quorum.voters``, so every node can be given its own address for every voter;
* ``Link(REPLICATION, i, j)`` (i != j): where broker i reaches broker j (follower fetches,
  transaction markers). Kafka looks up a peer's address under the *source's*
  ``inter.broker.listener.name`` in the peer's registration, and a listener has a single
  advertised address. So, when a ``link_address`` is given, every node gets one extra listener
  per source (``REPLICA_FROM_<i>``), advertises on it the address chosen for ``i -> j``, and
  broker i uses ``REPLICA_FROM_<i>`` as its inter-broker listener: per directed link, as for the
  reference cluster. (A caller that wants one proxy per destination, shared by every source,
  returns the same address for every i.)

What cannot be redirected: a node's broker talking to *its own* controller (same process, over
loopback: it is local whenever that node is the active controller), and a client's path to one
broker differently from another client's (one advertised address per listener). Without a
``link_address`` the nodes use one ``PLAINTEXT`` listener for clients and replication, as an
ordinary cluster does.

Nothing is left running: :meth:`KafkaCluster.close` (the context manager's exit, also on an
exception or Ctrl-C, and at interpreter exit as a last resort) kills every JVM and removes the
base directory it created.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any, Self

from kio.schema.errors import ErrorCode

from launch import kafka_jars
from launch.child_process import ChildProcess, Supervisor, spawn
from launch.node import ManagedNode
from launch.ports import free_port
from launch.reference_cluster import (
    Address,
    Link,
    LinkAddress,
    LinkKind,
    MetadataView,
    ProcessCluster,
    metadata_view,
)
from reference_broker.drivers.wire_client import WireClient, WireError

CLIENT_LISTENER = "PLAINTEXT"
CONTROLLER_LISTENER = "CONTROLLER"
OFFSETS_TOPIC = "__consumer_offsets"
METADATA_TOPIC = "__cluster_metadata"
HEAP = "512m"
"""Each JVM's ``-Xmx``. Kafka's scripts default to 1 GiB; 512 MiB is ample for the harness's
workloads (docs/kafka.md has the measurements) and leaves room for parallel test workers on a
2-core, 24 GiB machine. ``KafkaCluster(heap="1g")`` or ``$KCONFORM_KAFKA_HEAP`` changes it."""
HEAP_ENV = "KCONFORM_KAFKA_HEAP"
DEFAULT_START_TIMEOUT_S = 120.0
DEFAULT_WAIT_S = 120.0
POLL_S = 0.1
REQUEST_TIMEOUT_S = 3.0
# Kafka's own KAFKA_JVM_PERFORMANCE_OPTS (bin/kafka-run-class.sh).
JVM_OPTIONS = ("-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
               "-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true")
TOOL_JVM_OPTIONS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Djava.awt.headless=true")
# Keys the launcher sets per node; an override of one would break the cluster's wiring.
RESERVED_KEYS = frozenset({
    "process.roles", "node.id", "broker.id", "listeners", "advertised.listeners", "log.dirs", "log.dir",
    "controller.quorum.voters", "controller.quorum.bootstrap.servers", "controller.listener.names",
    "inter.broker.listener.name", "listener.security.protocol.map", "metadata.log.dir",
})
# What the harness changes from Kafka's defaults (every other key keeps Kafka's default):
# groups start at once (as Kafka's own integration tests do, and as the reference target does).
FAST_GROUPS: Mapping[str, str] = {"group.initial.rebalance.delay.ms": "0"}


class KafkaClusterError(RuntimeError):
    """A node did not start, or the cluster did not reach a state in time."""


def new_cluster_id() -> str:
    """A random cluster id as ``kafka-storage random-uuid`` makes it (base64url, no padding,
    not starting with '-', which the command line would take for an option)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


_JAVA_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')


def find_java() -> str:
    """``$JAVA_HOME/bin/java`` or ``java`` on PATH, version 17 or later (Kafka 4 needs 17)."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home and (Path(home) / "bin" / "java").is_file() else shutil.which("java")
    if java is None:
        raise KafkaClusterError("Java 17 or later is needed to run Apache Kafka and `java` is not installed "
                                "(Debian: apt-get install openjdk-17-jre-headless; or set JAVA_HOME)")
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KafkaClusterError(f"{java} -version failed: {exc}") from exc
    match = _JAVA_VERSION.search(out.stderr + out.stdout)
    major = int(match[1]) if match else 0
    if major == 1 and match and match[2]:
        major = int(match[2])
    if major < 17:
        raise KafkaClusterError(f"{java} is Java {major or '?'}; Apache Kafka 4 needs Java 17 or later")
    return java


def _log4j2(level: str) -> str:
    return f"""# Written by kconform: Kafka's log goes to server.log beside this file.
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = ${{sys:kafka.logs.dir}}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRefs = file
rootLogger.appenderRef.file.ref = FILE
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


def _log4j1(level: str) -> str:
    return f"""# Written by kconform: Kafka's log goes to server.log beside this file.
log4j.rootLogger={level}, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=${{kafka.logs.dir}}/server.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
"""


# --- Admin/Metadata requests, at a node's real address -------------------------------------------


async def _call(address: Address, api_key: int, version: int, fields: Mapping[str, Any],
                timeout_s: float = REQUEST_TIMEOUT_S) -> Any:
    async with WireClient(address[0], address[1], timeout_s) as client:
        return await client.call(api_key, version, fields)


def _request(address: Address, api_key: int, version: int, fields: Mapping[str, Any],
             timeout_s: float = REQUEST_TIMEOUT_S) -> Any:
    return asyncio.run(asyncio.wait_for(_call(address, api_key, version, fields, timeout_s), timeout_s + 1.0))


# --- nodes ---------------------------------------------------------------------------------------


class JvmProcess(Supervisor):
    """A Kafka JVM, its stdout and stderr in a file."""

    def __init__(self) -> None:
        self._child: ChildProcess | None = None
        self._stdout: IO[bytes] | None = None

    def spawn(self, argv: list[str], stdout_path: Path, cwd: Path) -> None:
        self._stdout = open(stdout_path, "ab")
        self._child = spawn(argv, stdout=self._stdout, stderr=subprocess.STDOUT, cwd=cwd)

    def _release(self) -> None:
        if self._stdout is not None:
            self._stdout.close()
            self._stdout = None


class KafkaNode(ManagedNode):
    """One Kafka JVM of the cluster (broker and controller) and what can be done to it.

    A wiped node (:meth:`~launch.node.ManagedNode.wipe`) rejoins the static quorum as a voter
    with an empty log, which Kafka allows only while a majority of the other voters have the log
    (KIP-853 is the safe way)."""

    start_timeout_s = DEFAULT_START_TIMEOUT_S
    stop_timeout_s = 30.0  # a controlled shutdown moves leadership away first

    def __init__(self, cluster: KafkaCluster, node_id: int) -> None:
        self.cluster = cluster
        self.node_id = node_id
        self.directory = cluster.base_dir / f"node-{node_id}"
        self.directory.mkdir(parents=True, exist_ok=True)
        taken = cluster.taken_ports
        self.address: Address = (cluster.host, free_port(cluster.host, taken))  # where clients really connect
        taken.append(self.address[1])
        self.controller_address: Address = (cluster.host, free_port(cluster.host, taken))
        taken.append(self.controller_address[1])
        self.replica_ports: dict[int, int] = {}  # source i -> the port of listener REPLICA_FROM_<i>
        self.process: JvmProcess = JvmProcess()

    def __repr__(self) -> str:
        state = "paused" if self.paused else "running" if self.running else "stopped"
        return f"<kafka node {self.node_id} at {self.address[0]}:{self.address[1]} {state}>"

    @property
    def role(self) -> str:
        return "broker,controller"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def config_path(self) -> Path:
        return self.directory / "node.properties"

    @property
    def log_path(self) -> Path:
        """Kafka's own log (log4j)."""
        return self.directory / "server.log"

    @property
    def stdout_path(self) -> Path:
        return self.directory / "stdout.log"

    def _java(self, main: str, *args: str, heap: str | None = None, tool: bool = False) -> list[str]:
        """The java command line; ``tool``: a short-lived command, started faster by the C1
        compiler alone and the serial collector."""
        cluster = self.cluster
        heap = heap or cluster.heap
        options = TOOL_JVM_OPTIONS if tool else JVM_OPTIONS
        logging = (f"-Dlog4j2.configurationFile={self.directory / 'log4j2.properties'}" if cluster.major >= 4 else
                   f"-Dlog4j.configuration=file:{self.directory / 'log4j.properties'}")
        return [cluster.java, f"-Xmx{heap}", "-Xms128m", *options, f"-Dkafka.logs.dir={self.directory}",
                logging, "-cp", cluster.classpath, main, *args]

    def write_config(self) -> None:
        settings = self.cluster.node_settings(self)
        self.config_path.write_text("# Written by kconform (launch/kafka_cluster.py)\n"
                                    + "".join(f"{k}={v}\n" for k, v in settings.items()))
        level = self.cluster.log_level
        (self.directory / "log4j2.properties").write_text(_log4j2(level))
        (self.directory / "log4j.properties").write_text(_log4j1(level))

    def format(self) -> None:
        """``kafka-storage format``: write meta.properties (and the bootstrap metadata) into
        ``log.dirs`` with the cluster's id."""
        self.write_config()
        command = self._java("kafka.tools.StorageTool", "format", "-t", self.cluster.cluster_id,
                             "-c", str(self.config_path), "--ignore-formatted", heap="256m", tool=True)
        out = subprocess.run(command, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        if out.returncode != 0:
            raise KafkaClusterError(f"formatting node {self.node_id} failed ({' '.join(command[-6:])}): "
                                    f"{(out.stdout + out.stderr).strip()[-1500:]}")

    @property
    def formatted(self) -> bool:
        return (self.data_dir / "meta.properties").exists()

    def launch(self) -> None:
        """Start the JVM (do not wait)."""
        if self.running:
            return
        self.write_config()
        self.process.spawn(self._java("kafka.Kafka", str(self.config_path)), self.stdout_path, self.directory)

    def wait_started(self, timeout_s: float | None = None) -> None:
        """Until the node answers ApiVersions on its client listener: Kafka opens its listeners
        to requests only once the broker is registered and unfenced."""
        timeout_s = self.start_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.running:
                raise KafkaClusterError(self._failure("exited during start-up"))
            try:
                response = _request(self.address, 18, 3, {"client_software_name": "kconform",
                                                          "client_software_version": "1"}, timeout_s=1.0)
                if response.error_code == ErrorCode.none:
                    return
            except (TimeoutError, OSError, WireError, ConnectionError):
                pass
            if time.monotonic() >= deadline:
                raise KafkaClusterError(self._failure(f"did not answer ApiVersions within {timeout_s:.0f} s"))
            time.sleep(POLL_S * 2)

    def log_tail(self, lines: int = 15) -> str:
        out = []
        for path in (self.log_path, self.stdout_path):
            try:
                text = path.read_text(errors="replace").splitlines()
            except OSError:
                continue
            interesting = [line for line in text if " ERROR " in line or " FATAL " in line or "Exception" in line]
            out += (interesting or text)[-lines:]
        return "\n".join(out[-lines:])

    def _failure(self, what: str) -> str:
        return f"Kafka node {self.node_id} {what}; its log ({self.log_path}) ends:\n{self.log_tail()}"

    def close(self) -> None:
        self.kill()


# --- the cluster ---------------------------------------------------------------------------------

class KafkaCluster(ProcessCluster):
    """``nodes`` combined broker+controller Kafka JVMs; see the module docstring."""

    failure = KafkaClusterError
    wait_s = DEFAULT_WAIT_S
    transient = (*ProcessCluster.transient, WireError, KafkaClusterError)
    reserved_keys = RESERVED_KEYS
    clean_stop_of_own_data = False  # a clean stop is wasted on data about to be removed

    def __init__(
        self,
        nodes: int = 3,
        overrides: Mapping[str, str] | None = None,
        *,
        version: str | None = None,
        node_overrides: Mapping[int, Mapping[str, str]] | None = None,
        link_address: LinkAddress | None = None,
        base_dir: Path | None = None,
        host: str = "127.0.0.1",
        log_level: str = "INFO",
        heap: str | None = None,
    ) -> None:
        if nodes < 1:
            raise ValueError(f"a Kafka cluster needs at least one node, not {nodes}")
        self.version = version or kafka_jars.default_version()
        self.major = kafka_jars.parse_version(self.version)[0]
        self._configure({**FAST_GROUPS, **dict(overrides or {})}, node_overrides, base_dir, "kconform-kafka-", host,
                        log_level, link_address)
        self.heap = heap or os.environ.get(HEAP_ENV) or HEAP
        self.java = ""
        self.classpath = ""
        self.per_link = link_address is not None
        self.cluster_id = new_cluster_id()
        self.taken_ports: list[int] = []
        self.brokers: dict[int, KafkaNode] = {i: KafkaNode(self, i) for i in range(1, nodes + 1)}
        if self.per_link:
            for node in self.brokers.values():
                for source in self.brokers:
                    port = free_port(host, self.taken_ports)
                    self.taken_ports.append(port)
                    node.replica_ports[source] = port

    # --- addresses --------------------------------------------------------------------------

    def node(self, node_id: int) -> KafkaNode:
        return self.brokers[node_id]

    def broker(self, node_id: int) -> KafkaNode:
        return self.brokers[node_id]

    @property
    def nodes(self) -> list[KafkaNode]:
        return list(self.brokers.values())

    def advertised(self, node_id: int) -> Address:
        """The address node ``node_id`` gives clients (a proxy, if link_address chose one)."""
        self._plan_links()
        return self.links[Link(LinkKind.CLIENT, None, node_id)]

    @property
    def bootstrap(self) -> str:
        """``bootstrap.servers`` for clients: every node's advertised address."""
        return ",".join(f"{h}:{p}" for h, p in (self.advertised(n) for n in self.brokers))

    def _plan_links(self) -> None:
        """Ask link_address for every directed link, once, before anything starts."""
        if self._planned:
            return
        for j, target in self.brokers.items():
            link = Link(LinkKind.CLIENT, None, j)
            self.links[link] = self._link_address(link, target.address)
        for i in self.brokers:
            for j, target in self.brokers.items():
                if i == j:
                    continue
                link = Link(LinkKind.CONTROLLER, i, j)
                self.links[link] = self._link_address(link, target.controller_address)
                link = Link(LinkKind.REPLICATION, i, j)
                real = (self.host, target.replica_ports[i]) if self.per_link else target.address
                self.links[link] = self._link_address(link, real)
        self._planned = True

    def node_settings(self, node: KafkaNode) -> dict[str, str]:
        """node.properties of ``node``: the overrides, then the wiring."""
        self._plan_links()
        n = len(self.brokers)
        settings: dict[str, str] = {
            "offsets.topic.replication.factor": str(min(3, n)),
            "transaction.state.log.replication.factor": str(min(3, n)),
            "transaction.state.log.min.isr": str(min(2, n)),
        }
        if self.major >= 4:
            settings["share.coordinator.state.topic.replication.factor"] = str(min(3, n))
            settings["share.coordinator.state.topic.min.isr"] = str(min(2, n))
        settings.update(self.overrides)
        i = node.node_id
        voters = []
        for j, other in self.brokers.items():
            host, port = other.controller_address if j == i else self.links[Link(LinkKind.CONTROLLER, i, j)]
            voters.append(f"{j}@{host}:{port}")
        client = self.links[Link(LinkKind.CLIENT, None, i)]
        listeners = [f"{CLIENT_LISTENER}://{node.address[0]}:{node.address[1]}",
                     f"{CONTROLLER_LISTENER}://{node.controller_address[0]}:{node.controller_address[1]}"]
        advertised = [f"{CLIENT_LISTENER}://{client[0]}:{client[1]}"]
        protocols = [f"{CLIENT_LISTENER}:PLAINTEXT", f"{CONTROLLER_LISTENER}:PLAINTEXT"]
        if self.per_link:
            for source, port in node.replica_ports.items():
                name = f"REPLICA_FROM_{source}"
                listeners.append(f"{name}://{self.host}:{port}")
                there = (self.host, port) if source == i else self.links[Link(LinkKind.REPLICATION, source, i)]
                advertised.append(f"{name}://{there[0]}:{there[1]}")
                protocols.append(f"{name}:PLAINTEXT")
        settings.update({
            "process.roles": "broker,controller",
            "node.id": str(i),
            "controller.quorum.voters": ",".join(voters),
            "controller.listener.names": CONTROLLER_LISTENER,
            "listeners": ",".join(listeners),
            "advertised.listeners": ",".join(advertised),
            "listener.security.protocol.map": ",".join(protocols),
            "inter.broker.listener.name": f"REPLICA_FROM_{i}" if self.per_link else CLIENT_LISTENER,
            "log.dirs": str(node.data_dir),
        })
        settings.update(self.node_overrides.get(i, {}))
        return settings

    # --- lifecycle --------------------------------------------------------------------------

    def start(self, timeout_s: float = DEFAULT_START_TIMEOUT_S) -> Self:
        """Fetch the jars if needed, format the nodes (first start), start every JVM at once and
        wait until each serves requests. Use :meth:`wait_ready` for the cluster to be usable."""
        self._opening()
        try:
            if not self.classpath:
                self.java = find_java()
                kafka_jars.ensure(self.version, log=True)
                self.classpath = kafka_jars.classpath(self.version)
            self._plan_links()
            unformatted = [node for node in self.nodes if not node.formatted]
            if unformatted:  # one short JVM per node, all at once
                with concurrent.futures.ThreadPoolExecutor(len(unformatted)) as pool:
                    for done in [pool.submit(node.format) for node in unformatted]:
                        done.result()
            for node in self.nodes:
                node.launch()
            deadline = time.monotonic() + timeout_s
            for node in self.nodes:
                node.wait_started(max(1.0, deadline - time.monotonic()))
        except kafka_jars.KafkaJarsError as exc:
            self.kill_all()
            raise KafkaClusterError(str(exc)) from exc
        except BaseException:
            self.kill_all()
            raise
        return self

    def stop_all(self, timeout_s: float = 30.0) -> None:
        """Stop every node cleanly, all at once (SIGTERM, then SIGKILL what is left after
        ``timeout_s``: once the quorum is gone a controlled shutdown cannot finish)."""
        running = [node for node in self.nodes if node.running]
        for node in running:
            node.process.terminate()
        deadline = time.monotonic() + timeout_s
        for node in running:
            node.stop(max(0.1, deadline - time.monotonic()))

    def describe(self) -> str:
        """Where everything is: addresses, redirected links, data directories."""
        lines = [f"Kafka {self.version} cluster {self.cluster_id}, data in {self.base_dir}"]
        for node_id, node in self.brokers.items():
            adv = self.links.get(Link(LinkKind.CLIENT, None, node_id), node.address)
            shown = "" if adv == node.address else f", advertised as {adv[0]}:{adv[1]}"
            lines.append(f"  node {node_id}: {node.address[0]}:{node.address[1]}{shown}, controller "
                         f"{node.controller_address[0]}:{node.controller_address[1]} ({node.directory})")
        for link, (host, port) in self.links.items():
            if link.kind is LinkKind.CLIENT:
                continue
            kind = "controller" if link.kind is LinkKind.CONTROLLER else "broker"
            lines.append(f"  node {link.source} -> {kind} {link.target} via {host}:{port}")
        return "\n".join(lines)

    # --- looking at it ----------------------------------------------------------------------

    def _first_running(self) -> int:
        for node_id, node in self.brokers.items():
            if node.running and not node.paused:
                return node_id
        raise KafkaClusterError("no Kafka node is running")

    def metadata(self, node_id: int | None = None, topics: list[str] | None = None) -> MetadataView:
        """Metadata as node ``node_id`` (default: the first running one) answers it, asked at
        its real address (around any proxy)."""
        node_id = self._first_running() if node_id is None else node_id
        response = _request(self.brokers[node_id].address, 3, 12, {
            "topics": None if topics is None else [{"name": name} for name in topics],
            "allow_auto_topic_creation": False, "include_topic_authorized_operations": False})
        return metadata_view(node_id, response)

    def describe_cluster(self, node_id: int | None = None) -> tuple[int, set[int]]:
        """Admin API DescribeCluster at node ``node_id``: (controller id, live broker ids)."""
        node_id = self._first_running() if node_id is None else node_id
        response = _request(self.brokers[node_id].address, 60, 0, {"include_cluster_authorized_operations": False})
        if response.error_code != ErrorCode.none:
            raise KafkaClusterError(f"DescribeCluster at node {node_id}: {response.error_code.name.upper()}")
        return int(response.controller_id), {int(b.broker_id) for b in response.brokers}

    def active_controller(self) -> int | None:
        """The node whose controller is active now: the Raft leader of ``__cluster_metadata``
        with the highest epoch, as DescribeQuorum answers it at the running nodes' controller
        listeners (real addresses). Metadata's and DescribeCluster's ``controller_id`` cannot
        tell: a KRaft broker answers them with a random live broker (KIP-919). None if no
        running node knows a leader."""
        best: tuple[int, int] | None = None
        for node in self.nodes:
            if not node.running or node.paused:
                continue
            try:
                response = _request(node.controller_address, 55, 0, {"topics": [
                    {"topic_name": METADATA_TOPIC, "partitions": [{"partition_index": 0}]}]}, timeout_s=2.0)
            except (TimeoutError, OSError, WireError, ConnectionError):
                continue
            for topic in response.topics:
                for p in topic.partitions:
                    if int(p.leader_id) >= 0 and (best is None or int(p.leader_epoch) > best[0]):
                        best = (int(p.leader_epoch), int(p.leader_id))
        return None if best is None else best[1]

    def live_brokers(self, node_id: int | None = None) -> set[int]:
        return self.describe_cluster(node_id)[1]

    def wait_for_brokers(self, expected: Iterable[int] | None = None, timeout_s: float = DEFAULT_WAIT_S) -> None:
        """Until every running node's DescribeCluster lists exactly ``expected`` (default: the
        running nodes) as live brokers."""
        wanted = set(expected) if expected is not None else {
            n for n, node in self.brokers.items() if node.running and not node.paused}

        def agreed() -> bool:
            running = [n for n, node in self.brokers.items() if node.running and not node.paused]
            return bool(running) and all(self.describe_cluster(n)[1] == wanted for n in running)

        self.wait_until(agreed, timeout_s, f"brokers {sorted(wanted)} to be live")

    def wait_ready(self, timeout_s: float = DEFAULT_WAIT_S) -> None:
        """Until every broker is live (Admin API DescribeCluster, as every node answers it) and
        every partition of ``__consumer_offsets`` has a leader, as every node sees it (the topic
        is created here, as a group's first FindCoordinator would)."""
        deadline = time.monotonic() + timeout_s
        self.wait_for_brokers(timeout_s=timeout_s)
        first = self.brokers[self._first_running()]

        def internal_topics_led() -> bool:
            _request(first.address, 10, 3, {"key": "kconform-cluster-ready", "key_type": 0})
            views = self._views([OFFSETS_TOPIC])
            return bool(views) and all(
                OFFSETS_TOPIC in v.topics and bool(v.topics[OFFSETS_TOPIC])
                and all(p.leader >= 0 for p in v.topics[OFFSETS_TOPIC].values()) for v in views)

        self.wait_until(internal_topics_led, max(1.0, deadline - time.monotonic()),
                        f"every partition of {OFFSETS_TOPIC} to have a leader")
