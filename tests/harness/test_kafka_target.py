"""The ``kafka`` target: a real 3-node Apache Kafka KRaft cluster from Maven Central jars.

One cluster is shared by the module's tests on each pytest-xdist worker (a JVM cluster start
costs about ten seconds; under ``-n 2`` the two workers may each start one, as the tests are
distributed one by one); every test leaves it whole again. The last tests start their own
one-node clusters to show that nothing is left behind on an exception or a failed start.

Needs Java 17+ and the jars (``scripts/setup`` fetches them; the target fetches a missing
version on first use); without Java the tests are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    NewTopic,  # type: ignore[attr-defined]
)

from harness.conformance import PASS, run_suite
from harness.targets import (
    DURABLE_STORAGE,
    PROCESS_CONTROL,
    REPLICATION,
    TRANSACTIONS,
    KafkaTarget,
    TargetError,
    make_target,
)
from launch import kafka_jars
from launch.kafka_cluster import KafkaCluster, KafkaClusterError
from launch.reference_cluster import Link, LinkKind
from tests.helpers import pid_exists

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("java") is None and not os.environ.get("JAVA_HOME"),
                       reason="Java 17+ is needed to run Apache Kafka (apt-get install openjdk-17-jre-headless)"),
    pytest.mark.skipif(shutil.which("mvn") is None and not kafka_jars.is_installed(kafka_jars.DEFAULT_VERSION),
                       reason="Apache Kafka's jars are not fetched and Maven is not installed to fetch them "
                              "(apt-get install maven, then scripts/setup)"),
]

TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def kafka() -> Iterator[KafkaTarget]:
    with KafkaTarget() as target:
        yield target


def _cluster(target: KafkaTarget) -> KafkaCluster:
    assert target.cluster is not None
    return target.cluster


def _answers(address: tuple[str, int], timeout_s: float = 1.0) -> bool:
    """Does the node answer an ApiVersions request within ``timeout_s``?"""
    client_id = b"kconform-test"
    body = struct.pack(">hhih", 18, 0, 1, len(client_id)) + client_id  # ApiVersions v0, correlation id 1
    frame = struct.pack(">i", len(body)) + body
    try:
        with socket.create_connection(address, timeout=timeout_s) as sock:
            sock.sendall(frame)
            header = sock.recv(8)
            return len(header) == 8 and struct.unpack(">ii", header)[1] == 1
    except OSError:
        return False


def _create(bootstrap: str, topic: str, partitions: int = 1, replication: int = 3) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, replication,
                                  config={"min.insync.replicas": "2"})])[topic].result(TIMEOUT_S)


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> list[int]:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 1, "message.timeout.ms": int(TIMEOUT_S * 1000)})
    offsets: list[int] = []
    errors: list[str] = []

    def delivered(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            offsets.append(int(msg.offset() or 0))

    for value in values:
        producer.produce(topic, value=value, partition=0, on_delivery=delivered)
    assert producer.flush(TIMEOUT_S) == 0, "the producer did not drain"
    assert not errors, errors[:3]
    return offsets


def _consume(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-reader",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(topic, 0, 0)])
    out: list[bytes] = []
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while len(out) < count and time.monotonic() < deadline:
            for msg in consumer.consume(100, 0.5):
                err = msg.error()
                if err is not None and err.code() != KafkaError._PARTITION_EOF:
                    raise AssertionError(f"consume error: {err}")
                if err is None:
                    out.append(msg.value() or b"")
    finally:
        consumer.close()
    return out


# --- the shared cluster --------------------------------------------------------------------------


def test_three_nodes_ready_on_loopback_with_declared_capabilities(kafka: KafkaTarget) -> None:
    cluster = _cluster(kafka)
    controller, brokers = cluster.describe_cluster()
    assert brokers == {1, 2, 3} and controller in brokers
    assert all(node.address[0] == "127.0.0.1" and node.controller_address[0] == "127.0.0.1" for node in cluster.nodes)
    ports = [p for node in cluster.nodes for p in (node.address[1], node.controller_address[1])]
    assert len(set(ports)) == len(ports) == 6
    assert {PROCESS_CONTROL, DURABLE_STORAGE, REPLICATION, TRANSACTIONS} <= kafka.capabilities
    facts = kafka.describe()
    assert facts["version"] == f"Apache Kafka {kafka_jars.DEFAULT_VERSION}" and len(facts["pids"]) == 3
    # The heap limit reaches the JVMs.
    for node in cluster.nodes:
        assert f"-Xmx{cluster.heap}" in Path(f"/proc/{node.pid}/cmdline").read_bytes().decode().split("\0")


def test_real_client_produces_and_consumes(kafka: KafkaTarget) -> None:
    topic = "kc-roundtrip"
    _create(kafka.bootstrap, topic)
    values = [f"v{i}".encode() for i in range(50)]
    assert _produce(kafka.bootstrap, topic, values) == list(range(50))
    assert _consume(kafka.bootstrap, topic, 50) == values
    view = _cluster(kafka).metadata(topics=[topic]).topics[topic][0]
    assert len(view.replicas) == 3 and sorted(view.isr) == [1, 2, 3]


def test_conformance_checks_pass_on_kafka(kafka: KafkaTarget) -> None:
    """A few checks of ``kconform conform --target kafka``, against the shared cluster: among
    them the transaction checks, which the reference broker is held to as well."""
    checks = ["advertised-versions-answered", "produce-offsets-contiguous", "idempotent-producer",
              "replicated-topic", "committed-offsets-round-trip", "transaction-commit", "transaction-abort",
              "transaction-fencing", "transaction-errors", "transaction-verification", "transaction-admin",
              "transaction-offsets", "transaction-markers"]
    result = run_suite(kafka, checks=checks, clients=("confluent-kafka",), seed=1, examples=2, steps=5)
    failed = {o.name: o.witness for o in result.outcomes if o.status != PASS}
    assert not failed, failed
    assert sorted(o.name for o in result.outcomes) == sorted(checks)


def test_killing_the_leader_elects_another_and_the_cluster_serves(kafka: KafkaTarget) -> None:
    cluster = _cluster(kafka)
    topic = "kc-failover"
    _create(kafka.bootstrap, topic)
    leader, epoch = cluster.wait_for_leader(topic, 0)
    assert _produce(kafka.bootstrap, topic, [b"before"]) == [0]
    victim = cluster.node(leader)
    pid = victim.pid
    assert pid is not None
    victim.kill()
    assert not victim.running and not pid_exists(pid)
    new_leader, new_epoch = cluster.wait_for_leader(topic, 0, not_node=leader, timeout_s=TIMEOUT_S)
    assert new_leader != leader and new_epoch > epoch
    assert _produce(kafka.bootstrap, topic, [b"after"]) == [1]  # acks=all with 2 of 3 in sync
    victim.start()  # same ports, same data
    cluster.wait_for_brokers({1, 2, 3}, timeout_s=TIMEOUT_S)
    cluster.wait_until(lambda: sorted(cluster.metadata(topics=[topic]).topics[topic][0].isr) == [1, 2, 3],
                       TIMEOUT_S, "the restarted node back in sync")
    assert _consume(kafka.bootstrap, topic, 2) == [b"before", b"after"]


def test_pause_and_resume_a_node(kafka: KafkaTarget) -> None:
    cluster = _cluster(kafka)
    node = cluster.node(2)
    node.pause()
    try:
        assert node.paused and node.running
        # SIGSTOP lands asynchronously; then the JVM is stopped ("T"), holding its sockets.
        assert cluster.wait_until(lambda: Path(f"/proc/{node.pid}/stat").read_text().split()[2] == "T", 5.0,
                                  "node 2 to be stopped")
        assert not _answers(node.address, timeout_s=1.0)
        assert all(_answers(other.address) for other in cluster.nodes if other is not node)
    finally:
        node.resume()
    assert not node.paused
    assert cluster.wait_until(lambda: _answers(node.address), TIMEOUT_S, "node 2 to answer again")
    cluster.wait_for_brokers({1, 2, 3}, timeout_s=TIMEOUT_S)


def test_client_listener_is_advertised_through_the_link_hook() -> None:
    """link_address chooses what each node advertises to clients (a proxy's address) and where
    nodes reach each other; the configuration says so before anything starts."""
    proxies = {1: ("127.0.0.1", 61001), 2: ("127.0.0.1", 61002), 3: ("127.0.0.1", 61003)}

    def link_address(link: Link, real: tuple[str, int]) -> tuple[str, int]:
        if link.kind is LinkKind.CLIENT:
            assert link.target is not None
            return proxies[link.target]
        return ("127.0.0.2", real[1]) if link.kind is LinkKind.CONTROLLER else real

    cluster = KafkaCluster(3, link_address=link_address)
    try:
        assert cluster.bootstrap == "127.0.0.1:61001,127.0.0.1:61002,127.0.0.1:61003"
        settings = cluster.node_settings(cluster.node(1))
        assert "PLAINTEXT://127.0.0.1:61001" in settings["advertised.listeners"]
        assert f"PLAINTEXT://127.0.0.1:{cluster.node(1).address[1]}" in settings["listeners"]
        voters = dict(v.split("@") for v in settings["controller.quorum.voters"].split(","))
        assert voters["2"] == f"127.0.0.2:{cluster.node(2).controller_address[1]}"
        assert voters["1"] == f"127.0.0.1:{cluster.node(1).controller_address[1]}"  # its own: not a link
        assert settings["inter.broker.listener.name"] == "REPLICA_FROM_1"
        # Node 2 advertises, on the listener node 1 replicates through, the address of link 1 -> 2.
        two = cluster.node_settings(cluster.node(2))["advertised.listeners"]
        assert f"REPLICA_FROM_1://127.0.0.1:{cluster.node(2).replica_ports[1]}" in two
    finally:
        cluster.close()


# --- other versions, and nothing left behind -----------------------------------------------------


def _processes_under(base: Path) -> list[int]:
    """Pids of processes whose command line names ``base`` (every JVM of a cluster does)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(base) in proc.joinpath("cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def test_the_3x_line_runs_too() -> None:
    """Kafka 3.9.2 (reload4j logging) starts and serves a real client, on one node."""
    with KafkaTarget(version="3.9.2", brokers=1) as target:
        assert target.describe()["version"] == "Apache Kafka 3.9.2"
        _create(target.bootstrap, "kc-three", replication=1)
        assert _produce(target.bootstrap, "kc-three", [b"a", b"b"]) == [0, 1]
        assert _consume(target.bootstrap, "kc-three", 2) == [b"a", b"b"]


def test_nothing_left_running_after_an_exception() -> None:
    pids: list[int] = []
    base: Path | None = None
    with pytest.raises(RuntimeError, match="boom"):
        with KafkaCluster(1) as cluster:
            base = cluster.base_dir
            pids = _processes_under(base)
            assert len(pids) == 1 and all(pid_exists(p) for p in pids)
            raise RuntimeError("boom")
    assert base is not None and not base.exists()
    assert not any(pid_exists(p) for p in pids) and not _processes_under(base)


def test_a_failed_start_says_why_and_leaves_nothing() -> None:
    cluster = KafkaCluster(1, {"num.network.threads": "not-a-number"})
    with pytest.raises(KafkaClusterError, match="num.network.threads"):
        cluster.__enter__()
    assert not cluster.base_dir.exists() and not _processes_under(cluster.base_dir)
    target = KafkaTarget(brokers=1, overrides={"num.network.threads": "not-a-number"})
    with pytest.raises(TargetError, match="could not start"):
        target.start()
    assert target.cluster is None and not target.started


def test_make_target_and_version_choice() -> None:
    assert isinstance(make_target("kafka"), KafkaTarget)
    assert make_target("kafka", kafka_version="3.9.2").version == "3.9.2"  # type: ignore[attr-defined]
    with pytest.raises(TargetError, match="not supported"):
        make_target("kafka", kafka_version="2.8.0")
