"""The coordinator over a real ``__consumer_offsets`` topic in a broker core (no sockets)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kio.schema.errors import ErrorCode
from kio.schema.offset_fetch.v7.request import OffsetFetchRequest, OffsetFetchRequestTopic
from kio.schema.txn_offset_commit.v3.request import (
    TxnOffsetCommitRequest,
    TxnOffsetCommitRequestPartition,
    TxnOffsetCommitRequestTopic,
)
from kio.schema.write_txn_markers.v1.request import (
    WritableTxnMarker,
    WritableTxnMarkerTopic,
    WriteTxnMarkersRequest,
)

from reference_broker.broker import Broker
from reference_broker.config import load_broker_config
from reference_broker.groups import OFFSETS_TOPIC, GroupState, JoinRequest, OffsetValue, partition_for
from reference_broker.groups.log_format import decode_key
from reference_broker.groups.testing import Reply
from reference_broker.handlers import HANDLERS
from reference_broker.handlers.context import Deferred, RequestContext
from reference_broker.records import iter_records, scan_valid_prefix
from reference_broker.testing import create_topic, delete_topic

NOW = 1_700_000_000_000


def open_broker(directory: Path, **overrides: str) -> Broker:
    settings = {"log.dirs": str(directory), "group.initial.rebalance.delay.ms": "0",
                "offsets.topic.num.partitions": "7", **overrides}
    return Broker(load_broker_config(overrides=settings.items()), NOW)


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "data"


def join_and_sync(broker: Broker, group: str = "g") -> tuple[str, int]:
    """One member joins (v3, no MEMBER_ID_REQUIRED) and syncs; returns (member id, generation)."""
    reply: Reply = Reply()
    broker.groups.join_group(
        JoinRequest(group, "", None, "consumer", (("range", b"sub"),), 10_000, 30_000,
                    client_id="c", require_known_member_id=False),
        NOW, reply,
    )
    joined = reply.result
    synced: Reply = Reply()
    broker.groups.sync_group(group, joined.generation_id, joined.member_id, None, None, None,
                             {joined.member_id: b"assignment"}, NOW, synced)
    assert synced.result.error == ErrorCode.none
    return joined.member_id, joined.generation_id


def commit_now(broker: Broker, group: str, generation: int, member: str,
               offsets: dict[tuple[str, int], OffsetValue], now: int = NOW) -> dict[Any, ErrorCode]:
    """OffsetCommit v8, which a single node (an ISR of one) answers before returning."""
    reply: Reply[dict[Any, ErrorCode]] = Reply()
    broker.groups.commit_offsets(group, generation, member, None, offsets, 8, now, reply)
    return reply.result


def commit(broker: Broker, member: str, generation: int, offset: int, now: int = NOW) -> None:
    result = commit_now(broker, "g", generation, member,
                        {("t", 0): OffsetValue(offset, 5, "meta", now)}, now)
    assert result == {("t", 0): ErrorCode.none}


def stored_keys(broker: Broker, partition: int) -> list[object]:
    plog = broker.partition(OFFSETS_TOPIC, partition)
    assert plog is not None
    data = plog.log.read(plog.log.log_start_offset, 10 * 1024 * 1024).records
    headers, _ = scan_valid_prefix(data)
    return [decode_key(r.key or b"") for h in headers for r in iter_records(data, h)]


def test_offsets_topic_is_created_compacted_on_first_use(data_dir: Path) -> None:
    """FindCoordinator's first use creates __consumer_offsets with offsets.topic.num.partitions
    partitions, compacted; a group's records go to its partitionFor partition."""
    broker = open_broker(data_dir)
    assert broker.topics.get(OFFSETS_TOPIC) is None
    assert broker.groups.ensure_storage(NOW) is None
    record = broker.topics.get(OFFSETS_TOPIC)
    assert record is not None and record.partitions == 7
    assert record.configs["cleanup.policy"] == "compact"
    member, generation = join_and_sync(broker)
    commit(broker, member, generation, 42)
    keys = stored_keys(broker, partition_for("g", 7))
    assert len(keys) == 3  # generation 1 begun, its assignment, one commit
    broker.close()


