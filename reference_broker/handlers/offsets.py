"""ListOffsets and DeleteRecords.

ListOffsets special timestamps (protocol guide, KIP-734, KIP-1005): -1 latest (the high
watermark, or the last stable offset under read_committed), -2 earliest (log start offset),
-3 the record with the largest timestamp, -4 earliest local (= earliest: no tiered storage),
-5 latest tiered and -6 earliest pending upload (no tiered storage: no such offset). A
non-negative timestamp finds the first record whose timestamp is at or after it, in the first
segment whose largest timestamp reaches it. As in Kafka, -3 and the choice of segment count
the records DeleteRecords left below the log start in their segment, so MAX_TIMESTAMP may
answer an offset below the log start (specs/offsets.py has the measured rules).

Both are answered only by the partition's leader (NOT_LEADER_OR_FOLLOWER elsewhere, as Kafka's
ReplicaManager does). DeleteRecords moves the log start offset; -1 means "up to the high watermark", and an offset past
the high watermark is OFFSET_OUT_OF_RANGE. A topic whose cleanup.policy lacks "delete" refuses
with POLICY_VIOLATION, as Kafka does.
"""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from reference_broker.broker import Broker
from reference_broker.handlers.context import RequestContext
from reference_broker.handlers.fetch import READ_COMMITTED, leader_epoch_error
from reference_broker.records import RecordError
from reference_broker.replication import Partition

LATEST, EARLIEST, MAX_TIMESTAMP, EARLIEST_LOCAL, LATEST_TIERED, EARLIEST_PENDING_UPLOAD = (
    -1, -2, -3, -4, -5, -6,
)
NOT_FOUND = (-1, -1)  # (timestamp, offset) when nothing matches


def _lookup(partition: Partition, timestamp: int, isolation_level: int) -> tuple[int, int]:
    """(timestamp, offset) answered for one partition."""
    upper = (
        partition.last_stable_offset
        if isolation_level == READ_COMMITTED
        else partition.high_watermark
    )
    if timestamp == LATEST:
        return -1, upper
    if timestamp in (EARLIEST, EARLIEST_LOCAL):
        return -1, partition.log.log_start_offset
    if timestamp == MAX_TIMESTAMP:
        found = partition.log.max_timestamp()
    elif timestamp >= 0:
        found = partition.log.offset_for_timestamp(timestamp)
    else:
        return NOT_FOUND
    # Kafka (ReplicaManager.fetchOffset) answers a found record only below what a consumer of
    # this isolation level may read; nothing compares it with the log start offset.
    if found is None or found[0] >= upper:
        return NOT_FOUND
    offset, ts = found
    return ts, offset


def handle_list_offsets(broker: Broker, ctx: RequestContext, request: Any, now_ms: int) -> Any:
    topics = []
    isolation = getattr(request, "isolation_level", 0)
    for topic in request.topics:
        partitions = []
        for part in topic.partitions:
            entry: dict[str, Any] = {"partition_index": part.partition_index, "error_code": ErrorCode.none,
                                     "timestamp": -1, "offset": -1, "leader_epoch": -1}
            partition, not_led = broker.leader_partition(topic.name, part.partition_index)
            if partition is None:
                entry["error_code"] = not_led
            else:
                error = leader_epoch_error(partition, getattr(part, "current_leader_epoch", -1))
                if error is not None:
                    entry["error_code"] = error
                else:
                    try:
                        entry["timestamp"], entry["offset"] = _lookup(partition, part.timestamp, isolation)
                    except RecordError:
                        # A timestamp lookup decodes the records of a stored batch. Produce keeps
                        # compressed batches opaque, so one whose body does not decompress is
                        # only found here: answer for this partition instead of failing them all.
                        entry["error_code"] = ErrorCode.corrupt_message
                    else:
                        entry["leader_epoch"] = partition.leader_epoch
            partitions.append(entry)
        topics.append({"name": topic.name, "partitions": partitions})
    return {"topics": topics}


def handle_delete_records(broker: Broker, ctx: RequestContext, request: Any, now_ms: int) -> Any:
    topics = []
    for topic in request.topics:
        partitions = []
        for part in topic.partitions:
            entry: dict[str, Any] = {"partition_index": part.partition_index, "low_watermark": -1}
            partition, not_led = broker.leader_partition(topic.name, part.partition_index)
            target = part.offset
            if partition is None:
                entry["error_code"] = not_led
            elif not partition.log.config.delete:
                entry["error_code"] = ErrorCode.policy_violation
            else:
                if target == -1:
                    target = partition.high_watermark
                if target < 0 or target > partition.high_watermark:
                    entry["error_code"] = ErrorCode.offset_out_of_range
                else:
                    entry["low_watermark"] = partition.log.delete_records_before(target)
                    entry["error_code"] = ErrorCode.none
            partitions.append(entry)
        topics.append({"name": topic.name, "partitions": partitions})
    return {"topics": topics}
