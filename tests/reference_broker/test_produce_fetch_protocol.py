"""Produce, Fetch and FindCoordinator at the protocol level: exact error codes and offsets."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from harness.wire import WireClient, build, request_class
from launch.broker_process import BrokerProcess
from reference_broker.records import Record, build_batch
from tests.kafka_helpers import create_topic, topic_id, wire

PRODUCE_V = 9
FETCH_V = 12


def batch(
    values: list[bytes], timestamp: int = 1_700_000_000_000, leader_epoch: int = -1
) -> bytes:
    return build_batch(
        [Record(i, timestamp + i, b"k", v) for i, v in enumerate(values)], base_offset=0,
        partition_leader_epoch=leader_epoch,
    )


def stored(values: list[bytes]) -> bytes:
    """``batch(values)`` as the broker stores it: stamped with the leader's epoch (0 for a
    single node's topic), a field outside the CRC."""
    return batch(values, leader_epoch=0)


def produce_request(topic: str, records: bytes | None, acks: int = -1) -> dict[str, Any]:
    return {
        "transactional_id": None,
        "acks": acks,
        "timeout": 5000,
        "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": records}]}],
    }


def produce_result(bootstrap: str, topic: str, records: bytes | None, acks: int = -1) -> Any:
    response = wire(bootstrap, 0, PRODUCE_V, produce_request(topic, records, acks))
    return response.responses[0].partition_responses[0]


def fetch_request(topic: str, offset: int, *, max_wait_ms: int = 0, min_bytes: int = 1,
                  max_bytes: int = 10_000_000, partition_max_bytes: int = 1_000_000) -> dict[str, Any]:
    return {
        "replica_id": -1,
        "max_wait": max_wait_ms,
        "min_bytes": min_bytes,
        "max_bytes": max_bytes,
        "isolation_level": 0,
        "session_id": 0,
        "session_epoch": -1,
        "topics": [{"topic": topic, "partitions": [
            {"partition": 0, "current_leader_epoch": -1, "fetch_offset": offset,
             "last_fetched_epoch": -1, "log_start_offset": -1,
             "partition_max_bytes": partition_max_bytes}]}],
        "forgotten_topics_data": [],
        "rack_id": "",
    }


def fetch_partition(bootstrap: str, topic: str, offset: int, **kwargs: Any) -> Any:
    response = wire(bootstrap, 1, FETCH_V, fetch_request(topic, offset, **kwargs))
    return response.responses[0].partitions[0]


@pytest.fixture
def topic(broker: BrokerProcess) -> str:
    create_topic(broker.bootstrap, "wire-topic")
    return "wire-topic"


def test_produce_assigns_consecutive_base_offsets(broker: BrokerProcess, topic: str) -> None:
    """Each acknowledged batch gets the log end offset as its base offset."""
    first = produce_result(broker.bootstrap, topic, batch([b"a", b"b", b"c"]))
    second = produce_result(broker.bootstrap, topic, batch([b"d"]))
    assert (first.error_code, first.base_offset) == (ErrorCode.none, 0)
    assert (second.error_code, second.base_offset) == (ErrorCode.none, 3)


def test_corrupt_crc_is_corrupt_message_and_nothing_is_stored(broker: BrokerProcess, topic: str) -> None:
    """A batch whose CRC does not match is refused with CORRUPT_MESSAGE and not appended."""
    data = bytearray(batch([b"value"]))
    data[-1] ^= 0xFF
    assert produce_result(broker.bootstrap, topic, bytes(data)).error_code == ErrorCode.corrupt_message
    assert fetch_partition(broker.bootstrap, topic, 0).high_watermark == 0


def test_truncated_batch_is_corrupt_message(broker: BrokerProcess, topic: str) -> None:
    """A record set cut short inside a batch is refused with CORRUPT_MESSAGE."""
    data = batch([b"value"])[:-3]
    assert produce_result(broker.bootstrap, topic, data).error_code == ErrorCode.corrupt_message


def test_a_refused_batch_carries_the_log_start_offset_kafka_gives(broker: BrokerProcess) -> None:
    """As Kafka's ReplicaManager (found by a differential run against 4.4.0): a refusal by the
    partition's producer state carries the log start offset, a corrupt batch -1."""
    from harness.session import WireSession, make_batch

    with WireSession(broker.bootstrap) as session:
        assert session.create_topic("refusals", 1) == "NONE"
        _, producer, epoch = session.init_producer_id()
        first = make_batch([b"a", b"b"], producer_id=producer, producer_epoch=epoch, base_sequence=0)
        assert session.produce("refusals", 0, first) is not None
        assert session.delete_records("refusals", 0, 1) == ("NONE", 1)
        gap = make_batch([b"c"], producer_id=producer, producer_epoch=epoch, base_sequence=5)
        refused = session.produce("refusals", 0, gap)
        assert refused is not None
        assert (refused.error, refused.base_offset, refused.log_start_offset) == ("OUT_OF_ORDER_SEQUENCE_NUMBER", -1, 1)
        corrupt = session.produce("refusals", 0, make_batch([b"d"])[:-3])
        assert corrupt is not None and (corrupt.error, corrupt.log_start_offset) == ("CORRUPT_MESSAGE", -1)


