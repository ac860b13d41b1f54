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

A marker written to a ``__consumer_offsets`` partition also ends the producer's transactional
offset commits there (TxnOffsetCommit): once it is committed the group coordinator makes them
visible (COMMIT) or drops them (ABORT), :meth:`GroupCoordinator.complete_transaction`. Kafka
does this in the acks=all callback of the marker's append, for the partitions it succeeded on
(KafkaApis.handleWriteTxnMarkersRequest calls GroupCoordinator.scheduleHandleTxnCompletion
there), so the offsets become visible only once every in-sync replica has the marker, and a
failed marker changes nothing until the coordinator's retry succeeds.

Version 2's ``transaction_version`` (the coordinator's transaction protocol, KIP-890 part 2) is
accepted and does not change the marker: the epoch bump of transaction version 2 is the
coordinator's business, and the reference broker has no coordinator yet.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import attrs
from kio.schema.errors import ErrorCode

from reference_broker.broker import Broker
from reference_broker.groups import OFFSETS_TOPIC
from reference_broker.handlers.context import Deferred, RequestContext
from reference_broker.producers import ProducerStateError
from reference_broker.records import ControlType, EndTransactionMarker, RecordError
from reference_broker.replication import Partition, ReplicationError

# Kafka appends markers with request.timeout.ms (default 30 s) as the acks=all timeout.
MARKER_TIMEOUT_MS = 30_000


@attrs.frozen(slots=True)
class _Appended:
    """A marker in a leader's log, waiting for the high watermark to pass it."""

    result: dict[str, Any]  # its partition's entry in the answer
    partition: Partition
    required_offset: int
    min_isr: int
    committed: Callable[[], object] | None  # what to do once it is committed


def _write_marker(
    broker: Broker, topic: str, index: int, marker: Any, now_ms: int,
    pending: list[_Appended],
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
    committed = None
    if topic == OFFSETS_TOPIC:
        committed = functools.partial(
            broker.groups.complete_transaction, index, int(marker.producer_id),
            control.control_type is ControlType.COMMIT, now_ms,
        )
    pending.append(_Appended(result, partition, appended.last_offset + 1, min_isr, committed))
    return result


def handle_write_txn_markers(
    broker: Broker, ctx: RequestContext, request: Any, now_ms: int
) -> Any:
    pending: list[_Appended] = []
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

    def done(appended: _Appended, error: ErrorCode) -> None:
        nonlocal outstanding
        appended.result["error_code"] = error
        if error is ErrorCode.none and appended.committed is not None:
            appended.committed()
        outstanding -= 1
        if outstanding == 0:
            deferred.resolve(body)

    def callback(appended: _Appended) -> Callable[[ErrorCode], None]:
        return lambda error: done(appended, error)

    for appended in pending:
        appended.partition.wait_for_commit(
            appended.required_offset, appended.min_isr, now_ms + MARKER_TIMEOUT_MS,
            callback(appended),
        )
    return body if deferred.resolved else deferred
