"""A reference cluster of real processes: a controller and brokers, elections, fencing,
controlled shutdown, redirected links, the group coordinator following leadership, and
``kconform cluster``.

Data replication itself (followers copying records, the high watermark) is tested elsewhere;
these tests look at metadata: who leads, at which epoch, who is live.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from kio.schema.errors import ErrorCode

from launch.reference_cluster import (
    CONTROLLER_ID,
    Address,
    Link,
    LinkKind,
    MetadataView,
    ReferenceCluster,
)
from reference_broker.groups import OFFSETS_TOPIC, partition_for
from tests.helpers import process_alive
from tests.kafka_helpers import CLUSTER_SESSION_MS, FAST_CLUSTER, wire

pytestmark = pytest.mark.timeout(240)

FAST = {**FAST_CLUSTER, "group.min.session.timeout.ms": "1000"}


def bootstrap_of(cluster: ReferenceCluster, node: int) -> str:
    host, port = cluster.broker(node).address
    return f"{host}:{port}"


def create_topic(cluster: ReferenceCluster, name: str, partitions: int = 1,
                 replication: int = 3, assignments: list[list[int]] | None = None,
                 configs: Mapping[str, str] | None = None, via: int = 1) -> None:
    """CreateTopics through broker ``via`` (forwarded to the controller); fails on an error."""
    topic: dict[str, Any] = {"name": name, "num_partitions": partitions,
                             "replication_factor": replication, "assignments": [],
                             "configs": [{"name": k, "value": v} for k, v in (configs or {}).items()]}
    if assignments is not None:
        topic.update(num_partitions=-1, replication_factor=-1, assignments=[
            {"partition_index": i, "broker_ids": nodes} for i, nodes in enumerate(assignments)])
    response = wire(bootstrap_of(cluster, via), 19, 7,
                    {"topics": [topic], "timeout": 10_000, "validate_only": False})
    assert response.topics[0].error_code == ErrorCode.none, response.topics[0]


def alter_topic(cluster: ReferenceCluster, name: str, key: str, value: str, via: int) -> None:
    response = wire(bootstrap_of(cluster, via), 44, 1, {"resources": [{
        "resource_type": 2, "resource_name": name,
        "configs": [{"name": key, "config_operation": 0, "value": value}]}],
        "validate_only": False})
    assert response.responses[0].error_code == ErrorCode.none, response.responses[0]


def partitions_of(view: MetadataView, topic: str) -> dict[int, tuple[int, int, tuple[int, ...]]]:
    return {p: (v.leader, v.leader_epoch, v.replicas) for p, v in view.topics[topic].items()}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ReferenceCluster]:
    with ReferenceCluster(3, FAST, base_dir=tmp_path / "cluster") as running:
        running.wait_ready()
        yield running


def test_leaders_spread_over_brokers_and_every_broker_agrees(cluster: ReferenceCluster) -> None:
    """A topic of 6 partitions with 3 replicas each has leaders on all three brokers, every
    broker's Metadata says the same, and the controller is not shown to clients."""
    create_topic(cluster, "spread", partitions=6, replication=3)
    cluster.wait_for_leader("spread", 5)
    views = [cluster.metadata(node, ["spread"]) for node in cluster.brokers]
    assert all(partitions_of(v, "spread") == partitions_of(views[0], "spread") for v in views)
    assert all(v.brokers == views[0].brokers for v in views)
    placement = partitions_of(views[0], "spread")
    assert {leader for leader, _, _ in placement.values()} == {1, 2, 3}
    assert all(sorted(replicas) == [1, 2, 3] for _, _, replicas in placement.values())
    assert set(views[0].brokers) == {1, 2, 3}
    assert all(v.controller_id in {1, 2, 3} for v in views)  # a live broker, as in KRaft


