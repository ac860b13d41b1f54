"""Transactions on a replicated reference cluster: the markers of a transaction reach partition
leaders on other brokers, and a transaction left open when its coordinator is SIGKILLed is
committed by the producer through the new coordinator, which rebuilt it from the replicated
``__transaction_state`` (docs/broker.md, "Transactions"). Real processes, confluent-kafka."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Producer
from kio.schema.errors import ErrorCode

from launch.reference_cluster import ReferenceCluster
from reference_broker.transactions import TRANSACTION_STATE_TOPIC, partition_for
from tests.kafka_helpers import read_values, wire

pytestmark = [pytest.mark.clients, pytest.mark.timeout(300)]

STATE_PARTITIONS = 3
SETTINGS = {
    "broker.session.timeout.ms": "3000",
    "broker.heartbeat.interval.ms": "300",
    "offsets.topic.num.partitions": "3",
    "transaction.state.log.num.partitions": str(STATE_PARTITIONS),
    "replica.fetch.backoff.ms": "100",
}
TOPIC = "tx"
TRANSACTIONAL_ID = "tx-cluster"


def address(cluster: ReferenceCluster, node: int) -> str:
    host, port = cluster.broker(node).address
    return f"{host}:{port}"


def create_topic(cluster: ReferenceCluster) -> None:
    """Three partitions, each replicated on every broker and led by a different one."""
    response = wire(address(cluster, 1), 19, 7, {
        "topics": [{"name": TOPIC, "num_partitions": -1, "replication_factor": -1,
                    "assignments": [{"partition_index": p, "broker_ids": [p + 1, (p + 1) % 3 + 1, (p + 2) % 3 + 1]}
                                    for p in range(3)],
                    "configs": [{"name": "min.insync.replicas", "value": "2"}]}],
        "timeout": 10_000, "validate_only": False})
    assert response.topics[0].error_code == ErrorCode.none, response.topics[0]
    for p in range(3):
        cluster.wait_for_leader(TOPIC, p)


def coordinator(cluster: ReferenceCluster, not_node: int | None = None) -> int:
    """The broker leading the transactional id's __transaction_state partition (created by a
    FindCoordinator, as a producer's first one would)."""
    found = wire(address(cluster, 1), 10, 4, {"key_type": 1, "coordinator_keys": [TRANSACTIONAL_ID]})
    assert found.coordinators[0].error_code in (ErrorCode.none, ErrorCode.coordinator_not_available)
    leader, _ = cluster.wait_for_leader(TRANSACTION_STATE_TOPIC,
                                        partition_for(TRANSACTIONAL_ID, STATE_PARTITIONS), not_node=not_node)
    return leader


def read_all(bootstrap: str, isolation: str, expected: int) -> list[bytes]:
    return sorted(read_values(bootstrap, [(TOPIC, p) for p in range(3)], isolation, expected, timeout_s=90))


def write(producer: Producer, prefix: str) -> list[bytes]:
    values = [f"{prefix}-p{p}".encode() for p in range(3)]
    for p, value in enumerate(values):
        producer.produce(TOPIC, value=value, partition=p)
    return values


def test_markers_reach_every_leader_and_an_open_transaction_survives_its_coordinators_death(
        tmp_path: Path) -> None:
    with ReferenceCluster(3, SETTINGS, base_dir=tmp_path / "c") as cluster:
        cluster.wait_ready()
        create_topic(cluster)
        first = coordinator(cluster)
        producer = Producer({"bootstrap.servers": cluster.bootstrap, "transactional.id": TRANSACTIONAL_ID,
                             "linger.ms": 5, "topic.metadata.refresh.interval.ms": 500,
                             "transaction.timeout.ms": 120_000, "log_level": 3})
        producer.init_transactions(60)
        producer.begin_transaction()
        committed = write(producer, "c1")
        producer.commit_transaction(60)
        producer.begin_transaction()
        aborted = write(producer, "a1")
        producer.flush(60)
        producer.abort_transaction(60)
        producer.begin_transaction()
        committed += write(producer, "c2")
        producer.flush(60)

        cluster.broker(first).kill()
        assert coordinator(cluster, not_node=first) != first
        producer.commit_transaction(120)  # EndTxn at the new coordinator, which loaded Ongoing

        assert read_all(cluster.bootstrap, "read_committed", len(committed)) == sorted(committed)
        everything = sorted(committed + aborted)
        assert read_all(cluster.bootstrap, "read_uncommitted", len(everything)) == everything
