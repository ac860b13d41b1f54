"""Produce: validate record batches, append them, answer per partition.

Batches stay opaque (docs/broker.md, "Record batches stay opaque"): the CRC is checked, the base offset patched, the bytes
stored. Error mapping follows Kafka's LogValidator and ReplicaManager:

* truncated bytes or a CRC mismatch -> CORRUPT_MESSAGE;
* a batch breaking the v2 rules (magic, record count vs offset deltas, a keyless record on a
  compacted topic), or more than one batch for a partition -> INVALID_RECORD;
* a write to an internal topic (``__consumer_offsets``, ``__transaction_state``) ->
  INVALID_TOPIC_EXCEPTION;
* a batch larger than ``max.message.bytes`` -> MESSAGE_TOO_LARGE;
* a record set larger than a whole segment -> RECORD_LIST_TOO_LARGE;
* an unknown topic -> created when ``auto.create.topics.enable``, else UNKNOWN_TOPIC_OR_PARTITION;
* acks other than 0, 1, -1 -> INVALID_REQUIRED_ACKS;
* a partition this broker does not lead -> NOT_LEADER_OR_FOLLOWER (the client refreshes its
  metadata and retries at the leader);
* acks=-1 while the ISR is smaller than ``min.insync.replicas`` -> NOT_ENOUGH_REPLICAS, and
  nothing is appended;
* batches of idempotent producers (producer id >= 0) are checked against the partition's
  producer state (:mod:`reference_broker.producers.state`): a retry of a batch already stored
  succeeds with its original base offset and writes nothing; a sequence gap ->
  OUT_OF_ORDER_SEQUENCE_NUMBER; a stale epoch -> INVALID_PRODUCER_EPOCH; a continuing sequence
  from a producer the partition has forgotten -> UNKNOWN_PRODUCER_ID; a non-transactional
  batch from a producer whose transaction is ongoing -> INVALID_TXN_STATE; a control batch
  (only WriteTxnMarkers writes those), or a producer id without a sequence -> INVALID_RECORD;
* a transactional batch (KIP-98) from an idempotent producer is accepted under the same
  sequence rules and begins the producer's transaction on the partition, once the transaction
  coordinator has verified that the partition was added to the transaction (KIP-890 part 1,
  :mod:`reference_broker.handlers.produce_verification`): else TRANSACTION_ABORTABLE (Produce
  v11+; INVALID_TXN_STATE before), INVALID_PRODUCER_EPOCH for a fenced epoch, and
  NOT_ENOUGH_REPLICAS (retriable) while the coordinator cannot answer; transactional batches in
  a Produce without a transactional id -> TRANSACTIONAL_ID_AUTHORIZATION_FAILED.

A refused partition's answer carries base offset -1 and, as in Kafka's
``ReplicaManager.appendToLocalLog``, log start offset -1 for a refusal made before the
partition looks at the batch (unknown topic, not the leader, too large, corrupt, a request-level
rule) and the partition's log start offset for one its log or producer state makes (sequence,
epoch, NOT_ENOUGH_REPLICAS, an invalid record); a differential run against Apache Kafka 4.4.0
found the difference.

The leader stamps its leader epoch into every appended batch. What the answer means depends on
``acks`` (Kafka's producer documentation):

* acks=0: no response at all; if such a produce fails Kafka closes the connection so the
  producer notices and refreshes its metadata, and so do we;
* acks=1: answered once the leader has appended (its followers may not have the records yet: a
  leader that dies now loses them);
* acks=-1 (all): answered once the high watermark has passed the batch, i.e. every member of
  the ISR has it (a Deferred the partition resolves); NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR
  shrank below ``min.insync.replicas`` meanwhile (the records are in, the client may retry),
  NOT_LEADER_OR_FOLLOWER if leadership moved first (the records may be truncated),
  REQUEST_TIMED_OUT after the request's ``timeout``. An idempotent retry of a batch already in the
  log waits the same way, for the original batch to be committed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kio.schema.errors import ErrorCode

from reference_broker.broker import Broker
from reference_broker.handlers.context import CloseConnection, Deferred, RequestContext
from reference_broker.handlers.produce_verification import Guard, Refusals, verify_then
from reference_broker.log import RecordListTooLargeError, RecordTooLargeError
from reference_broker.producers import ProducerStateError
from reference_broker.records import RecordError, validate_batches
from reference_broker.replication import Partition, ReplicationError
from reference_broker.topic_admin import INTERNAL_TOPICS, BrokerError
from reference_broker.transactions.log_format import TopicPartition

log = logging.getLogger(__name__)

ACKS_ALL = -1


# Kafka answers these with log start offset -1; every other refusal by the partition carries
# the partition's log start offset (ReplicaManager.appendToLocalLog's catch clauses).
NO_LOG_START_ERRORS = frozenset({
    ErrorCode.unknown_topic_or_partition, ErrorCode.not_leader_or_follower, ErrorCode.message_too_large,
    ErrorCode.record_list_too_large, ErrorCode.corrupt_message, ErrorCode.kafka_storage_error,
})


def _partition_error(index: int, error: ErrorCode, message: str | None = None,
                     log_start_offset: int = -1) -> dict[str, Any]:
    return {
        "index": index,
        "error_code": error,
        "base_offset": -1,
        "log_append_time": None,
        "log_start_offset": log_start_offset,
        "error_message": message,
    }


def _refused(partition: Partition, index: int, error: ErrorCode, message: str | None) -> dict[str, Any]:
    """The answer for a batch the partition refused (see NO_LOG_START_ERRORS)."""
    start = -1 if error in NO_LOG_START_ERRORS else partition.log.log_start_offset
    return _partition_error(index, error, message, start)


class _Commit:
    """An acks=-1 append waiting for the high watermark to pass it."""

    __slots__ = ("partition", "result", "required_offset", "min_insync_replicas")

    def __init__(
        self, partition: Partition, result: dict[str, Any], required_offset: int, min_isr: int
    ) -> None:
        self.partition = partition
        self.result = result
        self.required_offset = required_offset
        self.min_insync_replicas = min_isr


def _produce_partition(
    broker: Broker, topic: str, index: int, records: bytes | None, acks: int, now_ms: int,
    commits: list[_Commit], guard: Guard | None = None,
) -> dict[str, Any]:
    if topic in INTERNAL_TOPICS:
        return _partition_error(
            index, ErrorCode.invalid_topic_exception, f"Cannot append to internal topic {topic}"
        )
    partition = broker.partition(topic, index)
    if partition is None:
        return _partition_error(index, ErrorCode.unknown_topic_or_partition)
    min_isr = broker.admin.min_insync_replicas(topic) if acks == ACKS_ALL else 1
    try:
        partition.check_leader()
        if acks == ACKS_ALL:
            partition.check_min_isr(min_isr)
    except ReplicationError as exc:
        return _refused(partition, index, exc.error, exc.message)
    if not records:
        return _partition_error(index, ErrorCode.invalid_record, "the record set is empty")
    buf = bytearray(records)
    try:
        headers = validate_batches(buf)
    except RecordError as exc:
        return _refused(partition, index, exc.error_code, str(exc))
    if len(headers) != 1:
        # Kafka's ProduceRequest.validateRecords: from v3 on, one batch per partition.
        return _partition_error(
            index, ErrorCode.invalid_record,
            f"Produce requests with version 3+ carry exactly one record batch per partition, "
            f"not {len(headers)}",
        )
    if guard is not None:
        refused = guard(partition)
        if refused is not None:
            return _refused(partition, index, refused, "the transaction ended while it was being verified")
    try:
        result = partition.append_as_leader(buf, headers, now_ms)
    except RecordListTooLargeError as exc:
        return _refused(partition, index, ErrorCode.record_list_too_large, str(exc))
    except RecordTooLargeError as exc:
        return _refused(partition, index, ErrorCode.message_too_large, str(exc))
    except (RecordError, ProducerStateError) as exc:
        return _refused(partition, index, exc.error_code, str(exc))
    except ReplicationError as exc:
        return _refused(partition, index, exc.error, exc.message)
    response = {
        "index": index,
        "error_code": ErrorCode.none,
        "base_offset": result.first_offset,
        "log_append_time": None if result.log_append_time_ms < 0 else result.log_append_time_ms,
        "log_start_offset": result.log_start_offset,
    }
    if acks == ACKS_ALL:
        # Also for an idempotent duplicate: its first attempt may not be committed yet.
        commits.append(_Commit(partition, response, result.last_offset + 1, min_isr))
    return response


def _ensure_topic(broker: Broker, topic: str, now_ms: int) -> None:
    if broker.topics.get(topic) is None and broker.admin.auto_create_enabled:
        try:
            broker.admin.auto_create_topic(topic, now_ms)
        except BrokerError as exc:
            log.info("not auto-creating %r on produce: %s", topic, exc.message)


def handle_produce(broker: Broker, ctx: RequestContext, request: Any, now_ms: int) -> Any:
    for topic_data in request.topic_data:
        _ensure_topic(broker, topic_data.name, now_ms)
    return verify_then(broker, ctx, request, now_ms, lambda refusals, guards: _produce_all(
        broker, request, refusals, guards, now_ms))


def _produce_all(broker: Broker, request: Any, refusals: Refusals, guards: dict[TopicPartition, Guard],
                 now_ms: int) -> Any:
    acks = request.acks
    responses = []
    failed = False
    commits: list[_Commit] = []
    for topic_data in request.topic_data:
        partition_responses = []
        for part in topic_data.partition_data:
            tp = (topic_data.name, int(part.index))
            if acks not in (0, 1, -1):
                result = _partition_error(part.index, ErrorCode.invalid_required_acks)
            elif tp in refusals:
                result = _partition_error(part.index, refusals[tp])
            else:
                result = _produce_partition(
                    broker, topic_data.name, part.index, part.records, acks, now_ms, commits, guards.get(tp)
                )
            failed = failed or result["error_code"] is not ErrorCode.none
            partition_responses.append(result)
        responses.append({"name": topic_data.name, "partition_responses": partition_responses})
    if acks == 0:
        if failed:
            raise CloseConnection("acks=0 produce failed")
        return None
    body = {"responses": responses}
    if not commits:
        return body
    return _await_commits(body, commits, now_ms + _timeout_ms(request))


def _timeout_ms(request: Any) -> int:
    timeout = request.timeout
    return int(timeout.total_seconds() * 1000) if hasattr(timeout, "total_seconds") else int(timeout)


def _await_commits(body: dict[str, Any], commits: list[_Commit], deadline_ms: int) -> Any:
    """The response once every acks=-1 append is committed (or has failed): at once if they
    all are already, else a Deferred the partitions resolve (Kafka's DelayedProduce)."""
    deferred = Deferred()
    outstanding = len(commits)

    def done(commit: _Commit, error: ErrorCode) -> None:
        nonlocal outstanding
        commit.result["error_code"] = error
        outstanding -= 1
        if outstanding == 0:
            deferred.resolve(body)

    def callback(commit: _Commit) -> Callable[[ErrorCode], None]:
        return lambda error: done(commit, error)

    for commit in commits:
        commit.partition.wait_for_commit(
            commit.required_offset, commit.min_insync_replicas, deadline_ms, callback(commit)
        )
    if deferred.resolved:
        return body
    return deferred
