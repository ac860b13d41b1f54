"""Replication with real processes and real clients: a reference cluster (controller + three
brokers), confluent-kafka producers and consumers, SIGKILL and SIGSTOP.

What each test shows is the contract of docs/cluster.md, "Replication": acks=all with
min.insync.replicas=2 loses nothing acknowledged across leader failures; acks=1 can lose an
acknowledged record; unclean leader election loses records the new leader never had, and
without it the partition waits offline for an in-sync replica; a deposed leader cannot get a
write acknowledged.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from kio.schema.errors import ErrorCode

from launch.reference_cluster import ReferenceCluster
from reference_broker.drivers.wire_client import WireClient, decode_response, encode_request
from reference_broker.log.testing import batch
from reference_broker.protocol.codec import build, request_class
from tests.kafka_helpers import FAST_CLUSTER, wire

pytestmark = pytest.mark.timeout(300)

SETTINGS = {
    **FAST_CLUSTER,
    "replica.lag.time.max.ms": "3000",
    "replica.fetch.wait.max.ms": "200",
    "replica.fetch.backoff.ms": "100",
}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ReferenceCluster]:
    with ReferenceCluster(3, SETTINGS, base_dir=tmp_path / "cluster") as running:
        running.wait_ready()
        yield running


def _address(cluster: ReferenceCluster, node: int) -> str:
    host, port = cluster.broker(node).address
    return f"{host}:{port}"


def create_topic(cluster: ReferenceCluster, name: str, replicas: list[int] | None = None,
                 configs: Mapping[str, str] | None = None) -> None:
    """One partition on ``replicas`` (default: all three brokers, in placement order)."""
    topic: dict[str, Any] = {
        "name": name, "num_partitions": 1, "replication_factor": 3, "assignments": [],
        "configs": [{"name": k, "value": v} for k, v in (configs or {}).items()],
    }
    if replicas is not None:
        topic.update(num_partitions=-1, replication_factor=-1,
                     assignments=[{"partition_index": 0, "broker_ids": replicas}])
    via = next(n for n, node in cluster.brokers.items() if node.running and not node.paused)
    response = wire(_address(cluster, via), 19, 7,
                    {"topics": [topic], "timeout": 10_000, "validate_only": False})
    assert response.topics[0].error_code == ErrorCode.none, response.topics[0]
    cluster.wait_for_leader(name, 0)


def isr(cluster: ReferenceCluster, topic: str) -> tuple[int, ...]:
    state = cluster.metadata(None, [topic]).partition(topic, 0)
    return state.isr if state is not None and state.leader >= 0 else ()


def wait_for_isr(cluster: ReferenceCluster, topic: str, members: set[int]) -> None:
    cluster.wait_until(lambda: set(isr(cluster, topic)) == members, 60,
                       f"the ISR of {topic}-0 to be {sorted(members)}")


def producer(cluster: ReferenceCluster, **settings: Any) -> Producer:
    config = {
        "bootstrap.servers": cluster.bootstrap,
        "linger.ms": 2,
        "request.timeout.ms": 5000,
        "message.timeout.ms": 120_000,
        "retry.backoff.ms": 50,
        "topic.metadata.refresh.interval.ms": 500,
        "log_level": 3,
    }
    config.update({key.replace("_", "."): value for key, value in settings.items()})
    return Producer(config)


def send(p: Producer, topic: str, value: bytes, timeout_s: float = 30) -> tuple[str, int]:
    """Produce one record and wait for its delivery report: (Kafka's error name or NONE, offset)."""
    outcome: list[tuple[str, int]] = []

    def report(err: KafkaError | None, msg: Any) -> None:
        outcome.append((err.name() if err else "NONE", msg.offset() if not err else -1))

    p.produce(topic, value=value, on_delivery=report)
    p.flush(timeout_s)
    assert outcome, f"no delivery report for {value!r} within {timeout_s}s"
    return outcome[0]


def read_all(cluster: ReferenceCluster, topic: str, timeout_s: float = 60) -> list[tuple[int, bytes]]:
    """Every record of ``topic``-0 from offset 0 to the high watermark, as a consumer sees it."""
    consumer = Consumer({
        "bootstrap.servers": cluster.bootstrap,
        "group.id": f"reader-{uuid.uuid4()}",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "topic.metadata.refresh.interval.ms": 500,
        "log_level": 3,
    })
    records: list[tuple[int, bytes]] = []
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    return records
                continue
            offset, value = message.offset(), message.value()
            assert offset is not None and value is not None
            records.append((offset, value))
        raise AssertionError(f"did not reach the end of {topic}-0 in {timeout_s}s")
    finally:
        consumer.close()


def segment_bytes(cluster: ReferenceCluster, node: int, topic: str) -> bytes:
    """Everything in broker ``node``'s log files of ``topic``-0 (what survives on its disk)."""
    directory = cluster.broker(node).data_dir / f"{topic}-0"
    return b"".join(path.read_bytes() for path in sorted(directory.glob("*.log")))


# --- acks=all ---------------------------------------------------------------------------------


def test_acks_all_with_idempotence_survives_repeated_leader_kills(
        cluster: ReferenceCluster) -> None:
    """RF=3, min.insync.replicas=2, acks=all, idempotence: SIGKILLing the leader mid-stream
    three times loses no acknowledged record and duplicates none."""
    create_topic(cluster, "safe", configs={"min.insync.replicas": "2"})
    p = producer(cluster, acks="all", enable_idempotence=True)
    acked: dict[bytes, int] = {}
    failures: list[str] = []
    stop = threading.Event()
    sent = 0

    def report(err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            failures.append(f"{msg.value()!r}: {err}")
        else:
            acked[msg.value()] = msg.offset()

    def stream() -> None:
        nonlocal sent
        while not stop.is_set():
            try:
                p.produce("safe", value=b"r%06d" % sent, on_delivery=report)
                sent += 1
            except BufferError:
                pass
            p.poll(0.001)

    writer = threading.Thread(target=stream, daemon=True)
    writer.start()
    try:
        for _ in range(3):
            time.sleep(0.7)
            leader, _ = cluster.wait_for_leader("safe", 0)
            cluster.broker(leader).kill()
            cluster.wait_for_leader("safe", 0, not_node=leader)
            time.sleep(0.5)
            cluster.broker(leader).restart()
            wait_for_isr(cluster, "safe", {1, 2, 3})
        time.sleep(0.5)
    finally:
        stop.set()
        writer.join(10)
    assert p.flush(60) == 0, "records still unacknowledged after 60 s"
    assert not failures, failures[:5]
    records = read_all(cluster, "safe")
    values = [value for _, value in records]
    assert len(values) == len(set(values)), "a record was written twice"
    stored = {value: offset for offset, value in records}
    lost = [value for value in acked if value not in stored]
    assert not lost, f"{len(lost)} acknowledged record(s) lost, e.g. {lost[:3]}"
    moved = [value for value, offset in acked.items() if stored[value] != offset]
    assert not moved, f"acknowledged at one offset, stored at another: {moved[:3]}"
    assert len(acked) == sent > 0


# --- acks=1 -----------------------------------------------------------------------------------


def test_acks_1_loses_a_record_acknowledged_before_the_followers_fetched_it(
        cluster: ReferenceCluster) -> None:
    """acks=1: the leader acknowledges a record its followers (paused) never fetched, is killed,
    and the new leader never had it: the acknowledged record is lost and its offset reused."""
    create_topic(cluster, "fast")
    leader, _ = cluster.wait_for_leader("fast", 0)
    followers = [n for n in cluster.brokers if n != leader]
    p = producer(cluster, acks="1")
    assert send(p, "fast", b"before")[0] == "NONE"
    wait_for_isr(cluster, "fast", {1, 2, 3})
    cluster.wait_until(lambda: all(b"before" in segment_bytes(cluster, n, "fast")
                                   for n in followers), what="the followers to copy 'before'")
    for node in followers:
        cluster.broker(node).pause()
    try:
        # A fetch the followers parked at the leader before they froze would still carry the
        # record into their socket buffers: wait until the leader has answered those (empty,
        # at replica.fetch.wait.max.ms).
        time.sleep(3 * int(SETTINGS["replica.fetch.wait.max.ms"]) / 1000)
        error, lost_offset = send(p, "fast", b"lost", timeout_s=5)
        assert error == "NONE", "acks=1 is acknowledged by the leader alone"
        cluster.broker(leader).kill()
    finally:
        for node in followers:
            cluster.broker(node).resume()
    new_leader, _ = cluster.wait_for_leader("fast", 0, not_node=leader)
    assert new_leader in followers
    error, after_offset = send(p, "fast", b"after")
    assert error == "NONE" and after_offset == lost_offset
    cluster.broker(leader).restart()
    wait_for_isr(cluster, "fast", {1, 2, 3})
    assert [value for _, value in read_all(cluster, "fast")] == [b"before", b"after"]
    # The old leader truncated the record when it rejoined as a follower.
    assert b"lost" not in segment_bytes(cluster, leader, "fast")


# --- unclean leader election --------------------------------------------------------------------


@pytest.mark.parametrize("unclean", [True, False], ids=["unclean", "clean"])
def test_unclean_leader_election(cluster: ReferenceCluster, unclean: bool) -> None:
    """The seed's scenario: record 3 is acknowledged while broker 2 is out of the ISR, then the
    leader dies. With unclean.leader.election.enable=true broker 2 becomes leader and record 3
    is lost; with it false the partition stays offline until broker 1 returns, losing nothing."""
    create_topic(cluster, "seed", replicas=[1, 2], configs={
        "min.insync.replicas": "1", "unclean.leader.election.enable": str(unclean).lower()})
    p = producer(cluster, acks="all")
    for value in (b"one", b"two"):
        assert send(p, "seed", value)[0] == "NONE"
    wait_for_isr(cluster, "seed", {1, 2})
    cluster.broker(2).pause()
    cluster.wait_until(lambda: isr(cluster, "seed") == (1,), 30, "broker 2 to leave the ISR")
    assert send(p, "seed", b"three")[0] == "NONE"
    cluster.broker(1).kill()
    cluster.broker(2).resume()
    if unclean:
        leader, _ = cluster.wait_for_leader("seed", 0, not_node=1)
        assert leader == 2
        assert [v for _, v in read_all(cluster, "seed")] == [b"one", b"two"]  # three is gone
        assert send(p, "seed", b"four") == ("NONE", 2)
        cluster.broker(1).restart()
        wait_for_isr(cluster, "seed", {1, 2})
        assert [v for _, v in read_all(cluster, "seed")] == [b"one", b"two", b"four"]
        assert b"three" not in segment_bytes(cluster, 1, "seed")  # truncated on rejoining
    else:
        cluster.wait_for_brokers({2, 3})
        time.sleep(1.0)  # the controller retries elections every tick: give it many
        state = cluster.metadata(3, ["seed"]).partition("seed", 0)
        assert state is not None and state.leader == -1, "an unclean election happened"
        cluster.broker(1).restart()
        leader, _ = cluster.wait_for_leader("seed", 0, not_node=2)
        assert leader == 1
        wait_for_isr(cluster, "seed", {1, 2})
        assert [v for _, v in read_all(cluster, "seed")] == [b"one", b"two", b"three"]


# --- zombie fencing -----------------------------------------------------------------------------


def test_a_paused_leader_cannot_get_a_write_acknowledged(cluster: ReferenceCluster) -> None:
    """A leader frozen by SIGSTOP is replaced; an acks=all write already waiting in its socket
    when it resumes (it still believes it leads) is not acknowledged and never appears."""
    create_topic(cluster, "zombie", configs={"min.insync.replicas": "2"})
    p = producer(cluster, acks="all")
    assert send(p, "zombie", b"before")[0] == "NONE"
    wait_for_isr(cluster, "zombie", {1, 2, 3})
    old, _ = cluster.wait_for_leader("zombie", 0)
    cluster.broker(old).pause()
    new, _ = cluster.wait_for_leader("zombie", 0, not_node=old)
    request = build(request_class(0, 9), {
        "transactional_id": None, "acks": -1, "timeout": 5000,
        "topic_data": [{"name": "zombie", "partition_data": [
            {"index": 0, "records": batch(b"from-the-zombie")}]}],
    })

    async def write_to_the_zombie() -> str:
        host, port = cluster.broker(old).address
        client = WireClient(host, port, timeout_s=15)
        await client.connect()  # the kernel accepts for the frozen process
        try:
            await client.send_raw(encode_request(request, 1))
            cluster.broker(old).resume()
            try:
                _, response = decode_response(0, 9, await client.read_frame())
            except (OSError, TimeoutError, Exception) as exc:  # closed or never answered
                return f"no answer ({type(exc).__name__})"
            return str(response.responses[0].partition_responses[0].error_code.name)
        finally:
            await client.close()

    outcome = asyncio.run(write_to_the_zombie())
    assert outcome != "NONE", "the deposed leader acknowledged a write"
    assert cluster.wait_for_leader("zombie", 0)[0] == new
    wait_for_isr(cluster, "zombie", {1, 2, 3})
    assert [v for _, v in read_all(cluster, "zombie")] == [b"before"]
    assert b"from-the-zombie" not in segment_bytes(cluster, old, "zombie")
