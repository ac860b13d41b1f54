"""Transactions end to end on a reference broker process (KIP-98): real transactional producers
(confluent-kafka, kafka-python, aiokafka) against the broker's transaction coordinator, and
confluent-kafka consumers reading under both isolation levels. Fencing, the transaction
timeout, a SIGKILL in the middle of a transaction, and the admin view of an open transaction."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from kio.schema.errors import ErrorCode

from launch.broker_process import BrokerProcess
from tests.kafka_helpers import create_topic, read_values, wire

pytestmark = [pytest.mark.clients, pytest.mark.timeout(300)]

TOPIC = "tx"
PARTITIONS = 2
DESCRIBE_PRODUCERS, DESCRIBE_TRANSACTIONS, LIST_TRANSACTIONS = 61, 65, 66

# One transaction to write: (value, partition) pairs and whether to commit it.
Transaction = tuple[list[tuple[bytes, int]], bool]
TRANSACTIONS: list[Transaction] = [
    ([(b"c1-p0", 0), (b"c1-p1", 1)], True),
    ([(b"a1-p0", 0), (b"a1-p1", 1)], False),
    ([(b"c2-p1", 1), (b"c2-p0", 0)], True),
]
COMMITTED = sorted(v for records, commit in TRANSACTIONS if commit for v, _ in records)
EVERYTHING = sorted(v for records, _ in TRANSACTIONS for v, _ in records)


def confluent_producer(bootstrap: str, transactional_id: str, **extra: Any) -> Producer:
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": transactional_id,
                         "linger.ms": 5, **extra})
    producer.init_transactions(60)
    return producer


def write_with_confluent(bootstrap: str, transactions: list[Transaction]) -> None:
    producer = confluent_producer(bootstrap, "tx-confluent")
    for records, commit in transactions:
        producer.begin_transaction()
        for value, partition in records:
            producer.produce(TOPIC, value=value, partition=partition)
        if commit:
            producer.commit_transaction(60)
        else:
            producer.flush(60)  # the records are in the log before the abort
            producer.abort_transaction(60)


def write_with_kafka_python(bootstrap: str, transactions: list[Transaction]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, transactional_id="tx-kafka-python")
    try:
        producer.init_transactions()
        for records, commit in transactions:
            producer.begin_transaction()
            for value, partition in records:
                producer.send(TOPIC, value=value, partition=partition)
            if commit:
                producer.commit_transaction()
            else:
                producer.flush()
                producer.abort_transaction()
    finally:
        producer.close()


def write_with_aiokafka(bootstrap: str, transactions: list[Transaction]) -> None:
    from aiokafka import AIOKafkaProducer

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id="tx-aiokafka")
        await producer.start()
        try:
            for records, commit in transactions:
                await producer.begin_transaction()
                for value, partition in records:
                    await (await producer.send(TOPIC, value=value, partition=partition))
                if commit:
                    await producer.commit_transaction()
                else:
                    await producer.abort_transaction()
        finally:
            await producer.stop()

    asyncio.run(run())


WRITERS: dict[str, Callable[[str, list[Transaction]], None]] = {
    "confluent-kafka": write_with_confluent,
    "kafka-python": write_with_kafka_python,
    "aiokafka": write_with_aiokafka,
}


def consume(bootstrap: str, isolation: str, expected: int) -> list[bytes]:
    """Every value of TOPIC a consumer at ``isolation`` reads, sorted."""
    return sorted(read_values(bootstrap, [(TOPIC, p) for p in range(PARTITIONS)], isolation, expected))


def last_stable_offsets(bootstrap: str, topic: str = TOPIC) -> list[int]:
    """ListOffsets latest under read_committed: each partition's last stable offset."""
    response = wire(bootstrap, 2, 7, {"replica_id": -1, "isolation_level": 1, "topics": [
        {"name": topic, "partitions": [{"partition_index": p, "timestamp": -1}
                                       for p in range(PARTITIONS)]}]})
    return [p.offset for p in response.topics[0].partitions]


def describe_transaction(bootstrap: str, transactional_id: str) -> Any:
    """DescribeTransactions of one id. Only for an id with a transaction started: the start
    time of one without is -1, as in Kafka, which the test's decoder (kio) refuses."""
    (state,) = wire(bootstrap, DESCRIBE_TRANSACTIONS, 0,
                    {"transactional_ids": [transactional_id]}).transaction_states
    return state


def state_of(bootstrap: str, transactional_id: str) -> str | None:
    """The id's state as ListTransactions gives it (None: not listed)."""
    listed = wire(bootstrap, LIST_TRANSACTIONS, 0, {"state_filters": [], "producer_id_filters": []})
    return next((t.transaction_state for t in listed.transaction_states
                 if t.transactional_id == transactional_id), None)


