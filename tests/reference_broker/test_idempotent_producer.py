"""Idempotent producers at the protocol level: InitProducerId, retried batches, sequence and
epoch errors, expiry, and producer state surviving clean and unclean restarts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from launch.broker_process import BrokerProcess
from reference_broker.log.testing import stored_batches
from reference_broker.records import Record, build_batch, iter_records
from tests.kafka_helpers import create_topic, wire

PRODUCE_V = 9
FETCH_V = 12
INIT_PRODUCER_ID = 22
TOPIC = "idem"


def init_producer_id(bootstrap: str, version: int = 4, transactional_id: str | None = None,
                     producer_id: int = -1, producer_epoch: int = -1) -> Any:
    return wire(bootstrap, INIT_PRODUCER_ID, version, {
        "transactional_id": transactional_id, "transaction_timeout": 60_000,
        "producer_id": producer_id, "producer_epoch": producer_epoch,
    })


def idempotent_batch(producer_id: int, epoch: int, sequence: int, values: list[bytes],
                     attributes: int = 0) -> bytes:
    """A batch as an idempotent producer sends it, timestamped now (expiry counts from it)."""
    now = int(time.time() * 1000)
    return build_batch([Record(i, now, None, v) for i, v in enumerate(values)], base_offset=0,
                       producer_id=producer_id, producer_epoch=epoch, base_sequence=sequence,
                       attributes=attributes)


def produce(bootstrap: str, records: bytes) -> Any:
    response = wire(bootstrap, 0, PRODUCE_V, {
        "transactional_id": None, "acks": -1, "timeout": 5000,
        "topic_data": [{"name": TOPIC, "partition_data": [{"index": 0, "records": records}]}],
    })
    return response.responses[0].partition_responses[0]


def fetch(bootstrap: str, offset: int, isolation_level: int = 0) -> Any:
    """One partition of a Fetch at ``offset`` (isolation_level 1 is read_committed)."""
    response = wire(bootstrap, 1, FETCH_V, {
        "replica_id": -1, "max_wait": 0, "min_bytes": 1, "max_bytes": 50_000_000,
        "isolation_level": isolation_level, "session_id": 0, "session_epoch": -1,
        "topics": [{"topic": TOPIC, "partitions": [{
            "partition": 0, "current_leader_epoch": -1, "fetch_offset": offset,
            "last_fetched_epoch": -1, "log_start_offset": -1, "partition_max_bytes": 50_000_000}]}],
        "forgotten_topics_data": [], "rack_id": "",
    })
    return response.responses[0].partitions[0]


def stored_values(bootstrap: str) -> list[bytes | None]:
    """Every record value in the partition, in offset order (a fetch returns one segment)."""
    values: list[bytes | None] = []
    offset = 0
    while True:
        partition = fetch(bootstrap, offset)
        data = partition.records or b""
        if offset >= partition.high_watermark or not data:
            return values
        for header in stored_batches(data):
            values.extend(r.value for r in iter_records(data, header) if r.offset >= offset)
            offset = header.next_offset


def new_producer(bootstrap: str) -> int:
    response = init_producer_id(bootstrap)
    assert (response.error_code, response.producer_epoch) == (ErrorCode.none, 0)
    return int(response.producer_id)


@pytest.fixture
def topic(broker: BrokerProcess) -> str:
    create_topic(broker.bootstrap, TOPIC)
    return TOPIC


def test_init_producer_id_gives_distinct_ids_also_across_a_restart(broker: BrokerProcess) -> None:
    """Every InitProducerId (any version) gets a new id with epoch 0, never reused after a
    clean or unclean restart."""
    ids = [int(init_producer_id(broker.bootstrap, version).producer_id) for version in range(6)]
    broker.restart()
    ids.append(new_producer(broker.bootstrap))
    broker.kill()
    broker.start()
    ids.append(new_producer(broker.bootstrap))
    assert len(set(ids)) == len(ids)
    assert all(producer_id >= 0 for producer_id in ids)


def test_an_idempotent_producer_asking_for_a_bump_gets_a_new_id(broker: BrokerProcess) -> None:
    """v3+ with the current id and epoch (KIP-360) gets a fresh id, as Kafka gives
    non-transactional producers; an id without an epoch is INVALID_REQUEST."""
    first = new_producer(broker.bootstrap)
    bumped = init_producer_id(broker.bootstrap, 3, producer_id=first, producer_epoch=0)
    assert bumped.error_code == ErrorCode.none and bumped.producer_id != first
    half = init_producer_id(broker.bootstrap, 3, producer_id=first, producer_epoch=-1)
    assert half.error_code == ErrorCode.invalid_request


def test_a_transactional_id_keeps_its_producer_id_with_a_new_epoch(broker: BrokerProcess) -> None:
    """A transactional InitProducerId goes to the id's coordinator (found with FindCoordinator,
    which creates __transaction_state); each one keeps the id's producer id and bumps its
    epoch, which fences the previous instance (KIP-98)."""
    found = wire(broker.bootstrap, 10, 4, {"key_type": 1, "coordinator_keys": ["txn-1"]})
    assert [c.error_code for c in found.coordinators] == [ErrorCode.none]
    first = init_producer_id(broker.bootstrap, transactional_id="txn-1")
    second = init_producer_id(broker.bootstrap, transactional_id="txn-1")
    assert (first.error_code, second.error_code) == (ErrorCode.none, ErrorCode.none)
    assert second.producer_id == first.producer_id >= 0
    assert (first.producer_epoch, second.producer_epoch) == (0, 1)


def test_a_resent_batch_gets_its_original_offset_and_is_stored_once(
    broker: BrokerProcess, topic: str
) -> None:
    """Sending the exact same batch again answers with the first base offset and stores nothing."""
    producer_id = new_producer(broker.bootstrap)
    produce(broker.bootstrap, idempotent_batch(-1, -1, -1, [b"plain"]))
    first = idempotent_batch(producer_id, 0, 0, [b"a", b"b"])
    assert produce(broker.bootstrap, first).base_offset == 1
    assert produce(broker.bootstrap, idempotent_batch(producer_id, 0, 2, [b"c"])).base_offset == 3
    again = produce(broker.bootstrap, first)
    assert (again.error_code, again.base_offset) == (ErrorCode.none, 1)
    assert stored_values(broker.bootstrap) == [b"plain", b"a", b"b", b"c"]


def test_a_sequence_gap_is_out_of_order_sequence_number(broker: BrokerProcess, topic: str) -> None:
    """A batch skipping sequences is refused with OUT_OF_ORDER_SEQUENCE_NUMBER and not stored."""
    producer_id = new_producer(broker.bootstrap)
    produce(broker.bootstrap, idempotent_batch(producer_id, 0, 0, [b"a"]))
    gap = produce(broker.bootstrap, idempotent_batch(producer_id, 0, 2, [b"c"]))
    assert (gap.error_code, gap.base_offset) == (ErrorCode.out_of_order_sequence_number, -1)
    assert stored_values(broker.bootstrap) == [b"a"]


def test_a_stale_epoch_is_invalid_producer_epoch(broker: BrokerProcess, topic: str) -> None:
    """Once a producer id wrote with epoch 1, a batch with epoch 0 is INVALID_PRODUCER_EPOCH."""
    producer_id = new_producer(broker.bootstrap)
    produce(broker.bootstrap, idempotent_batch(producer_id, 0, 0, [b"a"]))
    assert produce(broker.bootstrap, idempotent_batch(producer_id, 1, 0, [b"b"])).error_code == (
        ErrorCode.none)
    stale = produce(broker.bootstrap, idempotent_batch(producer_id, 0, 1, [b"c"]))
    assert stale.error_code == ErrorCode.invalid_producer_epoch
    assert stored_values(broker.bootstrap) == [b"a", b"b"]


def test_an_expired_producer_is_unknown_producer_id(tmp_path: Path) -> None:
    """After producer.id.expiration.ms without writes, a continuing sequence gets
    UNKNOWN_PRODUCER_ID; before it, the same sequence is accepted."""
    overrides = {"producer.id.expiration.ms": "1500",
                 "producer.id.expiration.check.interval.ms": "100"}
    with BrokerProcess(overrides=overrides, data_dir=tmp_path) as broker:
        create_topic(broker.bootstrap, TOPIC)
        producer_id = new_producer(broker.bootstrap)
        produce(broker.bootstrap, idempotent_batch(producer_id, 0, 0, [b"a"]))
        assert produce(broker.bootstrap, idempotent_batch(producer_id, 0, 1, [b"b"])).error_code == (
            ErrorCode.none)
        time.sleep(2.0)
        late = produce(broker.bootstrap, idempotent_batch(producer_id, 0, 2, [b"c"]))
        assert late.error_code == ErrorCode.unknown_producer_id
        assert stored_values(broker.bootstrap) == [b"a", b"b"]


@pytest.mark.parametrize("how", ["clean", "kill"])
def test_a_batch_retried_after_a_restart_is_not_duplicated(
    tmp_path: Path, how: str
) -> None:
    """Producer state is rebuilt on restart: retrying every one of the last five batches after a
    clean stop or a SIGKILL returns their original offsets and stores nothing twice."""
    # Small segments, so the state comes from a roll snapshot plus replay of the active segment.
    with BrokerProcess(overrides={"log.segment.bytes": "400"}, data_dir=tmp_path) as broker:
        create_topic(broker.bootstrap, TOPIC)
        producer_id = new_producer(broker.bootstrap)
        batches = [idempotent_batch(producer_id, 0, 2 * i, [b"%d" % (2 * i), b"%d" % (2 * i + 1)])
                   for i in range(12)]
        offsets = [produce(broker.bootstrap, batch).base_offset for batch in batches]
        assert offsets == list(range(0, 24, 2))
        if how == "clean":
            broker.restart()
        else:
            broker.kill()
            broker.start()
        for batch, offset in list(zip(batches, offsets))[-5:]:
            retried = produce(broker.bootstrap, batch)
            assert (retried.error_code, retried.base_offset) == (ErrorCode.none, offset)
        gap = produce(broker.bootstrap, idempotent_batch(producer_id, 0, 25, [b"x"]))
        assert gap.error_code == ErrorCode.out_of_order_sequence_number
        assert produce(broker.bootstrap, idempotent_batch(producer_id, 0, 24, [b"24"])).base_offset == 24
        assert stored_values(broker.bootstrap) == [b"%d" % i for i in range(25)]