def test_a_broker_that_does_not_lead_answers_not_leader_or_follower(
        cluster: ReferenceCluster) -> None:
    """ListOffsets sent to a replica that is not the leader gets NOT_LEADER_OR_FOLLOWER, the
    leader answers it, and a broker without the topic's partition says the same as Kafka."""
    create_topic(cluster, "led", partitions=1, assignments=[[2, 3]])
    leader, _ = cluster.wait_for_leader("led", 0)
    assert leader == 2
    request = {"replica_id": -1, "isolation_level": 0, "topics": [
        {"name": "led", "partitions": [{"partition_index": 0, "timestamp": -1}]}]}
    answers = {node: wire(bootstrap_of(cluster, node), 2, 7, request)
               .topics[0].partitions[0].error_code for node in (1, 2, 3)}
    assert answers == {
        1: ErrorCode.not_leader_or_follower, 2: ErrorCode.none, 3: ErrorCode.not_leader_or_follower
    }


def test_a_killed_leader_is_fenced_and_replaced_then_rejoins(cluster: ReferenceCluster) -> None:
    """SIGKILL of a partition leader: after broker.session.timeout.ms the controller fences it,
    Metadata shows another leader at a higher leader epoch and the dead broker offline; restarted
    on the same data it registers again and is unfenced."""
    create_topic(cluster, "failover", partitions=1, replication=3)
    leader, epoch = cluster.wait_for_leader("failover", 0)
    killed_at = time.monotonic()
    cluster.broker(leader).kill()
    new_leader, new_epoch = cluster.wait_for_leader("failover", 0, not_node=leader)
    # Fencing waits for the session to expire (counted from the last heartbeat before the kill).
    assert time.monotonic() - killed_at >= CLUSTER_SESSION_MS / 1000 / 2
    assert new_leader != leader and new_epoch > epoch
    view = cluster.metadata(new_leader, ["failover"])
    assert leader not in view.brokers
    state = view.partition("failover", 0)
    assert state is not None and leader in state.offline_replicas and leader not in state.isr
    cluster.broker(leader).restart()
    cluster.wait_for_brokers({1, 2, 3})
    assert set(cluster.metadata(leader).brokers) == {1, 2, 3}


def test_a_controller_restart_keeps_all_metadata(cluster: ReferenceCluster) -> None:
    """The controller, SIGKILLed and restarted, replays its metadata log: topics keep their
    ids, partitions their leaders and epochs, configs their values; brokers stay unfenced and
    topics can still be created."""
    create_topic(cluster, "durable", partitions=3, replication=2, configs={"retention.ms": "1234"})
    cluster.wait_for_leader("durable", 2)
    before = cluster.metadata(1, ["durable", OFFSETS_TOPIC])
    ids = wire(bootstrap_of(cluster, 1), 3, 12, {"topics": [{"name": "durable"}],
                                                 "allow_auto_topic_creation": False})
    cluster.controller.kill()
    cluster.controller.start()
    create_topic(cluster, "after-restart", partitions=1, replication=3, via=2)
    cluster.wait_for_leader("after-restart", 0)
    after = cluster.metadata(1, ["durable", OFFSETS_TOPIC])
    for topic in ("durable", OFFSETS_TOPIC):
        assert partitions_of(after, topic) == partitions_of(before, topic)
    assert set(after.brokers) == {1, 2, 3}
    ids_after = wire(bootstrap_of(cluster, 3), 3, 12, {"topics": [{"name": "durable"}],
                                                       "allow_auto_topic_creation": False})
    assert ids_after.topics[0].topic_id == ids.topics[0].topic_id
    described = wire(bootstrap_of(cluster, 3), 32, 4, {"resources": [{
        "resource_type": 2, "resource_name": "durable", "configuration_keys": ["retention.ms"]}],
        "include_synonyms": False, "include_documentation": False})
    assert described.results[0].configs[0].value == "1234"


