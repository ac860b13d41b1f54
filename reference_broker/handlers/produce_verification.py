"""Transaction verification before a Produce (KIP-890 part 1), and the request-level rule for
transactional records.

* A Produce carrying transactional batches must name a transactional id (KafkaApis answers
  TRANSACTIONAL_ID_AUTHORIZATION_FAILED for every partition otherwise).
* Before a producer's first transactional batch on a partition (no transaction of its epoch
  ongoing there), the leader asks the transaction coordinator whether the partition is in that
  producer's ongoing transaction (:meth:`Broker.verify_transaction`); a partition that is not,
  or a stale epoch, is refused with :func:`~reference_broker.transactions.verification.produce_error`.
* A Produce v12 comes from a client of transaction version 2 (KIP-890 part 2), which sends no
  AddPartitionsToTxn: instead of the question, the leader has the coordinator add the
  partition to the transaction (Kafka's AddPartitionsToTxnManager with the addPartition
  operation); its answer is turned into the same errors.
* A guard covers the time the question takes (Kafka's VerificationGuard): if the producer's
  state on the partition changed meanwhile and no transaction of its epoch is ongoing there (a
  marker ended the transaction), the batch is refused rather than starting a transaction the
  coordinator has already closed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kio.schema.errors import ErrorCode

from reference_broker.broker import Broker
from reference_broker.handlers.context import CloseConnection, Later, RequestContext
from reference_broker.producers.state import ProducerEntry
from reference_broker.records import TRANSACTIONAL_ATTRIBUTE, BatchHeader, RecordError, parse_header
from reference_broker.replication import Partition, Role
from reference_broker.transactions.log_format import TopicPartition
from reference_broker.transactions.verification import produce_error

# The low byte of a v2 batch's int16 attributes (base offset 8, length 4, partition leader epoch
# 4, magic 1, crc 4: the attributes start at byte 21).
ATTRIBUTES_LOW_BYTE = 22
ADD_PARTITION_FROM_PRODUCE_VERSION = 12  # transaction version 2 (KIP-890 part 2)
# A refusal per partition, and the guard each verified partition's append checks.
Refusals = dict[TopicPartition, ErrorCode]
Guard = Callable[[Partition], ErrorCode | None]
Produce = Callable[[Refusals, dict[TopicPartition, Guard]], Any]


def _transactional_batches(request: Any) -> list[tuple[TopicPartition, BatchHeader]]:
    """The transactional data batches of the request. On every Produce: the attributes byte is
    looked at first, and only a transactional batch's header is parsed."""
    found = []
    for topic_data in request.topic_data:
        for part in topic_data.partition_data:
            records = part.records or b""
            if len(records) <= ATTRIBUTES_LOW_BYTE or not records[ATTRIBUTES_LOW_BYTE] & TRANSACTIONAL_ATTRIBUTE:
                continue
            try:
                header = parse_header(records)
            except RecordError:
                continue  # the append path reports it
            if not header.is_control:
                found.append(((topic_data.name, int(part.index)), header))
    return found


def _needs_verification(partition: Partition | None, header: BatchHeader) -> bool:
    """Whether the batch would start a transaction here: this node leads the partition (else
    the append path refuses it) and no transaction of the batch's epoch is ongoing."""
    if partition is None or partition.role is not Role.LEADER:
        return False
    entry = partition.log.producer_state.entry(header.producer_id)
    return not (entry is not None and entry.epoch == header.producer_epoch
                and entry.current_txn_first_offset is not None)


def _guard(header: BatchHeader, seen: ProducerEntry | None, version: int) -> Guard:
    def check(partition: Partition) -> ErrorCode | None:
        now = partition.log.producer_state.entry(header.producer_id)
        if now is seen or (now is not None and now.epoch == header.producer_epoch
                           and now.current_txn_first_offset is not None):
            return None
        return produce_error(ErrorCode.transaction_abortable, version)
    return check


def verify_then(broker: Broker, ctx: RequestContext, request: Any, now_ms: int, produce: Produce) -> Any:
    """Run ``produce`` with the partitions verification refused and the guards of those it
    passed: at once when nothing needs asking (or this node coordinates), else a Deferred."""
    batches = _transactional_batches(request)
    if batches and request.transactional_id is None:
        return produce({tp: ErrorCode.transactional_id_authorization_failed for tp in _all(request)}, {})
    pending: dict[TopicPartition, tuple[BatchHeader, ProducerEntry | None]] = {}
    for tp, header in batches:
        partition = broker.partition(*tp)
        if _needs_verification(partition, header):
            assert partition is not None
            pending[tp] = (header, partition.log.producer_state.entry(header.producer_id))
    if not pending:
        return produce({}, {})
    refusals: Refusals = {}
    guards = {tp: _guard(header, seen, ctx.api_version) for tp, (header, seen) in pending.items()}
    groups: dict[tuple[int, int], list[TopicPartition]] = {}
    for tp, (header, _) in pending.items():
        groups.setdefault((header.producer_id, header.producer_epoch), []).append(tp)
    later = Later(lambda result: result)
    outstanding = len(groups)

    def answered(answers: dict[TopicPartition, ErrorCode]) -> None:
        nonlocal outstanding
        for tp, answer in answers.items():
            error = produce_error(answer, ctx.api_version)
            if error is not ErrorCode.none:
                refusals[tp] = error
        outstanding -= 1
        if outstanding == 0:
            try:
                later.resolve(produce(refusals, guards))
            except CloseConnection:
                if asking:
                    raise  # answered at once: the driver closes the connection
                later.resolve(None)  # acks=0, answered later: there is nothing to send
            if not asking:
                # Appended after the driver's own wake-up for this Produce: wake parked fetches.
                for tp in pending:
                    partition = broker.partition(*tp)
                    if partition is not None:
                        broker.appended_internally(partition)

    add = ctx.api_version >= ADD_PARTITION_FROM_PRODUCE_VERSION
    asking = True
    for (producer_id, epoch), tps in groups.items():
        broker.verify_transaction(request.transactional_id, producer_id, epoch, tps, add, now_ms, answered)
    asking = False
    return later.response()


def _all(request: Any) -> list[TopicPartition]:
    return [(t.name, int(p.index)) for t in request.topic_data for p in t.partition_data]