@pytest.fixture
def tx_broker(broker: BrokerProcess) -> BrokerProcess:
    create_topic(broker.bootstrap, TOPIC, partitions=PARTITIONS)
    return broker


@pytest.mark.parametrize("client", sorted(WRITERS))
def test_read_committed_sees_committed_transactions_whole_and_aborted_ones_never(
    tx_broker: BrokerProcess, client: str,
) -> None:
    """Each client commits, aborts and commits a transaction over two partitions: a
    read_committed consumer gets exactly the committed records, a read_uncommitted one all of
    them, and the last stable offset reaches the log end once no transaction is open."""
    WRITERS[client](tx_broker.bootstrap, TRANSACTIONS)
    assert consume(tx_broker.bootstrap, "read_committed", len(COMMITTED)) == COMMITTED
    assert consume(tx_broker.bootstrap, "read_uncommitted", len(EVERYTHING)) == EVERYTHING
    # Per partition: 3 records, 3 markers.
    assert last_stable_offsets(tx_broker.bootstrap) == [6, 6]


@pytest.mark.parametrize("transaction_version", [1, 2])
def test_a_new_instance_fences_the_old_one_and_aborts_its_open_transaction(transaction_version: int) -> None:
    """A second producer with the same transactional.id bumps the epoch: the first one's open
    transaction is aborted (its records never reach read_committed readers) and its commit
    fails fatally; the second one's transactions commit. The fence bumps the epoch, and the new
    instance's InitProducerId once more, under either transaction version: these clients use
    version 0, whose aborts bump nothing more (as Kafka 4.4.0 does)."""
    with BrokerProcess({"kconform.transaction.version": str(transaction_version)}) as process:
        bootstrap = process.bootstrap
        create_topic(bootstrap, TOPIC, partitions=PARTITIONS)
        zombie = confluent_producer(bootstrap, "tx-fenced")
        zombie.begin_transaction()
        zombie.produce(TOPIC, value=b"zombie", partition=0)
        zombie.flush(30)
        before = describe_transaction(bootstrap, "tx-fenced")
        assert (before.error_code, before.transaction_state) == (ErrorCode.none, "Ongoing")

        successor = confluent_producer(bootstrap, "tx-fenced")
        successor.begin_transaction()
        successor.produce(TOPIC, value=b"successor", partition=0)
        successor.flush(30)
        after = describe_transaction(bootstrap, "tx-fenced")
        assert after.producer_id == before.producer_id
        assert (after.transaction_state, after.producer_epoch) == ("Ongoing", before.producer_epoch + 2)

        with pytest.raises(KafkaException) as fenced:
            zombie.commit_transaction(30)
        assert fenced.value.args[0].fatal()
        successor.commit_transaction(30)
        assert consume(bootstrap, "read_committed", 1) == [b"successor"]


def test_a_transaction_left_open_past_its_timeout_is_aborted_and_its_producer_fenced() -> None:
    """transaction.timeout.ms: a producer that stops in the middle of a transaction no longer
    holds the last stable offset back once the coordinator has aborted it, and is fenced."""
    with BrokerProcess({"transaction.abort.timed.out.transaction.cleanup.interval.ms": "200"}) as fast:
        bootstrap = fast.bootstrap
        create_topic(bootstrap, TOPIC, partitions=PARTITIONS)
        stalled = confluent_producer(bootstrap, "tx-stalled", **{"transaction.timeout.ms": 2000})
        stalled.begin_transaction()
        stalled.produce(TOPIC, value=b"stalled", partition=0)
        stalled.flush(30)
        assert last_stable_offsets(bootstrap)[0] == 0
        deadline = time.monotonic() + 30
        while state_of(bootstrap, "tx-stalled") != "CompleteAbort":
            assert time.monotonic() < deadline, "the timed-out transaction was never aborted"
            time.sleep(0.2)
        assert last_stable_offsets(bootstrap)[0] == 2  # the record and the abort marker
        with pytest.raises(KafkaException):
            stalled.commit_transaction(30)
        assert consume(bootstrap, "read_committed", 0) == []
        assert consume(bootstrap, "read_uncommitted", 1) == [b"stalled"]