def test_controlled_shutdown_moves_leadership_before_the_broker_exits(tmp_path: Path) -> None:
    """SIGTERM to a leader: it asks the controller to move its leadership away and exits only
    then, so the other brokers show a new leader at once, long before the (here 20 s) session
    timeout would have fenced it."""
    settings = {**FAST, "broker.session.timeout.ms": "20000", "broker.heartbeat.interval.ms": "500"}
    with ReferenceCluster(3, settings, base_dir=tmp_path / "c") as cluster:
        cluster.wait_ready()
        create_topic(cluster, "moving", partitions=1, replication=3)
        leader, epoch = cluster.wait_for_leader("moving", 0)
        started = time.monotonic()
        assert cluster.broker(leader).stop() == 0
        new_leader, new_epoch = cluster.wait_for_leader("moving", 0, not_node=leader, timeout_s=5)
        assert time.monotonic() - started < 10
        assert new_leader != leader and new_epoch > epoch
        assert "controlled shutdown complete" in cluster.broker(leader).log_path.read_text()


def _isr(cluster: ReferenceCluster, topic: str, node: int) -> tuple[int, ...] | None:
    state = cluster.metadata(node, [topic]).partition(topic, 0)
    return state.isr if state is not None else None


@pytest.mark.parametrize("where", ["topic", "broker"])
def test_unclean_election_only_when_enabled(tmp_path: Path, where: str) -> None:
    """With the only ISR member dead, a returning out-of-sync replica is not elected while
    unclean.leader.election.enable is false (the partition stays offline, LEADER_NOT_AVAILABLE);
    once it is true (on the topic, or on the brokers) that replica becomes leader."""
    settings = dict(FAST)
    if where == "broker":
        settings["unclean.leader.election.enable"] = "true"
    with ReferenceCluster(3, settings, base_dir=tmp_path / "c") as cluster:
        cluster.wait_ready()
        create_topic(cluster, "risky", assignments=[[1, 2]],
                     configs={"unclean.leader.election.enable": "false"} if where == "topic" else {})
        assert cluster.wait_for_leader("risky", 0)[0] == 1
        cluster.broker(2).kill()
        cluster.wait_until(lambda: _isr(cluster, "risky", 3) == (1,), what="the ISR to shrink to [1]")
        cluster.broker(1).kill()
        cluster.wait_until(lambda: (s := cluster.metadata(3, ["risky"]).partition("risky", 0))
                           is not None and s.leader == -1, what="the partition to go offline")
        state = cluster.metadata(3, ["risky"]).partition("risky", 0)
        assert state is not None and state.error == "LEADER_NOT_AVAILABLE" and state.isr == (1,)
        cluster.broker(2).start()
        if where == "topic":
            cluster.wait_for_brokers({2, 3})
            time.sleep(1.0)  # elections run on every controller tick: give it many
            state = cluster.metadata(3, ["risky"]).partition("risky", 0)
            assert state is not None and state.leader == -1, "an unclean election happened"
            alter_topic(cluster, "risky", "unclean.leader.election.enable", "true", via=3)
        leader, _ = cluster.wait_for_leader("risky", 0)
        assert leader == 2
        assert _isr(cluster, "risky", 3) == (2,)


