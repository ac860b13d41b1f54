"""Fetch: serve stored batches up to the high watermark, long-polling when there is too little.

Rules from the Kafka protocol guide and KIP-74:

* topics are named in v4-v12 and addressed by topic id from v13 (an unknown id is
  UNKNOWN_TOPIC_ID);
* ``max_bytes`` bounds the response and ``partition_max_bytes`` each partition, but the first
  batch of the first partition with data is returned whole even when larger, so a consumer can
  always make progress;
* consumers never see offsets at or beyond the high watermark (or the last stable offset under
  ``read_committed``);
* a fetch offset outside [log start offset, log end offset] is OFFSET_OUT_OF_RANGE;
* the response is held until ``min_bytes`` are available or ``max_wait`` has passed; the driver
  re-runs :func:`handle_fetch` when data arrives and once more with ``final=True`` at the deadline.

Incremental fetch sessions (KIP-227) are declined: every response carries session id 0, which
tells the client to keep sending full fetch requests.
"""

from __future__ import annotations

from typing import Any

from reference_broker.broker import Broker
from reference_broker.replication import Partition
from reference_broker.handlers.context import RequestContext
from reference_broker.log import OffsetOutOfRangeError

READ_COMMITTED = 1
TOPIC_IDS_FROM_VERSION = 13
NO_EPOCH = -1


def leader_epoch_error(partition: Partition, current_leader_epoch: int) -> str | None:
    """KIP-320 fencing: a client's view of the leader epoch must match the leader's."""
    if current_leader_epoch == NO_EPOCH or current_leader_epoch == partition.leader_epoch:
        return None
    if current_leader_epoch > partition.leader_epoch:
        return "unknown_leader_epoch"
    return "fenced_leader_epoch"


def _partition_result(partition: Partition | None, index: int, error: str) -> dict[str, Any]:
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
            {"error_code": "fetch_session_id_not_found", "session_id": 0, "responses": []}, 0, True
        )
    remaining = request.max_bytes
    total = 0
    any_error = False
    min_one = True
    topics_out = []
    for topic in request.topics:
        if by_id:
            record = broker.topics.by_id(topic.topic_id)
            unknown = "unknown_topic_id"
        else:
            record = broker.topics.get(topic.topic)
            unknown = "unknown_topic_or_partition"
        partitions_out = []
        for part in topic.partitions:
            partition = broker.partition(record.name, part.partition) if record else None
            if partition is None:
                partitions_out.append(_partition_result(None, part.partition, unknown))
                any_error = True
                continue
            error = leader_epoch_error(partition, getattr(part, "current_leader_epoch", NO_EPOCH))
            if error is not None:
                partitions_out.append(_partition_result(partition, part.partition, error))
                any_error = True
                continue
            upper = (
                partition.last_stable_offset
                if request.isolation_level == READ_COMMITTED
                else partition.high_watermark
            )
            result = _partition_result(partition, part.partition, "none")
            try:
                data = partition.log.read(
                    part.fetch_offset,
                    max(0, min(part.partition_max_bytes, remaining)),
                    upper_bound=upper,
                    min_one_batch=min_one,
                ).records
            except OffsetOutOfRangeError:
                result["error_code"] = "offset_out_of_range"
                any_error = True
            else:
                if data:
                    min_one = False
                    remaining -= len(data)
                    total += len(data)
                    result["records"] = data
            partitions_out.append(result)
        key = "topic_id" if by_id else "topic"
        topics_out.append({key: topic.topic_id if by_id else topic.topic, "partitions": partitions_out})
    return FetchOutcome({"error_code": "none", "session_id": 0, "responses": topics_out}, total, any_error)
