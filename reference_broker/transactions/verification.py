"""A partition leader's question to a transaction coordinator (KIP-890 part 1): is this
partition in the ongoing transaction of this producer id and epoch? Or, for a producer of
transaction version 2 (KIP-890 part 2), its request: add this partition to that transaction.

Kafka 3.6+ asks it before appending a producer's first transactional batch to a partition, so
that a batch the producer sent for a transaction that has meanwhile ended (a late retry), or a
zombie's batch, cannot start a transaction no coordinator knows about: a *hanging* transaction
holding the last stable offset back forever. The broker asks its own coordinator directly and
others through the driver (AddPartitionsToTxn v4 with ``verify_only``); the Produce handler
turns the answers into its errors (:mod:`reference_broker.handlers.produce`).

A client of transaction version 2 sends no AddPartitionsToTxn: its Produce v12 (and its
TxnOffsetCommit v5) leaves the adding to the partition leader (the group coordinator), which
asks the coordinator with AddPartitionsToTxn v5 and ``verify_only`` false (Kafka's
AddPartitionsToTxnManager with the addPartition operation) where part 1 only verified. The
answers become the same errors.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
from kio.schema.errors import ErrorCode

from reference_broker.transactions.log_format import TopicPartition

# Each partition's answer: NONE when it is in the transaction.
VerificationCallback = Callable[[dict[TopicPartition, ErrorCode]], None]


@attrs.frozen(slots=True)
class Verification:
    """One question for the coordinator on broker ``coordinator``; with ``add``, the request
    to add the partitions (transaction version 2) rather than the question whether they are in."""

    coordinator: int
    transactional_id: str
    producer_id: int
    producer_epoch: int
    partitions: tuple[TopicPartition, ...]
    add: bool
    callback: VerificationCallback = attrs.field(eq=False, repr=False)


# What a verification answer becomes for the producer (Kafka's AddPartitionsToTxnManager and
# ReplicaManager): a fenced epoch is INVALID_PRODUCER_EPOCH; a coordinator that cannot answer now
# is NOT_ENOUGH_REPLICAS, a retriable error every producer retries; "not in the transaction" is
# TRANSACTION_ABORTABLE for Produce v11+ (KIP-890) and INVALID_TXN_STATE before.
PRODUCE_ERRORS = {
    ErrorCode.producer_fenced: ErrorCode.invalid_producer_epoch,
    ErrorCode.invalid_producer_epoch: ErrorCode.invalid_producer_epoch,
    ErrorCode.not_coordinator: ErrorCode.not_enough_replicas,
    ErrorCode.coordinator_not_available: ErrorCode.not_enough_replicas,
    ErrorCode.coordinator_load_in_progress: ErrorCode.not_enough_replicas,
    ErrorCode.concurrent_transactions: ErrorCode.not_enough_replicas,
    ErrorCode.request_timed_out: ErrorCode.not_enough_replicas,
}
TRANSACTION_ABORTABLE_FROM_PRODUCE_VERSION = 11


def produce_error(answer: ErrorCode, produce_version: int) -> ErrorCode:
    """The Produce error for a partition the coordinator answered ``answer`` about."""
    if answer is ErrorCode.none:
        return answer
    if answer in (ErrorCode.transaction_abortable, ErrorCode.invalid_txn_state):
        return (ErrorCode.transaction_abortable if produce_version >= TRANSACTION_ABORTABLE_FROM_PRODUCE_VERSION
                else ErrorCode.invalid_txn_state)
    return PRODUCE_ERRORS.get(answer, answer)


def txn_offset_commit_error(answer: ErrorCode) -> ErrorCode:
    """The TxnOffsetCommit v5 error for the offsets partition the coordinator answered
    ``answer`` about: the Produce one, but a coordinator that cannot answer now is
    COORDINATOR_NOT_AVAILABLE, which the client retries after looking the group coordinator up
    (Kafka's GroupCoordinatorService.normalizeException turns NOT_ENOUGH_REPLICAS into it)."""
    error = produce_error(answer, TRANSACTION_ABORTABLE_FROM_PRODUCE_VERSION)
    return ErrorCode.coordinator_not_available if error is ErrorCode.not_enough_replicas else error