class Forwarder:
    """A TCP relay that counts the connections it carries (a stand-in for a Toxiproxy proxy)."""

    def __init__(self, upstream: Address) -> None:
        self.upstream = upstream
        self.connections = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.address: Address = ("127.0.0.1", self._server.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._server, selectors.EVENT_READ)
        pairs: dict[socket.socket, socket.socket] = {}
        while not self._stop.is_set():
            for key, _ in selector.select(0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._server:
                    client, _ = self._server.accept()
                    try:
                        upstream = socket.create_connection(self.upstream)
                    except OSError:
                        client.close()
                        continue
                    self.connections += 1
                    pairs[client], pairs[upstream] = upstream, client
                    selector.register(client, selectors.EVENT_READ)
                    selector.register(upstream, selectors.EVENT_READ)
                    continue
                try:
                    data = sock.recv(65536)
                    if data:
                        pairs[sock].sendall(data)
                        continue
                except OSError:
                    pass
                other = pairs.pop(sock)
                pairs.pop(other, None)
                for end in (sock, other):
                    selector.unregister(end)
                    end.close()
        for sock in [*pairs, self._server]:
            sock.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def test_per_link_addresses_are_really_used(tmp_path: Path) -> None:
    """A forwarder put on broker 2's link to the controller and on clients' link to broker 3
    carries that traffic: broker 2 registers through it, Metadata advertises broker 3 at the
    forwarder, and a client reaching broker 3 connects there."""
    forwarders: dict[Link, Forwarder] = {}

    def redirect(link: Link, address: Address) -> Address:
        if link in (Link(LinkKind.CONTROLLER, 2, CONTROLLER_ID), Link(LinkKind.CLIENT, None, 3)):
            forwarders[link] = Forwarder(address)
            return forwarders[link].address
        return address

    try:
        with ReferenceCluster(3, FAST, link_address=redirect, base_dir=tmp_path / "c") as cluster:
            cluster.wait_ready()
            to_controller = forwarders[Link(LinkKind.CONTROLLER, 2, CONTROLLER_ID)]
            to_broker_3 = forwarders[Link(LinkKind.CLIENT, None, 3)]
            assert to_controller.connections >= 1  # broker 2 is live: it got through
            assert cluster.metadata(1).brokers[3] == to_broker_3.address
            assert f"{to_broker_3.address[0]}:{to_broker_3.address[1]}" in cluster.bootstrap
            create_topic(cluster, "via-proxy", assignments=[[3]])
            cluster.wait_for_leader("via-proxy", 0)
            before = to_broker_3.connections
            consumer = Consumer({"bootstrap.servers": bootstrap_of(cluster, 1),
                                 "group.id": "proxy-test", "enable.auto.commit": False})
            try:
                consumer.assign([TopicPartition("via-proxy", 0, 0)])
                deadline = time.monotonic() + 30
                while to_broker_3.connections == before and time.monotonic() < deadline:
                    consumer.poll(0.2)
            finally:
                consumer.close()
            assert to_broker_3.connections > before
    finally:
        for forwarder in forwarders.values():
            forwarder.close()


def _coordinator(cluster: ReferenceCluster, group: str, via: int) -> tuple[ErrorCode, int]:
    answer = wire(bootstrap_of(cluster, via), 10, 3, {"key": group, "key_type": 0})
    return answer.error_code, answer.node_id


def test_the_group_coordinator_moves_with_offsets_partition_leadership(
        cluster: ReferenceCluster) -> None:
    """The coordinator of a group is the leader of its __consumer_offsets partition; when that
    broker is killed the partition gets a new leader, FindCoordinator names it, and the group's
    consumer carries on committing offsets through it."""
    group = "moving-group"
    create_topic(cluster, "work", partitions=1, replication=3)
    partition = partition_for(group, int(FAST["offsets.topic.num.partitions"]))
    leader, _ = cluster.wait_for_leader(OFFSETS_TOPIC, partition)
    assert _coordinator(cluster, group, via=1) == (ErrorCode.none, leader)
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": group,
                         "enable.auto.commit": False, "session.timeout.ms": 6000,
                         "heartbeat.interval.ms": 500, "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe(["work"])
        deadline = time.monotonic() + 30
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(0.2)
        assert consumer.assignment(), "the consumer never got its partition"
        consumer.commit(offsets=[TopicPartition("work", 0, 5)], asynchronous=False)
        cluster.broker(leader).kill()
        new_leader, _ = cluster.wait_for_leader(OFFSETS_TOPIC, partition, not_node=leader)
        survivor = next(n for n in cluster.brokers if n != leader)
        assert _coordinator(cluster, group, via=survivor) == (ErrorCode.none, new_leader)
        committed = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            consumer.poll(0.2)
            try:
                consumer.commit(offsets=[TopicPartition("work", 0, 7)], asynchronous=False)
                committed = consumer.committed([TopicPartition("work", 0)], timeout=10)
                break
            except KafkaException:  # rediscovering the coordinator, rejoining the group
                continue
        assert committed is not None and committed[0].offset == 7
        deadline = time.monotonic() + 30
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(0.2)
        assert consumer.assignment(), "the consumer lost its partition for good"
    finally:
        consumer.close()


def _children(pid: int) -> list[int]:
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry))
    return children