def test_batch_over_max_message_bytes_is_message_too_large(tmp_path: Any) -> None:
    """A batch larger than message.max.bytes gets MESSAGE_TOO_LARGE."""
    with BrokerProcess(overrides={"message.max.bytes": "200"}, data_dir=tmp_path) as broker:
        create_topic(broker.bootstrap, "small")
        result = produce_result(broker.bootstrap, "small", batch([b"x" * 300]))
        assert result.error_code == ErrorCode.message_too_large


def test_record_set_over_segment_size_is_record_list_too_large(broker: BrokerProcess) -> None:
    """A record set larger than the topic's segment.bytes gets RECORD_LIST_TOO_LARGE."""
    create_topic(broker.bootstrap, "tiny-segments", config={"segment.bytes": "1000"})
    result = produce_result(broker.bootstrap, "tiny-segments", batch([b"x" * 1200]))
    assert result.error_code == ErrorCode.record_list_too_large


def test_two_batches_for_one_partition_are_invalid_record(broker: BrokerProcess, topic: str) -> None:
    """Produce v3+ carries exactly one batch per partition; two are INVALID_RECORD and
    nothing is stored."""
    result = produce_result(broker.bootstrap, topic, batch([b"a"]) + batch([b"b"]))
    assert result.error_code == ErrorCode.invalid_record
    assert fetch_partition(broker.bootstrap, topic, 0).high_watermark == 0


def test_produce_to_the_offsets_topic_is_refused(broker: BrokerProcess) -> None:
    """Clients cannot write to __consumer_offsets (INVALID_TOPIC_EXCEPTION), as with Kafka."""
    result = produce_result(broker.bootstrap, "__consumer_offsets", batch([b"forged"]))
    assert result.error_code == ErrorCode.invalid_topic_exception


def test_invalid_acks_is_invalid_required_acks(broker: BrokerProcess, topic: str) -> None:
    """acks outside 0, 1 and -1 is refused with INVALID_REQUIRED_ACKS."""
    assert produce_result(broker.bootstrap, topic, batch([b"v"]), acks=2).error_code == (
        ErrorCode.invalid_required_acks
    )


def test_unknown_topic_without_auto_create(tmp_path: Any) -> None:
    """With auto.create.topics.enable=false a produce to an unknown topic is
    UNKNOWN_TOPIC_OR_PARTITION and creates nothing."""
    with BrokerProcess(overrides={"auto.create.topics.enable": "false"}, data_dir=tmp_path) as broker:
        result = produce_result(broker.bootstrap, "nope", batch([b"v"]))
        assert result.error_code == ErrorCode.unknown_topic_or_partition
        assert fetch_partition(broker.bootstrap, "nope", 0).error_code == (
            ErrorCode.unknown_topic_or_partition
        )


def test_unknown_topic_is_auto_created_by_default(broker: BrokerProcess) -> None:
    """With the default auto.create.topics.enable=true a produce creates the topic."""
    result = produce_result(broker.bootstrap, "auto-made", batch([b"v"]))
    assert (result.error_code, result.base_offset) == (ErrorCode.none, 0)


def test_acks_zero_gets_no_response_but_is_stored(broker: BrokerProcess, topic: str) -> None:
    """acks=0 is appended without a response; the next request's answer comes back next."""

    async def run() -> Any:
        async with WireClient.for_bootstrap(broker.bootstrap) as client:
            request = build(request_class(0, PRODUCE_V),
                            produce_request(topic, batch([b"fire"]), acks=0))
            await client.request(request, expect_response=False)
            return await client.call(1, FETCH_V, fetch_request(topic, 0))

    response = asyncio.run(run())
    assert response.responses[0].partitions[0].high_watermark == 1


def test_fetch_returns_whole_batches_from_the_one_containing_the_offset(
    broker: BrokerProcess, topic: str
) -> None:
    """Fetching from the middle of a batch returns that batch from its base offset."""
    produce_result(broker.bootstrap, topic, batch([b"a", b"b", b"c"]))
    part = fetch_partition(broker.bootstrap, topic, 1)
    assert part.error_code == ErrorCode.none
    assert part.records == stored([b"a", b"b", b"c"])
    assert (part.high_watermark, part.last_stable_offset, part.log_start_offset) == (3, 3, 0)


