"""Consumer groups on a replicated reference cluster: the coordinator (leader of the group's
``__consumer_offsets`` partition) acknowledges a commit only once every in-sync replica has it,
so a commit survives the coordinator's SIGKILL and consumers keep their progress across the
failover. Real processes, confluent-kafka consumers (docs/broker.md, "Groups in a cluster").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from kio.schema.errors import ErrorCode

from launch.reference_cluster import ReferenceCluster
from reference_broker.groups import OFFSETS_TOPIC, partition_for
from tests.kafka_helpers import wire

pytestmark = pytest.mark.timeout(300)

PARTITIONS = 3
BASE = {
    "broker.session.timeout.ms": "3000",
    "broker.heartbeat.interval.ms": "300",
    "offsets.topic.num.partitions": str(PARTITIONS),
    "group.initial.rebalance.delay.ms": "0",
    "group.min.session.timeout.ms": "1000",
    "offsets.commit.timeout.ms": "20000",
    "replica.fetch.backoff.ms": "100",
}
OFFSET_FETCH = 9


def address(cluster: ReferenceCluster, node: int) -> str:
    host, port = cluster.broker(node).address
    return f"{host}:{port}"


def create_topic(cluster: ReferenceCluster, name: str, replicas: list[int]) -> None:
    """One partition placed on ``replicas`` (the first one leads)."""
    response = wire(address(cluster, replicas[0]), 19, 7, {
        "topics": [{"name": name, "num_partitions": -1, "replication_factor": -1,
                    "assignments": [{"partition_index": 0, "broker_ids": replicas}],
                    "configs": [{"name": "min.insync.replicas", "value": "2"}]}],
        "timeout": 10_000, "validate_only": False})
    assert response.topics[0].error_code == ErrorCode.none, response.topics[0]
    cluster.wait_for_leader(name, 0)


def coordinator_of(cluster: ReferenceCluster, group: str) -> tuple[int, list[int]]:
    """(the coordinator: leader of the group's offsets partition, its followers)."""
    index = partition_for(group, PARTITIONS)
    leader, _ = cluster.wait_for_leader(OFFSETS_TOPIC, index)
    state = cluster.metadata(leader, [OFFSETS_TOPIC]).partition(OFFSETS_TOPIC, index)
    assert state is not None and len(state.isr) == 3, state
    return leader, [r for r in state.replicas if r != leader]


def committed_at(cluster: ReferenceCluster, node: int, group: str, topic: str) -> int | None:
    """OffsetFetch of ``topic``-0 at broker ``node``; None while it is not the coordinator."""
    answer = wire(address(cluster, node), OFFSET_FETCH, 7, {
        "group_id": group, "topics": [{"name": topic, "partition_indexes": [0]}],
        "require_stable": False})
    if answer.error_code != ErrorCode.none:
        return None
    return int(answer.topics[0].partitions[0].committed_offset)


def committed_after_failover(cluster: ReferenceCluster, dead: int, group: str,
                             topic: str) -> int:
    """The committed offset as the new coordinator (elected once ``dead`` is fenced) has it."""
    index = partition_for(group, PARTITIONS)
    new, _ = cluster.wait_for_leader(OFFSETS_TOPIC, index, not_node=dead)
    return int(cluster.wait_until(lambda: committed_at(cluster, new, group, topic), 30,
                                  "the new coordinator to answer OffsetFetch"))


def consumer(cluster: ReferenceCluster, group: str, **extra: Any) -> Consumer:
    config: dict[str, Any] = {
        "bootstrap.servers": cluster.bootstrap, "group.id": group,
        "enable.auto.commit": False, "auto.offset.reset": "earliest",
        "session.timeout.ms": 10_000, "heartbeat.interval.ms": 500,
        "topic.metadata.refresh.interval.ms": 500, "log_level": 3,
    }
    config.update(extra)
    return Consumer(config)


def wait_for_assignment(c: Consumer, timeout_s: float = 30) -> list[Any]:
    """Poll until the consumer has its partition; returns the records polled meanwhile."""
    polled = []
    deadline = time.monotonic() + timeout_s
    while not c.assignment() and time.monotonic() < deadline:
        message = c.poll(0.2)
        if message is not None and message.error() is None:
            polled.append(message)
    assert c.assignment(), "the consumer never got its partition"
    return polled


def test_a_commit_acknowledged_just_before_the_coordinator_dies_survives_the_failover(
        tmp_path: Path) -> None:
    """A commit is not acknowledged while the coordinator's followers are frozen; once they
    resume it is, the coordinator is SIGKILLed right then, and the new coordinator has it."""
    group = "survivor"
    with ReferenceCluster(3, BASE, base_dir=tmp_path / "c") as cluster:
        cluster.wait_ready()
        create_topic(cluster, "work", [1, 2, 3])
        leader, followers = coordinator_of(cluster, group)
        c = consumer(cluster, group)
        try:
            c.subscribe(["work"])
            wait_for_assignment(c)
            c.commit(offsets=[TopicPartition("work", 0, 5)], asynchronous=False)
            outcome: list[Any] = []

            def commit_seven() -> None:
                try:
                    outcome.append(c.commit(offsets=[TopicPartition("work", 0, 7)],
                                            asynchronous=False))
                except KafkaException as exc:
                    outcome.append(exc)

            for node in followers:
                cluster.broker(node).pause()
            try:
                committer = threading.Thread(target=commit_seven, daemon=True)
                committer.start()
                committer.join(1.0)
                assert committer.is_alive(), (
                    f"the commit was acknowledged before any follower had it: {outcome}")
            finally:
                for node in followers:
                    cluster.broker(node).resume()
            committer.join(30)
            assert outcome and not isinstance(outcome[0], Exception), outcome
            cluster.broker(leader).kill()
            assert committed_after_failover(cluster, leader, group, "work") == 7
        finally:
            c.close()


def test_commits_reach_the_followers_without_waiting_out_their_fetch_wait(
        tmp_path: Path) -> None:
    """A coordinator's append wakes its followers' parked fetches, so with
    replica.fetch.wait.max.ms=3000 ten synchronous commits take far less than the 30 s they
    would if each waited that out."""
    settings = {**BASE, "replica.fetch.wait.max.ms": "3000"}
    with ReferenceCluster(3, settings, base_dir=tmp_path / "c") as cluster:
        cluster.wait_ready()
        create_topic(cluster, "quick", [1, 2, 3])
        c = consumer(cluster, "quick-group")
        try:
            c.subscribe(["quick"])
            wait_for_assignment(c)
            started = time.monotonic()
            for offset in range(10):
                c.commit(offsets=[TopicPartition("quick", 0, offset)], asynchronous=False)
            elapsed = time.monotonic() - started
        finally:
            c.close()
        assert elapsed < 6, f"10 commits took {elapsed:.1f} s"


def produce_all(cluster: ReferenceCluster, topic: str, count: int) -> None:
    p = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all", "linger.ms": 5,
                  "enable.idempotence": True, "log_level": 3})
    failed: list[str] = []
    for i in range(count):
        p.produce(topic, value=b"v%05d" % i,
                  on_delivery=lambda err, _msg: failed.append(str(err)) if err else None)
    assert p.flush(60) == 0 and not failed, failed[:3]