def test_kconform_cluster_prints_bootstrap_and_stops_everything_on_sigint(tmp_path: Path) -> None:
    """`kconform cluster --brokers 2` prints where the data is and a bootstrap.servers line
    that reaches both brokers; SIGINT makes it exit 0 with no node process left and its
    temporary data removed."""
    command = [sys.executable, "-c", "from harness.cli import main; main()", "cluster",
               "--brokers", "2", "--override", "offsets.topic.num.partitions=2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=Path(__file__).parents[2])
    children: list[int] = []
    try:
        lines: list[str] = []
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("bootstrap.servers="):
                break
        output = "".join(lines)
        assert lines and lines[-1].startswith("bootstrap.servers="), output
        bootstrap = lines[-1].strip().split("=", 1)[1]
        data = re.search(r"data in (\S+)", output)
        assert data is not None and Path(data.group(1)).is_dir()
        children = _children(process.pid)
        assert len(children) == 3  # the controller and two brokers
        metadata = wire(bootstrap, 3, 12, {"topics": None, "allow_auto_topic_creation": False})
        assert {b.node_id for b in metadata.brokers} == {1, 2}
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0, process.stderr.read() if process.stderr else ""
        assert not [pid for pid in children if process_alive(pid)]
        assert not Path(data.group(1)).exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in children:
            if process_alive(pid):
                os.killpg(pid, signal.SIGKILL)  # each node leads its own process group



def test_an_exception_inside_the_context_leaves_nothing_behind() -> None:
    """An exception raised in the `with` block kills every node process (even a paused one)
    and removes the cluster's temporary directory."""
    with pytest.raises(RuntimeError, match="boom"):
        with ReferenceCluster(2, FAST) as cluster:
            pids = [node.pid for node in cluster.nodes]
            base = cluster.base_dir
            cluster.broker(2).pause()
            raise RuntimeError("boom")
    assert all(pid is not None and not process_alive(pid) for pid in pids)
    assert not base.exists()


def test_a_broker_that_is_not_ready_in_time_has_its_stacks_in_the_error(tmp_path: Path) -> None:
    """A start timeout says why: the launcher asks the stuck broker for every thread's stack
    (SIGUSR1, faulthandler) before it kills it, and the error carries them and the load. A
    broker still starting Python, which would die of SIGUSR1, is not sent it: the error says so."""
    import signal
    import time

    import pytest

    from launch.broker_process import BrokerProcess, BrokerStartError

    def timed_out(wait_for_handler: bool) -> str:
        process = BrokerProcess(data_dir=tmp_path / f"b-{wait_for_handler}")
        process.launch()
        try:
            # reference_broker/__main__.py sets the handler before it imports the broker, which
            # takes far longer than this loop's step: the broker is then certainly not ready.
            deadline = time.monotonic() + 60
            while wait_for_handler and not process._child.catches(signal.SIGUSR1):  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "the broker never set its SIGUSR1 handler"
                time.sleep(0.002)
            with pytest.raises(BrokerStartError) as caught:
                process.wait_started(0.0)
        finally:
            process.close()
        assert not process.running
        return str(caught.value)

    stacks = timed_out(wait_for_handler=True)
    assert "not ready after 0.0s (load average" in stacks
    assert "most recent call first" in stacks  # faulthandler's stack dump
    early = timed_out(wait_for_handler=False)
    assert "still starting Python" in early and "most recent call first" not in early