def test_fetch_beyond_log_end_is_offset_out_of_range(broker: BrokerProcess, topic: str) -> None:
    """A fetch offset past the log end offset is OFFSET_OUT_OF_RANGE, and, as Kafka answers a
    consumer (measured on 4.4.0), the answer carries no positions: all three are -1."""
    produce_result(broker.bootstrap, topic, batch([b"a"]))
    part = fetch_partition(broker.bootstrap, topic, 5)
    assert part.error_code == ErrorCode.offset_out_of_range
    assert (part.high_watermark, part.last_stable_offset, part.log_start_offset) == (-1, -1, -1)


def test_partition_max_bytes_still_returns_one_whole_batch(broker: BrokerProcess, topic: str) -> None:
    """KIP-74: the first batch is returned whole even when larger than the limits."""
    for value in (b"a" * 500, b"b" * 500, b"c" * 500):
        produce_result(broker.bootstrap, topic, batch([value]))
    one = fetch_partition(broker.bootstrap, topic, 0, partition_max_bytes=1)
    assert one.records == stored([b"a" * 500])
    two = fetch_partition(broker.bootstrap, topic, 0, partition_max_bytes=2 * len(one.records))
    assert len(two.records) == 2 * len(one.records)


def test_fetch_waits_for_max_wait_when_there_is_no_data(broker: BrokerProcess, topic: str) -> None:
    """An empty fetch with min_bytes=1 is answered no sooner than max_wait."""
    started = time.monotonic()
    part = fetch_partition(broker.bootstrap, topic, 0, max_wait_ms=600)
    assert time.monotonic() - started >= 0.55
    assert part.error_code == ErrorCode.none and part.records in (b"", None)


def test_parked_fetch_is_answered_when_data_arrives(broker: BrokerProcess, topic: str) -> None:
    """A fetch parked with a long max_wait returns the data produced while it waits."""

    async def run() -> tuple[Any, float]:
        async with WireClient.for_bootstrap(broker.bootstrap, timeout_s=30) as client:
            started = time.monotonic()
            fetch = asyncio.create_task(client.call(1, FETCH_V, fetch_request(topic, 0, max_wait_ms=20_000)))
            await asyncio.sleep(0.3)
            await asyncio.to_thread(produce_result, broker.bootstrap, topic, batch([b"late"]))
            response = await fetch
            return response.responses[0].partitions[0], time.monotonic() - started

    part, elapsed = asyncio.run(run())
    assert part.records == stored([b"late"])
    assert elapsed < 15, "the fetch waited for max_wait although data had arrived"


def test_fetch_by_topic_id(broker: BrokerProcess, topic: str) -> None:
    """Fetch v13+ addresses topics by id; an unknown id is UNKNOWN_TOPIC_ID."""
    import uuid

    produce_result(broker.bootstrap, topic, batch([b"by-id"]))

    def by_id(tid: uuid.UUID) -> Any:
        request = fetch_request(topic, 0)
        request["topics"] = [{"topic_id": tid, "partitions": request["topics"][0]["partitions"]}]
        request["cluster_id"] = None
        request.pop("replica_id")
        request["replica_state"] = {"replica_id": -1, "replica_epoch": -1}
        return wire(broker.bootstrap, 1, 16, request).responses[0]

    found = by_id(topic_id(broker.bootstrap, topic))
    assert found.partitions[0].records == stored([b"by-id"])
    assert by_id(uuid.uuid4()).partitions[0].error_code == ErrorCode.unknown_topic_id


def test_find_coordinator_names_this_node_for_groups_and_transactional_ids(
    broker: BrokerProcess,
) -> None:
    """A single node coordinates every group and transactional id; an unknown key type is
    INVALID_REQUEST."""
    for key_type in (0, 1):
        response = wire(broker.bootstrap, 10, 4, {"key_type": key_type, "coordinator_keys": ["k"]})
        assert [(c.error_code, c.node_id) for c in response.coordinators] == [(ErrorCode.none, 0)]
    unknown = wire(broker.bootstrap, 10, 4, {"key_type": 2, "coordinator_keys": ["k"]})
    assert [c.error_code for c in unknown.coordinators] == [ErrorCode.invalid_request]


def test_acks_all_below_min_insync_replicas_is_not_enough_replicas(broker: BrokerProcess) -> None:
    """With min.insync.replicas=2 a single node's ISR is too small: acks=-1 gets
    NOT_ENOUGH_REPLICAS and nothing is stored, while acks=1 still succeeds."""
    create_topic(broker.bootstrap, "needs-two", config={"min.insync.replicas": "2"})
    refused = produce_result(broker.bootstrap, "needs-two", batch([b"v"]), acks=-1)
    assert refused.error_code == ErrorCode.not_enough_replicas
    assert fetch_partition(broker.bootstrap, "needs-two", 0).high_watermark == 0
    accepted = produce_result(broker.bootstrap, "needs-two", batch([b"v"]), acks=1)
    assert (accepted.error_code, accepted.base_offset) == (ErrorCode.none, 0)