def test_a_group_keeps_consuming_across_a_coordinator_failover_without_losing_progress(
        tmp_path: Path) -> None:
    """With followers that fetch only once a second, a consumer commits after each batch, the
    coordinator is SIGKILLed right after one commit is acknowledged, and the new coordinator
    holds exactly that offset; the consumer then reads on, never re-reading below it, and
    commits the end."""
    # Followers' fetches wait replica.fetch.wait.max.ms at the leader for bytes that never
    # come (replica.fetch.min.bytes): records reach them about a second after the append, so
    # an acknowledgement given before replication would be lost by the kill.
    settings: Mapping[str, str] = {**BASE, "replica.fetch.min.bytes": str(64 << 20),
                                   "replica.fetch.wait.max.ms": "1000"}
    group, topic, total = "steady", "stream", 300
    with ReferenceCluster(3, settings, base_dir=tmp_path / "c") as cluster:
        cluster.wait_ready()
        leader, _ = coordinator_of(cluster, group)
        # The data partition is led elsewhere, so the kill fails over only the coordinator.
        others = [n for n in (1, 2, 3) if n != leader]
        create_topic(cluster, topic, [*others, leader])
        produce_all(cluster, topic, total)
        c = consumer(cluster, group)
        seen: dict[int, bytes] = {}
        below: list[int] = []
        committed_before_kill: int | None = None
        try:
            c.subscribe([topic])
            early = wait_for_assignment(c)
            deadline = time.monotonic() + 180
            final: int | None = None
            while final != total and time.monotonic() < deadline:
                batch = early + c.consume(num_messages=40, timeout=1.0)
                early = []
                records = [m for m in batch if m.error() is None]
                for message in records:
                    offset = message.offset()
                    assert offset is not None
                    if committed_before_kill is not None and offset < committed_before_kill:
                        below.append(offset)
                    seen[offset] = message.value() or b""
                if not records:
                    if len(seen) == total:
                        try:
                            c.commit(offsets=[TopicPartition(topic, 0, total)], asynchronous=False)
                            final = total
                        except KafkaException:
                            pass
                    continue
                position = max(m.offset() or 0 for m in records) + 1
                try:
                    c.commit(offsets=[TopicPartition(topic, 0, position)], asynchronous=False)
                except KafkaException:  # the coordinator is gone or moving: commit later
                    continue
                if committed_before_kill is None and position >= total // 3:
                    cluster.broker(leader).kill()  # right after the acknowledgement
                    committed_before_kill = position
                    assert committed_after_failover(cluster, leader, group, topic) == position
                if position == total:
                    final = total
        finally:
            c.close()
        assert committed_before_kill is not None, "the coordinator was never killed"
        assert sorted(seen) == list(range(total)), "records were skipped"
        assert [seen[i] for i in range(total)] == [b"v%05d" % i for i in range(total)]
        assert not below, f"re-read {len(below)} record(s) below the committed offset"
        new, _ = cluster.wait_for_leader(OFFSETS_TOPIC, partition_for(group, PARTITIONS))
        assert committed_at(cluster, new, group, topic) == total
