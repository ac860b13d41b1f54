"""The states of a transaction and which moves between them are legal.

Kafka's ``TransactionState`` (kafka.coordinator.transaction, ``TransactionMetadata.scala``;
the Java ``TransactionState`` of the transaction-coordinator module in Kafka 4): each state has
the byte stored in ``__transaction_state`` (its ``TransactionStatus`` field), the name
DescribeTransactions and ListTransactions show, and the set of states it may be entered from.
A transition that is not in that set is a bug in the coordinator, not a client error, so it
raises :class:`IllegalTransitionError` (Kafka throws IllegalStateException).

The protocol itself (KIP-98): Empty -> Ongoing (AddPartitionsToTxn / AddOffsetsToTxn) ->
PrepareCommit or PrepareAbort (EndTxn, written before any marker) -> CompleteCommit or
CompleteAbort (once every partition has its marker) -> Ongoing or Empty again. These are the
transitions of Kafka 4 (the Java TransactionMetadata of the transaction-coordinator module),
which with transaction version 2 also allows PrepareAbort from Empty and CompleteX. PrepareEpochFence
(KIP-360) is the pending state of an Ongoing transaction whose producer is being fenced (a new
InitProducerId, or transaction.timeout.ms expired); it is never written, it only becomes
PrepareAbort. Dead is the pending state of a transactional id being expired
(transactional.id.expiration.ms); it is written as a tombstone, never as a state.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping


class IllegalTransitionError(Exception):
    """A transition the coordinator must never attempt (a bug, as Kafka's IllegalStateException)."""


class TransactionState(enum.Enum):
    """A transaction's state; ``value`` is the byte Kafka stores, ``display`` its name."""

    EMPTY = 0
    ONGOING = 1
    PREPARE_COMMIT = 2
    PREPARE_ABORT = 3
    COMPLETE_COMMIT = 4
    COMPLETE_ABORT = 5
    DEAD = 6
    PREPARE_EPOCH_FENCE = 7

    @property
    def display(self) -> str:
        """The name Kafka shows (DescribeTransactions, ListTransactions filters)."""
        return _NAMES[self]

    @property
    def expiration_allowed(self) -> bool:
        """Whether transactional.id.expiration.ms may expire an id in this state: only when no
        transaction is open (Empty, CompleteCommit, CompleteAbort)."""
        return self in (TransactionState.EMPTY, TransactionState.COMPLETE_COMMIT,
                        TransactionState.COMPLETE_ABORT)

    @property
    def is_prepare(self) -> bool:
        """PrepareCommit or PrepareAbort: the outcome is decided, its markers are being written."""
        return self in (TransactionState.PREPARE_COMMIT, TransactionState.PREPARE_ABORT)

    @classmethod
    def from_name(cls, name: str) -> TransactionState | None:
        return _BY_NAME.get(name)

    def may_follow(self, previous: TransactionState) -> bool:
        """Whether a transaction in ``previous`` may move to this state."""
        return previous in VALID_PREVIOUS_STATES[self]


_S = TransactionState
_NAMES = {
    _S.EMPTY: "Empty", _S.ONGOING: "Ongoing", _S.PREPARE_COMMIT: "PrepareCommit",
    _S.PREPARE_ABORT: "PrepareAbort", _S.COMPLETE_COMMIT: "CompleteCommit",
    _S.COMPLETE_ABORT: "CompleteAbort", _S.DEAD: "Dead", _S.PREPARE_EPOCH_FENCE: "PrepareEpochFence",
}
_BY_NAME = {name: state for state, name in _NAMES.items()}

# Kafka's validPreviousStates, state by state.
VALID_PREVIOUS_STATES: Mapping[TransactionState, frozenset[TransactionState]] = {
    # InitProducerId (a new epoch) after no transaction or a finished one.
    _S.EMPTY: frozenset({_S.EMPTY, _S.COMPLETE_COMMIT, _S.COMPLETE_ABORT}),
    # AddPartitionsToTxn / AddOffsetsToTxn: start a transaction, or add to the open one.
    _S.ONGOING: frozenset({_S.ONGOING, _S.EMPTY, _S.COMPLETE_COMMIT, _S.COMPLETE_ABORT}),
    # EndTxn(commit).
    _S.PREPARE_COMMIT: frozenset({_S.ONGOING}),
    # EndTxn(abort), or the abort that fences a producer (KIP-360); with transaction version 2
    # also an abort with no transaction open (KIP-890: the client cannot know whether a
    # partition joined it).
    _S.PREPARE_ABORT: frozenset({_S.ONGOING, _S.PREPARE_EPOCH_FENCE, _S.EMPTY, _S.COMPLETE_COMMIT,
                                 _S.COMPLETE_ABORT}),
    # Every marker written.
    _S.COMPLETE_COMMIT: frozenset({_S.PREPARE_COMMIT}),
    _S.COMPLETE_ABORT: frozenset({_S.PREPARE_ABORT}),
    # transactional.id.expiration.ms: only ids with no open transaction.
    _S.DEAD: frozenset({_S.EMPTY, _S.COMPLETE_COMMIT, _S.COMPLETE_ABORT}),
    # A new producer instance or a timeout fences the producer of an open transaction.
    _S.PREPARE_EPOCH_FENCE: frozenset({_S.ONGOING}),
}
