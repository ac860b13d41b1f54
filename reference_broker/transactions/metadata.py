"""One transactional id's metadata, and the transitions that change it (Kafka 4's
``TransactionMetadata`` and ``TxnTransitMetadata``, transaction-coordinator module).

A change is made in two steps, as in Kafka, because every change must be in
``__transaction_state`` (replicated) before anyone acts on it:

1. a ``prepare_*`` method checks the move is legal, sets :attr:`TransactionMetadata.pending`
   to the target state (which blocks any other change: CONCURRENT_TRANSACTIONS) and returns the
   target as an immutable :class:`TxnTransit`, the value to write;
2. once the record is replicated, :meth:`TransactionMetadata.complete_transition` applies it
   (and checks it is still consistent); if the write failed, the caller clears ``pending``.

Epochs (KIP-98, KIP-360, KIP-890):

* ``producer_epoch`` starts at -1 (no producer yet); InitProducerId bumps it. It never reaches
  32767 in a client's hands: at 32766 it is *exhausted* (:func:`is_epoch_exhausted`) and the
  next InitProducerId (or, with transaction version 2, EndTxn) takes a new producer id at epoch
  0, so the coordinator can always fence with one more bump.
* ``last_producer_epoch`` is the epoch before the latest bump, so that a producer retrying an
  InitProducerId whose answer it lost (KIP-360), or an EndTxn with transaction version 2
  (KIP-890), is recognised rather than fenced. It is not stored in the log.
* With transaction version 2 (KIP-890 part 2) EndTxn bumps the epoch itself: PrepareX carries
  the new epoch, and the markers are written with it, so a zombie's late write at the old epoch
  is refused by the partition leaders. When the bump would exhaust the epoch, ``next_producer_id``
  is allocated at PrepareX and becomes the producer id (at epoch 0) at CompleteX.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from reference_broker.transactions.log_format import (
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    TopicPartition,
    TxnValue,
    group_partitions,
)
from reference_broker.transactions.state import IllegalTransitionError, TransactionState

_S = TransactionState
MAX_EPOCH = 32767  # Short.MaxValue


def is_epoch_exhausted(epoch: int) -> bool:
    """Whether no epoch may be handed out after ``epoch``: Kafka keeps 32767 for fencing, so a
    client never gets more than 32766 (TransactionMetadata.isEpochExhausted, KIP-360)."""
    return epoch >= MAX_EPOCH - 1


def supports_epoch_bump(transaction_version: int) -> bool:
    """Transaction version 2 (the ``transaction.version`` feature, KIP-890 part 2) bumps the
    epoch on every EndTxn; 0 and 1 keep it for the producer's session."""
    return transaction_version >= 2


@attrs.frozen(slots=True)
class TxnTransit:
    """The target of one transition: what is written to ``__transaction_state`` and, once that
    is replicated, what the metadata becomes (Kafka's TxnTransitMetadata)."""

    producer_id: int
    prev_producer_id: int
    next_producer_id: int
    producer_epoch: int
    last_producer_epoch: int
    timeout_ms: int
    state: TransactionState
    partitions: frozenset[TopicPartition]
    start_ms: int
    last_update_ms: int
    client_transaction_version: int

    def value(self) -> TxnValue:
        """The record's value (Empty has null partitions, as Kafka writes it)."""
        if self.state is _S.EMPTY and self.partitions:
            raise IllegalTransitionError(f"an Empty transaction with partitions: {self}")
        return TxnValue(
            self.producer_id, self.producer_epoch, self.timeout_ms, self.state,
            None if self.state is _S.EMPTY else group_partitions(self.partitions),
            self.last_update_ms, self.start_ms, self.prev_producer_id, self.next_producer_id,
            self.client_transaction_version,
        )