def test_groups_and_offsets_are_rebuilt_when_the_broker_reopens(data_dir: Path) -> None:
    """Reopening the data directory reloads the Stable group (generation, members, assignment)
    and every committed offset with its metadata and leader epoch."""
    broker = open_broker(data_dir)
    member, generation = join_and_sync(broker)
    commit(broker, member, generation, 41)
    commit(broker, member, generation, 42)
    broker.close()
    broker = open_broker(data_dir)
    group = broker.groups.group("g")
    assert group is not None
    assert (group.state, group.generation_id) == (GroupState.STABLE, generation)
    assert group.members[member].assignment == b"assignment"
    ((_, value),) = broker.groups.fetch_offsets("g", [("t", 0)])
    assert value == OffsetValue(42, 5, "meta", NOW)
    assert broker.groups.heartbeat("g", generation, member, None, NOW + 1000) == ErrorCode.none
    broker.close()


def test_compaction_keeps_the_latest_commit_and_the_reload_agrees(data_dir: Path) -> None:
    """After many commits and a compaction of the offsets partition, one record per key is left
    and a reopened broker still has the latest offset."""
    broker = open_broker(data_dir, **{"offsets.topic.segment.bytes": "1024"})
    member, generation = join_and_sync(broker)
    for offset in range(100):
        commit(broker, member, generation, offset, NOW + offset)
    partition = broker.partition(OFFSETS_TOPIC, partition_for("g", 7))
    assert partition is not None and len(partition.log.segment_base_offsets) > 2
    partition.log.compact(NOW + 1000)
    keys = stored_keys(broker, partition_for("g", 7))
    assert keys.count(keys[-1]) <= 2  # the active segment is never compacted
    assert len(keys) < 20
    broker.close()
    broker = open_broker(data_dir, **{"offsets.topic.segment.bytes": "1024"})
    ((_, value),) = broker.groups.fetch_offsets("g", [("t", 0)])
    assert value is not None and value.offset == 99
    broker.close()


def test_deleting_a_topic_forgets_its_committed_offsets(data_dir: Path) -> None:
    """Deleting a topic removes groups' offsets for it (with tombstones), as Kafka does."""
    broker = open_broker(data_dir)
    create_topic(broker, "t", 1, 1, {}, NOW)
    assert commit_now(broker, "simple", -1, "", {("t", 0): OffsetValue(3)}) == {
        ("t", 0): ErrorCode.none}
    delete_topic(broker, "t")
    assert broker.groups.fetch_offsets("simple", None) == []
    broker.close()
    broker = open_broker(data_dir)
    assert broker.groups.fetch_offsets("simple", None) == []
    broker.close()


def test_replication_factor_above_one_leaves_groups_without_a_coordinator(data_dir: Path) -> None:
    """With offsets.topic.replication.factor=3 a single node cannot create the topic, so (as
    Kafka with too few brokers) there is no coordinator: COORDINATOR_NOT_AVAILABLE."""
    broker = open_broker(data_dir, **{"offsets.topic.replication.factor": "3"})
    assert broker.groups.ensure_storage(NOW) == ErrorCode.coordinator_not_available
    assert commit_now(broker, "g", -1, "", {("t", 0): OffsetValue(1)}) == {
        ("t", 0): ErrorCode.coordinator_not_available}
    broker.close()


# --- transactional offset commits (TxnOffsetCommit, WriteTxnMarkers) through the handlers ------


def handle(broker: Broker, api_key: int, version: int, request: Any) -> Any:
    """One request through the broker's handler table; a single node answers at once."""
    response = HANDLERS[api_key](broker, RequestContext(api_key, version, 1, "test", "PLAINTEXT",
                                                        "127.0.0.1:1"), request, NOW)
    assert not isinstance(response, Deferred)
    return response


