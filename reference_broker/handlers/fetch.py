"""Fetch: consumers read stored batches up to the high watermark; followers up to the log end.

Rules from the Kafka protocol guide, KIP-74, KIP-320 and KIP-595:

* topics are named in v4-v12 and addressed by topic id from v13 (an unknown id is
  UNKNOWN_TOPIC_ID);
* a request with ``replica_id`` >= 0 (v4-v14) or ``replica_state.replica_id`` >= 0 (v15+) comes
  from a follower (:meth:`Partition.read_for_follower`): it reads up to the log end offset, its
  fetch offset counts as its log end offset (moving the high watermark and the ISR), and when its
  ``last_fetched_epoch`` does not fit the leader's epochs the answer is the *diverging epoch*
  (v12+) instead of records;
* consumers never see offsets at or beyond the high watermark (or the last stable offset under
  ``read_committed``, KIP-98); every answer carries the last stable offset, and a
  ``read_committed`` one also the aborted transactions (producer id, first offset) overlapping
  the returned batches, from the segments' transaction indexes (Kafka's
  UnifiedLog.collectAbortedTransactions), so the consumer can drop their records; a
  ``read_uncommitted`` answer has none (null), as Kafka's;
* only the leader serves fetches: elsewhere NOT_LEADER_OR_FOLLOWER; a ``current_leader_epoch``
  older / newer than the partition's is FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH (checked
  first, as Kafka does);
* ``max_bytes`` bounds the response and ``partition_max_bytes`` each partition, but the first
  batch of the first partition with data is returned whole even when larger, so a consumer can
  always make progress;
* a fetch offset outside [log start offset, log end offset] is OFFSET_OUT_OF_RANGE;
* a consumer's partition that ends in an error reports high watermark, last stable offset and
  log start offset -1, as Kafka's (``ReplicaManager.readFromLocalLog`` builds the error's read
  result with unknown offsets; measured on Apache Kafka 4.4.0 by a differential run). A
  follower's OFFSET_OUT_OF_RANGE keeps the leader's log start offset, from which this broker's
  followers start over (Kafka's followers ask ListOffsets instead);
* the response is held until ``min_bytes`` are available or ``max_wait`` has passed; the driver
  re-runs :func:`handle_fetch` when data arrives or a high watermark moves, and once more at the
  deadline.

Incremental fetch sessions (KIP-227) are declined: every response carries session id 0, which
tells the client to keep sending full fetch requests.
"""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from reference_broker.broker import Broker
from reference_broker.handlers.context import RequestContext
from reference_broker.log import OffsetOutOfRangeError
from reference_broker.records import HEADER_SIZE, parse_header
from reference_broker.replication import Partition, ReplicationError

READ_COMMITTED = 1
TOPIC_IDS_FROM_VERSION = 13
REPLICA_STATE_FROM_VERSION = 15
DIVERGING_EPOCH_FROM_VERSION = 12
NO_EPOCH = -1


def leader_epoch_error(
    partition: Partition, current_leader_epoch: int, require_leader: bool = True
) -> ErrorCode | None:
    """Whether this broker may serve a request for ``partition``: KIP-320 fencing (the
    request's view of the leader epoch must match ours), then leadership."""
    try:
        partition.check_leader(current_leader_epoch, require_leader)
    except ReplicationError as exc:
        return exc.error
    return None


def fetching_replica(request: Any, version: int) -> int:
    """The broker id of a follower's fetch, or -1 for a consumer."""
    if version >= REPLICA_STATE_FROM_VERSION:
        return int(request.replica_state.replica_id)
    return int(getattr(request, "replica_id", -1))


def _partition_result(partition: Partition | None, index: int, error: ErrorCode) -> dict[str, Any]:
    """One partition of the answer, with the partition's positions (a follower's view)."""
    return {
        "partition_index": index,
        "error_code": error,
        "high_watermark": partition.high_watermark if partition else -1,
        "last_stable_offset": partition.last_stable_offset if partition else -1,
        "log_start_offset": partition.log.log_start_offset if partition else -1,
        "aborted_transactions": None,
        "records": b"",
    }


class FetchOutcome:
    """The response body plus what the driver needs to decide whether to answer now."""

    __slots__ = ("response", "bytes", "error")

    def __init__(self, response: dict[str, Any], size: int, error: bool) -> None:
        self.response = response
        self.bytes = size
        self.error = error