@attrs.define(slots=True, eq=False)
class TransactionMetadata:
    """What the coordinator knows of one transactional id (Kafka's TransactionMetadata)."""

    transactional_id: str
    producer_id: int
    producer_epoch: int = NO_PRODUCER_EPOCH
    last_producer_epoch: int = NO_PRODUCER_EPOCH
    timeout_ms: int = 0
    state: TransactionState = _S.EMPTY
    partitions: set[TopicPartition] = attrs.field(factory=set)
    start_ms: int = -1  # when the first partition of the current transaction was added
    last_update_ms: int = 0  # for transactional.id.expiration.ms
    previous_producer_id: int = NO_PRODUCER_ID  # the id before a rotation (KIP-360)
    next_producer_id: int = NO_PRODUCER_ID  # TV2: the id to take at CompleteX (KIP-890)
    client_transaction_version: int = 0
    # The state a write in flight will move to (None: no write in flight).
    pending: TransactionState | None = None
    # A PrepareEpochFence write failed: the epoch was bumped in memory but maybe not stored, and
    # never returned to a client, so the next fence does not bump it again.
    failed_epoch_fence: bool = False

    @classmethod
    def from_value(cls, transactional_id: str, value: TxnValue) -> TransactionMetadata:
        """The metadata a loaded record describes (TransactionLog.readTxnRecordValue: the last
        epoch is not stored, so it is -1)."""
        return cls(
            transactional_id, value.producer_id, value.producer_epoch, NO_PRODUCER_EPOCH,
            value.timeout_ms, value.state, set(value.topic_partitions()), value.start_ms,
            value.last_update_ms, value.previous_producer_id, value.next_producer_id,
            value.client_transaction_version,
        )

    @property
    def epoch_exhausted(self) -> bool:
        return is_epoch_exhausted(self.producer_epoch)

    @property
    def has_pending_transaction(self) -> bool:
        return self.state in (_S.ONGOING, _S.PREPARE_ABORT, _S.PREPARE_COMMIT)

    # --- preparing transitions ---------------------------------------------------------------
    # Each transit starts as a copy of the metadata and changes what its move changes (Kafka's
    # TransitionData); ``prev_producer_id`` is always the producer id before the move.

    def prepare_fence_producer_epoch(self) -> TxnTransit:
        """Fence the producer of the open transaction (a new instance's InitProducerId, or the
        transaction timed out): bump the epoch, unless a previous fence's write failed (KIP-360).
        The transit is never written: it becomes the PrepareAbort that EndTxn(abort) writes."""
        if self.producer_epoch == MAX_EPOCH:
            raise IllegalTransitionError("cannot fence a producer at epoch 32767: it would overflow")
        epoch = self.producer_epoch if self.failed_epoch_fence else self.producer_epoch + 1
        return self._prepare(_S.PREPARE_EPOCH_FENCE, producer_epoch=epoch)

    def prepare_increment_producer_epoch(
        self, timeout_ms: int, expected_epoch: int | None, now_ms: int
    ) -> TxnTransit | None:
        """InitProducerId on the same producer id: the next epoch, or None when the producer's
        ``expected_epoch`` shows it has been fenced (PRODUCER_FENCED).

        KIP-360: with no expected epoch (a new producer instance) the epoch is bumped and the
        last epoch forgotten; with one equal to the current epoch (or no epoch yet) the producer
        recovers and keeps its last epoch; one equal to the last epoch is a retry of a bump that
        succeeded, answered with the current epoch without bumping again."""
        if self.epoch_exhausted:
            raise IllegalTransitionError(f"producer id {self.producer_id} has no epochs left")
        bumped = self.producer_epoch + 1
        if expected_epoch is None:
            epoch, last = bumped, NO_PRODUCER_EPOCH
        elif self.producer_epoch == NO_PRODUCER_EPOCH or expected_epoch == self.producer_epoch:
            epoch, last = bumped, self.producer_epoch
        elif expected_epoch == self.last_producer_epoch:
            epoch, last = self.producer_epoch, self.last_producer_epoch
        else:
            return None
        return self._prepare(_S.EMPTY, producer_epoch=epoch, last_producer_epoch=last,
                             timeout_ms=timeout_ms, partitions=frozenset(), start_ms=-1,
                             last_update_ms=now_ms)

    def prepare_producer_id_rotation(
        self, new_producer_id: int, timeout_ms: int, now_ms: int, record_last_epoch: bool
    ) -> TxnTransit:
        """InitProducerId when the epoch is exhausted: a new producer id at epoch 0 (KIP-360);
        the old epoch is kept as the last one when the producer named it, so its retry is known."""
        if self.has_pending_transaction:
            raise IllegalTransitionError("cannot rotate producer ids while a transaction is open")
        return self._prepare(
            _S.EMPTY, producer_id=new_producer_id, producer_epoch=0,
            last_producer_epoch=self.producer_epoch if record_last_epoch else NO_PRODUCER_EPOCH,
            timeout_ms=timeout_ms, partitions=frozenset(), start_ms=-1, last_update_ms=now_ms)

    def prepare_add_partitions(
        self, added: Iterable[TopicPartition], now_ms: int, client_transaction_version: int = 0
    ) -> TxnTransit:
        """AddPartitionsToTxn / AddOffsetsToTxn: Ongoing with these partitions too; the first
        addition after Empty or CompleteX starts the transaction (and its timeout)."""
        start = now_ms if self.state in (_S.EMPTY, _S.COMPLETE_ABORT, _S.COMPLETE_COMMIT) else self.start_ms
        return self._prepare(_S.ONGOING, partitions=frozenset(self.partitions) | frozenset(added),
                             start_ms=start, last_update_ms=now_ms,
                             client_transaction_version=client_transaction_version)

    def prepare_abort_or_commit(
        self, state: TransactionState, client_transaction_version: int, next_producer_id: int,
        now_ms: int, no_partition_added: bool = False,
    ) -> TxnTransit:
        """EndTxn: PrepareCommit or PrepareAbort. With transaction version 2 the epoch is bumped
        here (KIP-890 part 2), the old one kept as the last epoch so a retry is recognised, and
        an abort may come with no partition added (from Empty or CompleteX; its start time is
        then now)."""
        if supports_epoch_bump(client_transaction_version) and self.producer_epoch < MAX_EPOCH:
            epoch, last = self.producer_epoch + 1, self.producer_epoch
        elif supports_epoch_bump(client_transaction_version):
            # Only after a fence of an exhausted epoch (32766 -> 32767): one more bump would
            # overflow, so the abort keeps 32767 and the next producer id takes over at
            # CompleteAbort (kconform's guard: Kafka's code at this point assumes no overflow).
            epoch, last = self.producer_epoch, self.producer_epoch
        else:
            epoch, last = self.producer_epoch, self.last_producer_epoch
        return self._prepare(state, producer_epoch=epoch, last_producer_epoch=last,
                             start_ms=now_ms if no_partition_added else self.start_ms,
                             next_producer_id=next_producer_id, last_update_ms=now_ms,
                             client_transaction_version=client_transaction_version)

    def prepare_complete(self, now_ms: int) -> TxnTransit:
        """Every marker is written: CompleteCommit or CompleteAbort, no partitions. With
        transaction version 2 and an exhausted epoch, the next producer id takes over here at
        epoch 0; the last epoch stays the one the client last saw (KIP-890)."""
        state = _S.COMPLETE_COMMIT if self.state is _S.PREPARE_COMMIT else _S.COMPLETE_ABORT
        self.failed_epoch_fence = False  # the PrepareX before it was written
        producer_id, epoch = self.producer_id, self.producer_epoch
        if supports_epoch_bump(self.client_transaction_version) and self.next_producer_id != NO_PRODUCER_ID:
            producer_id, epoch = self.next_producer_id, 0
        return self._prepare(state, producer_id=producer_id, producer_epoch=epoch,
                             next_producer_id=NO_PRODUCER_ID, partitions=frozenset(),
                             last_update_ms=now_ms)

    def prepare_dead(self) -> TxnTransit:
        """transactional.id.expiration.ms: the id is about to be removed (a tombstone)."""
        return self._prepare(_S.DEAD, partitions=frozenset())

    def _prepare(self, state: TransactionState, **changes: Any) -> TxnTransit:
        if self.pending is not None:
            raise IllegalTransitionError(
                f"{self.transactional_id}: preparing {state.display} while {self.pending.display} is pending")
        transit = attrs.evolve(TxnTransit(
            self.producer_id, self.producer_id, self.next_producer_id, self.producer_epoch,
            self.last_producer_epoch, self.timeout_ms, state, frozenset(self.partitions),
            self.start_ms, self.last_update_ms, self.client_transaction_version,
        ), **changes)
        if transit.producer_id < 0:
            raise IllegalTransitionError(f"illegal producer id {transit.producer_id}")
        if state is not _S.DEAD and not 0 <= transit.producer_epoch <= MAX_EPOCH:
            raise IllegalTransitionError(f"illegal producer epoch {transit.producer_epoch}")
        if not state.may_follow(self.state):
            raise IllegalTransitionError(
                f"{self.transactional_id}: {self.state.display} -> {state.display} is not a transition")
        self.pending = state
        return transit

    # --- completing them -----------------------------------------------------------------------

    def complete_transition(self, transit: TxnTransit) -> None:
        """Apply ``transit`` now that its record is replicated (Kafka's completeTransitionTo),
        after its consistency checks: the epoch is the same, one more, or 0 of a new id; the
        partitions only grow while Ongoing; a transaction has a start time once decided."""
        if self.pending is None or self.pending is not transit.state:
            self._fail(transit)
        to = transit.state
        if to is _S.EMPTY:  # InitProducerId
            ok = ((self.producer_epoch == transit.producer_epoch or self._valid_epoch_bump(transit))
                  and not transit.partitions and transit.start_ms == -1)
        elif to is _S.ONGOING:  # AddPartitionsToTxn
            ok = (self._valid_epoch(transit) and self.partitions <= transit.partitions
                  and self.timeout_ms == transit.timeout_ms)
        elif to.is_prepare:  # EndTxn; TV2 may abort from Empty or CompleteX, with a new start
            empty_abort = (to is _S.PREPARE_ABORT and supports_epoch_bump(transit.client_transaction_version)
                           and self.state in (_S.EMPTY, _S.COMPLETE_COMMIT, _S.COMPLETE_ABORT))
            ok = (self._valid_epoch(transit) and self.partitions == transit.partitions
                  and self.timeout_ms == transit.timeout_ms
                  and (self.start_ms == transit.start_ms or empty_abort))
        elif to in (_S.COMPLETE_COMMIT, _S.COMPLETE_ABORT):  # the markers are written
            ok = (self._valid_epoch(transit) and self.timeout_ms == transit.timeout_ms
                  and transit.start_ms != -1)
        else:  # PrepareEpochFence becomes PrepareAbort; Dead is removed, never completed
            ok = False
        if not ok:
            self._fail(transit)
        self.producer_id = transit.producer_id
        self.previous_producer_id = transit.prev_producer_id
        self.next_producer_id = transit.next_producer_id
        self.producer_epoch = transit.producer_epoch
        self.last_producer_epoch = transit.last_producer_epoch
        self.timeout_ms = transit.timeout_ms
        self.partitions = set(transit.partitions)
        self.start_ms = transit.start_ms
        self.last_update_ms = transit.last_update_ms
        self.client_transaction_version = transit.client_transaction_version
        self.pending = None
        self.state = to

    def _valid_epoch(self, transit: TxnTransit) -> bool:
        """The transit is for this producer id and epoch: for TV2's PrepareX the epoch before
        its bump; for TV2's CompleteX after a rotation, the id before it and the same last
        epoch (Kafka's validProducerEpoch)."""
        v2 = supports_epoch_bump(transit.client_transaction_version)
        if v2 and transit.state in (_S.COMPLETE_COMMIT, _S.COMPLETE_ABORT) and transit.producer_epoch == 0:
            return (transit.last_producer_epoch == self.last_producer_epoch
                    and transit.prev_producer_id == self.producer_id)
        if v2 and transit.state.is_prepare:
            return transit.last_producer_epoch == self.producer_epoch and transit.producer_id == self.producer_id
        return transit.producer_epoch == self.producer_epoch and transit.producer_id == self.producer_id

    def _valid_epoch_bump(self, transit: TxnTransit) -> bool:
        return (transit.producer_epoch == self.producer_epoch + 1
                or (transit.producer_epoch == 0 and transit.producer_id != self.producer_id))

    def _fail(self, transit: TxnTransit) -> None:
        raise IllegalTransitionError(
            f"{self.transactional_id} ({self.state.display}, pending "
            f"{self.pending.display if self.pending else None}) cannot complete {transit}")
