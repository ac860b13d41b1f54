"""OffsetForLeaderEpoch (API 23, v2-4): where a leader epoch ends in the leader's log.

Followers ask it after a leader change to find where their log diverges from the new leader's
(KIP-101, KIP-279); consumers ask it to detect that the log they were reading was truncated
(KIP-320: librdkafka validates its position this way after a leader change). The answer for a
requested epoch is Kafka's (LeaderEpochFileCache.endOffsetFor):

* the leader's current epoch ends at its log end offset;
* an older epoch is answered with the largest epoch the leader knows at or below it, ended by
  the start offset of the next epoch it knows;
* an epoch older than every epoch the leader still knows (its log start moved past them) is
  answered with the requested epoch and the start of the first known one;
* nothing known: leader epoch -1 and end offset -1 (UNDEFINED_EPOCH / UNDEFINED_EPOCH_OFFSET).

Only the leader answers (NOT_LEADER_OR_FOLLOWER elsewhere), after KIP-320 fencing of
``current_leader_epoch`` (FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH); an unknown partition is
UNKNOWN_TOPIC_OR_PARTITION.
"""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from reference_broker.broker import Broker
from reference_broker.handlers.context import RequestContext
from reference_broker.handlers.fetch import NO_EPOCH, leader_epoch_error
from reference_broker.log.leader_epochs import UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET
from reference_broker.protocol.api_keys import ApiKey

OFFSET_FOR_LEADER_EPOCH = ApiKey.OFFSET_FOR_LEADER_EPOCH


def _answer(broker: Broker, topic: str, part: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "partition": part.partition,
        "error_code": ErrorCode.none,
        "leader_epoch": UNDEFINED_EPOCH,
        "end_offset": UNDEFINED_EPOCH_OFFSET,
    }
    partition = broker.partition(topic, part.partition)
    if partition is None:
        known = broker.partition_record(topic, part.partition) is not None
        entry["error_code"] = ErrorCode.not_leader_or_follower if known else ErrorCode.unknown_topic_or_partition
        return entry
    error = leader_epoch_error(partition, getattr(part, "current_leader_epoch", NO_EPOCH))
    if error is not None:
        entry["error_code"] = error
        return entry
    entry["leader_epoch"], entry["end_offset"] = partition.end_offset_for_epoch(part.leader_epoch)
    return entry


def handle_offset_for_leader_epoch(
    broker: Broker, ctx: RequestContext, request: Any, now_ms: int
) -> Any:
    topics = [
        {"topic": topic.topic, "partitions": [_answer(broker, topic.topic, p) for p in topic.partitions]}
        for topic in request.topics
    ]
    return {"topics": topics}