def test_a_transaction_open_across_a_sigkill_is_aborted_by_the_next_instance(
    tx_broker: BrokerProcess,
) -> None:
    """The coordinator's state is in __transaction_state: after a SIGKILL and a restart the
    broker knows the open transaction, and the next instance of the producer aborts it before
    it starts its own. What was committed before the kill stays committed."""
    bootstrap = tx_broker.bootstrap
    producer = confluent_producer(bootstrap, "tx-crash")
    producer.begin_transaction()
    producer.produce(TOPIC, value=b"before", partition=1)
    producer.commit_transaction(30)
    producer.begin_transaction()
    producer.produce(TOPIC, value=b"open", partition=0)
    producer.flush(30)
    tx_broker.kill()
    tx_broker.start()
    assert state_of(bootstrap, "tx-crash") == "Ongoing"
    assert last_stable_offsets(bootstrap)[0] == 0

    successor = confluent_producer(bootstrap, "tx-crash")
    successor.begin_transaction()
    successor.produce(TOPIC, value=b"after", partition=0)
    successor.commit_transaction(30)
    assert consume(bootstrap, "read_committed", 2) == [b"after", b"before"]
    assert consume(bootstrap, "read_uncommitted", 3) == [b"after", b"before", b"open"]


def test_admin_apis_show_an_open_transaction_and_its_producers(tx_broker: BrokerProcess) -> None:
    """DescribeTransactions, ListTransactions (with filters) and DescribeProducers (KIP-664)
    while a transaction is open on partition 1."""
    bootstrap = tx_broker.bootstrap
    producer = confluent_producer(bootstrap, "tx-admin")
    producer.begin_transaction()
    producer.produce(TOPIC, value=b"x", partition=1)
    producer.flush(30)

    described = describe_transaction(bootstrap, "tx-admin")
    assert (described.transaction_state, [(t.topic, list(t.partitions)) for t in described.topics]) == (
        "Ongoing", [(TOPIC, [1])])
    unknown = describe_transaction(bootstrap, "no-such-id")
    assert unknown.error_code == ErrorCode.transactional_id_not_found

    listed = wire(bootstrap, LIST_TRANSACTIONS, 1, {"state_filters": ["Ongoing", "Bogus"],
                                                    "producer_id_filters": [], "duration_filter": -1})
    assert [(t.transactional_id, t.producer_id) for t in listed.transaction_states] == [
        ("tx-admin", described.producer_id)]
    assert list(listed.unknown_state_filters) == ["Bogus"]

    producers = wire(bootstrap, DESCRIBE_PRODUCERS, 0, {"topics": [
        {"name": TOPIC, "partition_indexes": [0, 1, 7]}]}).topics[0].partitions
    assert [p.error_code for p in producers] == [
        ErrorCode.none, ErrorCode.none, ErrorCode.unknown_topic_or_partition]
    assert producers[0].active_producers == ()
    (active,) = producers[1].active_producers
    assert (active.producer_id, active.producer_epoch, active.current_txn_start_offset) == (
        described.producer_id, described.producer_epoch, 0)
    producer.abort_transaction(30)


def test_consume_transform_produce_commits_output_and_offsets_together(tx_broker: BrokerProcess) -> None:
    """The seed's exactly-once flow with confluent-kafka (KIP-98, KIP-447): records read from
    an input topic are written transformed to an output topic, and the consumed offsets sent to
    the same transaction. Committed: the output is visible and the group's offsets moved; an
    aborted transaction moves neither."""
    bootstrap = tx_broker.bootstrap
    create_topic(bootstrap, "in")
    source = Producer({"bootstrap.servers": bootstrap})
    for i in range(10):
        source.produce("in", value=f"in-{i}".encode(), partition=0)
    source.flush(30)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "ctp", "enable.auto.commit": False,
                         "isolation.level": "read_committed", "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition("in", 0, 0)])
    producer = confluent_producer(bootstrap, "tx-ctp")

    def process(commit: bool) -> int:
        """One transaction over the next records; how many it read."""
        records: list[Any] = []
        deadline = time.monotonic() + 30
        while len(records) < 5 and time.monotonic() < deadline:
            records += [m for m in consumer.consume(5 - len(records), 0.5) if m.error() is None]
        producer.begin_transaction()
        for message in records:
            producer.produce(TOPIC, value=b"out-" + (message.value() or b""), partition=0)
        position = [TopicPartition("in", 0, records[-1].offset() + 1)]
        producer.send_offsets_to_transaction(position, consumer.consumer_group_metadata(), 30)
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)
        return len(records)

    assert process(commit=True) == 5
    assert process(commit=False) == 5
    committed = Consumer({"bootstrap.servers": bootstrap, "group.id": "ctp"})
    try:
        (offset,) = committed.committed([TopicPartition("in", 0)], 30)
    finally:
        committed.close()
    consumer.close()
    assert offset.offset == 5  # the aborted transaction's offsets never took effect
    assert consume(tx_broker.bootstrap, "read_committed", 5) == sorted(f"out-in-{i}".encode() for i in range(5))
