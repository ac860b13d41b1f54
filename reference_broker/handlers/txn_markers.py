"""WriteTxnMarkers: the transaction coordinator has partition leaders end a transaction (KIP-98).

Kafka's KafkaApis.handleWriteTxnMarkersRequest: for every marker (producer id, producer epoch,
coordinator epoch, COMMIT or ABORT) and every partition it names, the partition's leader appends
a control batch to its log (:meth:`Partition.append_marker`), which completes the producer's
ongoing transaction there; an ABORT also enters the segment's transaction index. The append is
an acks=all one: the answer waits until the high watermark passes the marker (so the last
stable offset has moved when the coordinator hears back), up to the request timeout. Per
partition:

* a topic or partition this broker does not know -> UNKNOWN_TOPIC_OR_PARTITION;
* a partition this broker does not lead -> NOT_LEADER_OR_FOLLOWER (the coordinator retries at
  the new leader);
* an ISR smaller than ``min.insync.replicas`` -> NOT_ENOUGH_REPLICAS, nothing appended;
* a producer epoch older than the partition's for that producer -> INVALID_PRODUCER_EPOCH; a
  coordinator epoch older than the producer's last marker's -> TRANSACTION_COORDINATOR_FENCED;
* after the append: NOT_ENOUGH_REPLICAS_AFTER_APPEND, NOT_LEADER_OR_FOLLOWER or
  REQUEST_TIMED_OUT, as for an acks=all Produce.

Version 2's ``transaction_version`` (the coordinator's transaction protocol, KIP-890 part 2) is
accepted and does not change the marker: the epoch bump of transaction version 2 is the
coordinator's business, and the reference broker has no coordinator yet.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kio.schema.errors import ErrorCode

from reference_broker.broker import Broker
from reference_broker.handlers.context import Deferred, RequestContext
from reference_broker.producers import ProducerStateError
from reference_broker.records import ControlType, EndTransactionMarker, RecordError
from reference_broker.replication import Partition, ReplicationError

# Kafka appends markers with request.timeout.ms (default 30 s) as the acks=all timeout.
MARKER_TIMEOUT_MS = 30_000


def _write_marker(
    broker: Broker, topic: str, index: int, marker: Any, now_ms: int,
    pending: list[tuple[dict[str, Any], Partition, int, int]],
) -> dict[str, Any]:
    result: dict[str, Any] = {"partition_index": index, "error_code": ErrorCode.none}
    partition = broker.partition(topic, index)
    if partition is None:
        result["error_code"] = ErrorCode.unknown_topic_or_partition
        return result
    control = EndTransactionMarker(
        ControlType.COMMIT if marker.transaction_result else ControlType.ABORT,
        int(marker.coordinator_epoch),
    )
    min_isr = broker.admin.min_insync_replicas(topic)
    try:
        partition.check_leader()
        partition.check_min_isr(min_isr)
        appended = partition.append_marker(
            int(marker.producer_id), int(marker.producer_epoch), control, now_ms
        )
    except ReplicationError as exc:
        result["error_code"] = exc.error
        return result
    except (ProducerStateError, RecordError) as exc:
        result["error_code"] = exc.error_code
        return result
    pending.append((result, partition, appended.last_offset + 1, min_isr))
    return result


def handle_write_txn_markers(
    broker: Broker, ctx: RequestContext, request: Any, now_ms: int
) -> Any:
    pending: list[tuple[dict[str, Any], Partition, int, int]] = []
    markers = []
    for marker in request.markers:
        topics = []
        for topic in marker.topics:
            partitions = [
                _write_marker(broker, topic.name, index, marker, now_ms, pending)
                for index in topic.partition_indexes
            ]
            topics.append({"name": topic.name, "partitions": partitions})
        markers.append({"producer_id": marker.producer_id, "topics": topics})
    body = {"markers": markers}
    if not pending:
        return body
    deferred = Deferred()
    outstanding = len(pending)

    def done(result: dict[str, Any], error: ErrorCode) -> None:
        nonlocal outstanding
        result["error_code"] = error
        outstanding -= 1
        if outstanding == 0:
            deferred.resolve(body)

    def callback(result: dict[str, Any]) -> Callable[[ErrorCode], None]:
        return lambda error: done(result, error)

    for result, partition, required_offset, min_isr in pending:
        partition.wait_for_commit(
            required_offset, min_isr, now_ms + MARKER_TIMEOUT_MS, callback(result)
        )
    return body if deferred.resolved else deferred
