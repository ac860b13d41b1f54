"""The log side of transactions against a real broker process (KIP-98), with the wire client
playing producer and transaction coordinator (InitProducerId, transactional Produce,
WriteTxnMarkers) and confluent-kafka consumers reading under both isolation levels.

The markers here are the test's, not the broker's transaction coordinator's
(tests/reference_broker/test_transactions.py drives that one): the producer id comes from the
coordinator (InitProducerId with a transactional id, AddPartitionsToTxn, so that the partition
leader's verification passes), but the test never ends the transaction through it; it writes
the markers a coordinator would, with WriteTxnMarkers, so that it decides exactly when each
marker lands.
"""

from __future__ import annotations

from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from launch.broker_process import BrokerProcess
from reference_broker.records import ControlType, EndTransactionMarker, build_control_batch
from tests.kafka_helpers import create_topic, read_values, wire
from tests.reference_broker.test_idempotent_producer import PRODUCE_V, fetch, idempotent_batch

pytestmark = pytest.mark.clients

TOPIC = "idem"  # the name test_idempotent_producer's produce/fetch helpers address
WRITE_TXN_MARKERS = 27
TRANSACTIONAL = 0x10


TRANSACTIONAL_ID = "log-test"


def transactional_producer(bootstrap: str, inits: int = 1) -> int:
    """A producer id of TRANSACTIONAL_ID (at epoch ``inits - 1``) with TOPIC-0 in its
    transaction; the transaction stays open at the coordinator for 15 minutes."""
    found = wire(bootstrap, 10, 4, {"key_type": 1, "coordinator_keys": [TRANSACTIONAL_ID]})
    assert found.coordinators[0].error_code is ErrorCode.none
    for _ in range(inits):
        init = wire(bootstrap, 22, 4, {"transactional_id": TRANSACTIONAL_ID, "transaction_timeout": 900_000,
                                       "producer_id": -1, "producer_epoch": -1})
        assert init.error_code is ErrorCode.none
    added = wire(bootstrap, 24, 3, {
        "v3_and_below_transactional_id": TRANSACTIONAL_ID, "v3_and_below_producer_id": init.producer_id,
        "v3_and_below_producer_epoch": init.producer_epoch,
        "v3_and_below_topics": [{"name": TOPIC, "partitions": [0]}]})
    assert added.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code is ErrorCode.none
    return int(init.producer_id)


def produce(bootstrap: str, records: bytes) -> Any:
    response = wire(bootstrap, 0, PRODUCE_V, {
        "transactional_id": TRANSACTIONAL_ID, "acks": -1, "timeout": 5000,
        "topic_data": [{"name": TOPIC, "partition_data": [{"index": 0, "records": records}]}],
    })
    return response.responses[0].partition_responses[0]


def write_marker(bootstrap: str, producer_id: int, commit: bool, epoch: int = 0,
                 topic: str = TOPIC, version: int = 1) -> Any:
    response = wire(bootstrap, WRITE_TXN_MARKERS, version, {"markers": [{
        "producer_id": producer_id, "producer_epoch": epoch, "transaction_result": commit,
        "topics": [{"name": topic, "partition_indexes": [0]}], "coordinator_epoch": 0,
    }]})
    (marker,) = response.markers
    assert marker.producer_id == producer_id
    return marker.topics[0].partitions[0].error_code


def fetch_committed(bootstrap: str, offset: int) -> Any:
    return fetch(bootstrap, offset, isolation_level=1)


def consume(bootstrap: str, isolation: str, expected: int) -> list[bytes]:
    return read_values(bootstrap, [(TOPIC, 0)], isolation, expected)


def test_read_committed_sees_only_committed_transactions_across_a_crash(
    broker: BrokerProcess,
) -> None:
    create_topic(broker.bootstrap, TOPIC)
    bootstrap = broker.bootstrap
    producer_id = transactional_producer(bootstrap)
    send = lambda sequence, values: produce(  # noqa: E731
        bootstrap, idempotent_batch(producer_id, 0, sequence, values, attributes=TRANSACTIONAL))

    assert send(0, [b"aborted-1", b"aborted-2"]).error_code is ErrorCode.none
    assert write_marker(bootstrap, producer_id, commit=False) is ErrorCode.none
    assert send(2, [b"committed-1", b"committed-2"]).error_code is ErrorCode.none
    assert write_marker(bootstrap, producer_id, commit=True) is ErrorCode.none
    open_first = send(4, [b"open"]).base_offset
    assert open_first == 6  # 2 aborted, marker, 2 committed, marker

    partition = fetch_committed(bootstrap, 0)
    assert partition.high_watermark == 7
    assert partition.last_stable_offset == open_first
    assert [(t.producer_id, t.first_offset) for t in partition.aborted_transactions] == [
        (producer_id, 0)]
    assert fetch(bootstrap, 0).aborted_transactions is None  # read_uncommitted: null
    assert consume(bootstrap, "read_committed", 2) == [b"committed-1", b"committed-2"]
    assert consume(bootstrap, "read_uncommitted", 5) == [
        b"aborted-1", b"aborted-2", b"committed-1", b"committed-2", b"open"]

    # SIGKILL in the middle of the open transaction: the LSO stays where it was.
    broker.kill()
    broker.start()
    partition = fetch_committed(bootstrap, 0)
    assert (partition.high_watermark, partition.last_stable_offset) == (7, open_first)
    assert len(partition.aborted_transactions) == 1
    broker.restart()
    assert fetch_committed(bootstrap, 0).last_stable_offset == open_first

    assert write_marker(bootstrap, producer_id, commit=True) is ErrorCode.none
    partition = fetch_committed(bootstrap, 0)
    assert partition.last_stable_offset == partition.high_watermark == 8
    assert consume(bootstrap, "read_committed", 3) == [b"committed-1", b"committed-2", b"open"]


def test_write_txn_markers_errors_and_control_batches_in_produce(broker: BrokerProcess) -> None:
    create_topic(broker.bootstrap, TOPIC)
    bootstrap = broker.bootstrap
    producer_id = transactional_producer(bootstrap, inits=2)
    batch = idempotent_batch(producer_id, 1, 0, [b"t"], attributes=TRANSACTIONAL)
    assert produce(bootstrap, batch).error_code is ErrorCode.none
    assert write_marker(bootstrap, producer_id, commit=False, epoch=0) is (
        ErrorCode.invalid_producer_epoch)
    assert write_marker(bootstrap, producer_id, commit=False, topic="missing") is (
        ErrorCode.unknown_topic_or_partition)
    assert write_marker(bootstrap, producer_id, commit=False, epoch=1, version=2) is (
        ErrorCode.none)
    # Only WriteTxnMarkers writes control batches; a producer sending one is INVALID_RECORD.
    control = build_control_batch(producer_id, 1, EndTransactionMarker(ControlType.COMMIT, 0), 0)
    assert produce(bootstrap, control).error_code is ErrorCode.invalid_record
    partition = fetch_committed(bootstrap, 0)
    assert partition.last_stable_offset == partition.high_watermark == 2