def handle_fetch(broker: Broker, ctx: RequestContext, request: Any, now_ms: int) -> FetchOutcome:
    by_id = ctx.api_version >= TOPIC_IDS_FROM_VERSION
    # Fetch sessions (KIP-227) exist from v7 and leader epochs in partitions from v9: older
    # versions' dataclasses lack the fields, which then mean "no session" and "no epoch".
    if getattr(request, "session_id", 0) != 0 and getattr(request, "session_epoch", 0) > 0:
        return FetchOutcome(
            {"error_code": ErrorCode.fetch_session_id_not_found, "session_id": 0, "responses": []}, 0, True
        )
    replica_id = fetching_replica(request, ctx.api_version)
    remaining = request.max_bytes
    total = 0
    any_error = False
    min_one = True
    topics_out = []
    for topic in request.topics:
        if by_id:
            record = broker.topics.by_id(topic.topic_id)
            unknown = ErrorCode.unknown_topic_id
        else:
            record = broker.topics.get(topic.topic)
            unknown = ErrorCode.unknown_topic_or_partition
        partitions_out = []
        for part in topic.partitions:
            partition = broker.partition(record.name, part.partition) if record else None
            if partition is None:
                partitions_out.append(_partition_result(None, part.partition, unknown))
                any_error = True
                continue
            current_epoch = getattr(part, "current_leader_epoch", NO_EPOCH)
            error = leader_epoch_error(partition, current_epoch)
            if error is not None:
                shown = partition if replica_id >= 0 else None  # a consumer is told no positions
                partitions_out.append(_partition_result(shown, part.partition, error))
                any_error = True
                continue
            limit = max(0, min(part.partition_max_bytes, remaining))
            if replica_id >= 0:
                result, diverged = _follower_read(
                    partition, part, replica_id, current_epoch, limit, min_one, ctx.api_version,
                    now_ms,
                )
                any_error = any_error or diverged or result["error_code"] is not ErrorCode.none
            else:
                read_committed = request.isolation_level == READ_COMMITTED
                upper = (
                    partition.last_stable_offset if read_committed else partition.high_watermark
                )
                result = _partition_result(partition, part.partition, ErrorCode.none)
                try:
                    records = partition.log.read(
                        part.fetch_offset, limit, upper_bound=upper, min_one_batch=min_one
                    ).records
                    result["records"] = records
                    if read_committed:
                        result["aborted_transactions"] = _aborted_transactions(
                            partition, part.fetch_offset, records
                        )
                except OffsetOutOfRangeError:
                    result = _partition_result(None, part.partition, ErrorCode.offset_out_of_range)
                    any_error = True
            data = result["records"]
            if data:
                min_one = False
                remaining -= len(data)
                total += len(data)
            partitions_out.append(result)
        key = "topic_id" if by_id else "topic"
        topics_out.append({key: topic.topic_id if by_id else topic.topic, "partitions": partitions_out})
    return FetchOutcome({"error_code": ErrorCode.none, "session_id": 0, "responses": topics_out}, total, any_error)


def _aborted_transactions(
    partition: Partition, fetch_offset: int, records: bytes
) -> list[dict[str, int]]:
    """The aborted transactions overlapping the fetched batches: from the fetch offset to just
    past the last batch returned (Kafka's UnifiedLog.addAbortedTransactions); an empty list,
    not null, when nothing was returned, as Kafka answers read_committed fetches."""
    position, upper = 0, fetch_offset
    while position + HEADER_SIZE <= len(records):
        header = parse_header(records, position)
        upper = header.next_offset
        position += header.size
    if upper <= fetch_offset:
        return []
    return [
        {"producer_id": txn.producer_id, "first_offset": txn.first_offset}
        for txn in partition.log.collect_aborted_transactions(fetch_offset, upper)
    ]


def _follower_read(
    partition: Partition, part: Any, replica_id: int, current_epoch: int, limit: int,
    min_one: bool, version: int, now_ms: int,
) -> tuple[dict[str, Any], bool]:
    """One partition of a follower's fetch; also returns whether the logs diverged (answered
    at once, like an error)."""
    last_fetched_epoch = getattr(part, "last_fetched_epoch", NO_EPOCH)
    if version < DIVERGING_EPOCH_FROM_VERSION:
        last_fetched_epoch = NO_EPOCH  # such followers truncate with OffsetForLeaderEpoch
    try:
        read = partition.read_for_follower(
            replica_id, part.fetch_offset, last_fetched_epoch, current_epoch, limit, now_ms,
            min_one_batch=min_one,
        )
    except ReplicationError as exc:
        return _partition_result(partition, part.partition, exc.error), False
    except OffsetOutOfRangeError:
        return _partition_result(partition, part.partition, ErrorCode.offset_out_of_range), False
    result = _partition_result(partition, part.partition, ErrorCode.none)
    result["high_watermark"] = read.high_watermark
    result["last_stable_offset"] = read.high_watermark
    result["log_start_offset"] = read.log_start_offset
    result["records"] = read.records
    if read.diverging_epoch is not None:
        epoch, end_offset = read.diverging_epoch
        result["diverging_epoch"] = {"epoch": epoch, "end_offset": end_offset}
        return result, True
    return result, False
