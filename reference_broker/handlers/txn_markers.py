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
coordinator's business.

:func:`write_markers` is the same work for this node's own transaction coordinator, which
writes the markers of partitions it leads itself (the driver,
:mod:`reference_broker.drivers.txn_sender`, sends the others to their leaders).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from kio.schema.errors import ErrorCode

from reference_broker.broker import Broker
from reference_broker.groups import OFFSETS_TOPIC
from reference_broker.handlers.context import Later, RequestContext
from reference_broker.producers import ProducerStateError
from reference_broker.records import ControlType, EndTransactionMarker, RecordError
from reference_broker.replication import ReplicationError
from reference_broker.transactions import MarkerEntry

# Kafka appends markers with request.timeout.ms (default 30 s) as the acks=all timeout.
MARKER_TIMEOUT_MS = 30_000

MarkerErrors = dict[tuple[int, tuple[str, int]], ErrorCode]  # (producer id, partition) -> error


def _append_marker(broker: Broker, entry: MarkerEntry, now_ms: int) -> ErrorCode | tuple[Any, int, int]:
    """Append one marker as the partition's leader: the partition, the offset after the marker
    and the min ISR to wait for, or the error."""
    topic, index = entry.topic_partition
    partition = broker.partition(topic, index)
    if partition is None:
        return ErrorCode.unknown_topic_or_partition
    control = EndTransactionMarker(
        ControlType.COMMIT if entry.commit else ControlType.ABORT, entry.coordinator_epoch
    )
    min_isr = broker.admin.min_insync_replicas(topic)
    try:
        partition.check_leader()
        partition.check_min_isr(min_isr)
        appended = partition.append_marker(entry.producer_id, entry.producer_epoch, control, now_ms)
    except ReplicationError as exc:
        return exc.error
    except (ProducerStateError, RecordError) as exc:
        return exc.error_code
    return partition, appended.last_offset + 1, min_isr


def write_markers(
    broker: Broker, entries: Sequence[MarkerEntry], now_ms: int,
    callback: Callable[[MarkerErrors], None],
) -> None:
    """Write ``entries`` to the partitions this node leads; ``callback`` gets every entry's
    error once each marker is replicated or failed (possibly before this returns)."""
    errors: MarkerErrors = {}
    waiting = 0

    def done(entry: MarkerEntry, error: ErrorCode) -> None:
        nonlocal waiting
        errors[(entry.producer_id, entry.topic_partition)] = error
        topic, index = entry.topic_partition
        if error is ErrorCode.none and topic == OFFSETS_TOPIC:
            broker.groups.complete_transaction(index, entry.producer_id, entry.commit, now_ms)
        waiting -= 1
        if waiting == 0:
            callback(errors)

    appended = []
    for entry in entries:
        outcome = _append_marker(broker, entry, now_ms)
        if isinstance(outcome, ErrorCode):
            errors[(entry.producer_id, entry.topic_partition)] = outcome
        else:
            appended.append((entry, outcome))
    if not appended:
        callback(errors)
        return
    waiting = len(appended)
    for entry, (partition, required_offset, min_isr) in appended:
        partition.wait_for_commit(required_offset, min_isr, now_ms + MARKER_TIMEOUT_MS,
                                  lambda error, entry=entry: done(entry, error))


def handle_write_txn_markers(
    broker: Broker, ctx: RequestContext, request: Any, now_ms: int
) -> Any:
    entries = [
        MarkerEntry((topic.name, int(index)), int(marker.producer_id), int(marker.producer_epoch),
                    int(marker.coordinator_epoch), bool(marker.transaction_result))
        for marker in request.markers for topic in marker.topics for index in topic.partition_indexes
    ]

    def render(errors: MarkerErrors) -> dict[str, Any]:
        return {"markers": [
            {"producer_id": marker.producer_id, "topics": [
                {"name": topic.name, "partitions": [
                    {"partition_index": index,
                     "error_code": errors[(int(marker.producer_id), (topic.name, int(index)))]}
                    for index in topic.partition_indexes
                ]}
                for topic in marker.topics
            ]}
            for marker in request.markers
        ]}

    later = Later(render)
    write_markers(broker, entries, now_ms, later.callback)
    return later.response()