def txn_offset_commit(broker: Broker, producer_id: int, epoch: int, offset: int) -> ErrorCode:
    """TxnOffsetCommit v3 of (t, 0) for group g, without a member (generation -1)."""
    request = TxnOffsetCommitRequest(
        transactional_id="tx", group_id="g", producer_id=producer_id, producer_epoch=epoch,
        generation_id=-1, member_id="", group_instance_id=None,
        topics=(TxnOffsetCommitRequestTopic(name="t", partitions=(TxnOffsetCommitRequestPartition(
            partition_index=0, committed_offset=offset, committed_leader_epoch=-1,
            committed_metadata="txn"),)),),
    )
    error: ErrorCode = handle(broker, 28, 3, request)["topics"][0]["partitions"][0]["error_code"]
    return error


def write_marker(broker: Broker, producer_id: int, epoch: int, commit: bool) -> ErrorCode:
    request = WriteTxnMarkersRequest(markers=(WritableTxnMarker(
        producer_id=producer_id, producer_epoch=epoch, transaction_result=commit,
        coordinator_epoch=0,
        topics=(WritableTxnMarkerTopic(name=OFFSETS_TOPIC, partition_indexes=(partition_for("g", 7),)),),
    ),))
    error: ErrorCode = handle(broker, 27, 1, request)["markers"][0]["topics"][0]["partitions"][0]["error_code"]
    return error


def offset_fetch(broker: Broker, require_stable: bool) -> tuple[int, ErrorCode]:
    request = OffsetFetchRequest(group_id="g", require_stable=require_stable,
                                 topics=(OffsetFetchRequestTopic(name="t", partition_indexes=(0,)),))
    partition = handle(broker, 9, 7, request)["topics"][0]["partitions"][0]
    return partition["committed_offset"], partition["error_code"]


def test_txn_offset_commits_are_transactional_batches_that_the_marker_completes(data_dir: Path) -> None:
    """TxnOffsetCommit writes the producer's transactional batch (its id and epoch, sequence 0)
    to the group's offsets partition, where it holds the last stable offset like any open
    transaction; each commit of the producer is written (no duplicate check) and an older epoch
    is INVALID_PRODUCER_EPOCH. The offsets show only after WriteTxnMarkers' COMMIT there, also
    when the broker reopened in between; an ABORT leaves the previous offset."""
    broker = open_broker(data_dir)
    create_topic(broker, "t", 1, 1, {}, NOW)
    assert broker.groups.ensure_storage(NOW) is None
    partition = broker.partition(OFFSETS_TOPIC, partition_for("g", 7))
    assert partition is not None
    start = partition.log.log_end_offset
    assert txn_offset_commit(broker, 4000, 2, 41) is ErrorCode.none
    assert txn_offset_commit(broker, 4000, 2, 42) is ErrorCode.none
    assert txn_offset_commit(broker, 4000, 1, 43) is ErrorCode.invalid_producer_epoch
    data = partition.log.read(start, 1 << 20).records
    headers, _ = scan_valid_prefix(data)
    assert [(h.producer_id, h.producer_epoch, h.base_sequence, h.is_transactional) for h in headers] == [
        (4000, 2, 0, True), (4000, 2, 0, True)]
    assert partition.last_stable_offset == start < partition.high_watermark
    assert offset_fetch(broker, require_stable=False) == (-1, ErrorCode.none)
    assert offset_fetch(broker, require_stable=True) == (-1, ErrorCode.unstable_offset_commit)

    broker.close()
    broker = open_broker(data_dir)
    partition = broker.partition(OFFSETS_TOPIC, partition_for("g", 7))
    assert partition is not None and partition.last_stable_offset == start
    assert offset_fetch(broker, require_stable=True) == (-1, ErrorCode.unstable_offset_commit)
    assert write_marker(broker, 4000, 2, commit=True) is ErrorCode.none
    assert partition.last_stable_offset == partition.high_watermark
    assert offset_fetch(broker, require_stable=True) == (42, ErrorCode.none)

    assert txn_offset_commit(broker, 4000, 2, 50) is ErrorCode.none
    assert write_marker(broker, 4000, 2, commit=False) is ErrorCode.none
    assert offset_fetch(broker, require_stable=True) == (42, ErrorCode.none)
    broker.close()
    broker = open_broker(data_dir)
    assert offset_fetch(broker, require_stable=True) == (42, ErrorCode.none)
    broker.close()
