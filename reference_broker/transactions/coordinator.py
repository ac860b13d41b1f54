"""The transaction coordinator: KIP-98 transactions as a sans-I/O state machine.

This is Kafka's TransactionCoordinator (kafka.coordinator.transaction) without threads,
sockets, clocks or the marker channel. Every operation takes ``now_ms``; requests Kafka answers
after a write to ``__transaction_state`` take a callback and call it exactly once, possibly
during a later call (when the storage reports the write replicated).

Theory of operation:

* A transactional id's metadata lives in one ``__transaction_state`` partition; the node that
  leads it is the id's coordinator (:mod:`~reference_broker.transactions.manager`). Every change
  is prepared (the metadata gets a *pending* state, so concurrent requests get
  CONCURRENT_TRANSACTIONS), written with acks=-1, and applied once replicated
  (:mod:`~reference_broker.transactions.metadata`).
* InitProducerId (KIP-98, KIP-360) hands out the producer id and a new epoch, which fences every
  older instance of the same transactional id. An open transaction is aborted first: the epoch is
  bumped (PrepareEpochFence), PrepareAbort written, and the new instance told
  CONCURRENT_TRANSACTIONS, to retry once the abort is complete. A producer that names its
  current producer id and epoch recovers from an abortable error with a bump instead of being
  fenced (KIP-360).
* AddPartitionsToTxn / AddOffsetsToTxn add partitions to the transaction (Ongoing).
  :meth:`TransactionCoordinator.verify_partitions` is the question a partition leader asks
  before appending a transactional batch (AddPartitionsToTxn v4+ with ``VerifyOnly``, KIP-890
  part 1): is this partition in the ongoing transaction of this producer id and epoch?
* EndTxn writes PrepareCommit / PrepareAbort and answers the client once that is replicated;
  the markers to write to every partition of the transaction are then this coordinator's
  OUTPUT (:meth:`TransactionCoordinator.take_markers`, :class:`TxnMarkers`). The caller writes
  them (WriteTxnMarkers, with the coordinator epoch) and reports them written
  (:meth:`TransactionCoordinator.markers_written`); then CompleteCommit / CompleteAbort is
  written. A coordinator that loads a partition finds the transactions left in PrepareX and
  outputs their markers again.
* ``transaction.timeout.ms`` (the client's, at most ``transaction.max.timeout.ms``): a
  transaction Ongoing for longer is aborted by :meth:`TransactionCoordinator.tick`, and its
  producer fenced with an epoch bump (KIP-98, KIP-360); ``transactional.id.expiration.ms``
  removes ids idle for longer.
* Transaction versions (the ``transaction.version`` feature, KIP-890 part 2): with version 2
  (EndTxn v5+ clients, on a coordinator whose feature level is 2) every EndTxn bumps the epoch
  and returns it, a retry is recognised by the epoch before the bump, and an abort is accepted
  with no transaction open; when the epoch is exhausted, the next producer id takes over at
  epoch 0. Versions 0 and 1 keep the epoch for the producer's session.

The decisions follow Kafka 4's coordinator (TransactionCoordinator.scala with its TV1 and TV2
EndTxn paths, and the Java TransactionMetadata of the transaction-coordinator module).

The broker (:mod:`reference_broker.broker`) owns one coordinator, loads and unloads its
partitions with the leadership of ``__transaction_state``, and hands the markers to a
:class:`~reference_broker.transactions.marker_channel.MarkerChannel`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

import attrs
from kio.schema.errors import ErrorCode

from reference_broker.groups.log_format import OFFSETS_TOPIC
from reference_broker.groups.log_format import partition_for as offsets_partition_for
from reference_broker.protocol.api_keys import ApiKey
from reference_broker.transactions.config import TransactionConfig
from reference_broker.transactions.log_format import NO_PRODUCER_EPOCH, NO_PRODUCER_ID, TopicPartition
from reference_broker.transactions.manager import ErrorCallback, Owned, TransactionStateManager
from reference_broker.transactions.metadata import (
    MAX_EPOCH,
    TransactionMetadata,
    TxnTransit,
    is_epoch_exhausted,
    supports_epoch_bump,
)
from reference_broker.transactions.state import IllegalTransitionError, TransactionState
from reference_broker.transactions.storage import TransactionStateLog

log = logging.getLogger(__name__)

_S = TransactionState

# A new producer id, or the error allocating one (the controller's id blocks, KIP-730).
ProducerIdSource = Callable[[], int | ErrorCode]

# PRODUCER_FENCED came with KIP-588; older versions of these requests get INVALID_PRODUCER_EPOCH
# instead, which their clients handle the same way (KafkaApis, request by request).
PRODUCER_FENCED_SINCE = {
    ApiKey.INIT_PRODUCER_ID: 4,
    ApiKey.ADD_PARTITIONS_TO_TXN: 2,
    ApiKey.ADD_OFFSETS_TO_TXN: 2,
    ApiKey.END_TXN: 2,
}


def error_for_version(error: ErrorCode, api_key: ApiKey, version: int) -> ErrorCode:
    """``error`` as a request of ``version`` may be told it: INVALID_PRODUCER_EPOCH for
    PRODUCER_FENCED before KIP-588's versions."""
    if error is ErrorCode.producer_fenced and version < PRODUCER_FENCED_SINCE.get(api_key, 0):
        return ErrorCode.invalid_producer_epoch
    return error


@attrs.frozen(slots=True)
class ProducerIdAndEpoch:
    """What a producer says it has (InitProducerId v3+, KIP-360)."""

    producer_id: int
    epoch: int


@attrs.frozen(slots=True)
class ProducerIdResult:
    """The answer of InitProducerId, and of EndTxn (v5+, transaction version 2, returns the
    producer id and epoch to use next)."""

    error: ErrorCode
    producer_id: int = NO_PRODUCER_ID
    producer_epoch: int = NO_PRODUCER_EPOCH


InitProducerIdResult = ProducerIdResult
EndTxnResult = ProducerIdResult


@attrs.frozen(slots=True)
class MarkerEntry:
    """One marker to write: WriteTxnMarkers' per-partition fields."""

    topic_partition: TopicPartition
    producer_id: int
    producer_epoch: int
    coordinator_epoch: int
    commit: bool


@attrs.frozen(slots=True)
class TxnMarkers:
    """The markers of one decided transaction: the caller writes one to each partition (with
    the coordinator epoch, so a deposed coordinator's markers are refused), then reports them
    with :meth:`TransactionCoordinator.markers_written`."""

    transactional_id: str
    producer_id: int
    producer_epoch: int
    coordinator_epoch: int
    commit: bool
    partitions: frozenset[TopicPartition]
    transaction_version: int
    complete: TxnTransit = attrs.field(repr=False)  # CompleteX, written once the markers are

    def entries(self) -> list[MarkerEntry]:
        return [
            MarkerEntry(tp, self.producer_id, self.producer_epoch, self.coordinator_epoch, self.commit)
            for tp in sorted(self.partitions)
        ]


@attrs.frozen(slots=True)
class TransactionDescription:
    """DescribeTransactions' answer for one id. An error leaves the rest at the response
    schema's defaults (0 and empty), as Kafka's does."""

    transactional_id: str
    error: ErrorCode
    state: str = ""
    producer_id: int = 0
    producer_epoch: int = 0
    timeout_ms: int = 0
    start_ms: int = 0
    topics: Mapping[str, tuple[int, ...]] = attrs.field(factory=dict)


@attrs.frozen(slots=True)
class TransactionListing:
    """One transactional id of ListTransactions' answer: its producer id and its state, by the
    name Kafka gives it (``Ongoing``, ``PrepareCommit``, ...)."""

    transactional_id: str
    producer_id: int
    state: str


@attrs.frozen(slots=True)
class ListTransactionsResult:
    """ListTransactions' answer: the ids that pass the filters, and the state filters no state
    has (Kafka names them back to the client)."""

    error: ErrorCode
    transactions: tuple[TransactionListing, ...] = ()
    unknown_state_filters: tuple[str, ...] = ()


class TransactionCoordinator:
    """The transactional ids of the ``__transaction_state`` partitions this node has loaded."""

    def __init__(
        self, config: TransactionConfig, storage: TransactionStateLog,
        new_producer_id: ProducerIdSource, now_ms: int,
    ) -> None:
        self.config = config
        self.manager = TransactionStateManager(config, storage)
        self._new_producer_id = new_producer_id
        self._markers: list[TxnMarkers] = []
        self._retry_complete: list[TxnMarkers] = []  # CompleteX appends to try again
        # (id, coordinator epoch) whose CompleteX is being written.
        self._completing: set[tuple[str, int]] = set()
        self._next_abort_check_ms = now_ms + config.abort_timed_out_transaction_cleanup_interval_ms
        self._next_expiry_ms = now_ms + config.remove_expired_transaction_cleanup_interval_ms
        # Called when markers are ready to take (the driver wakes its marker sender).
        self.on_markers: Callable[[], None] | None = None

    # --- inspection ------------------------------------------------------------------------

    def metadata(self, transactional_id: str) -> TransactionMetadata | None:
        found = self.manager.get(transactional_id)
        return found.metadata if isinstance(found, Owned) else None

    def coordinator_error(self, transactional_id: str) -> ErrorCode | None:
        """None when this node coordinates ``transactional_id`` (FindCoordinator)."""
        found = self.manager.get(transactional_id)
        return found if isinstance(found, ErrorCode) else None

    def partition_for(self, transactional_id: str) -> int:
        return self.manager.partition_for(transactional_id)

    def _known(self, transactional_id: str) -> ErrorCode | Owned:
        """The metadata a request about an existing transaction acts on, or its error: an empty
        id is INVALID_REQUEST, an unknown one INVALID_PRODUCER_ID_MAPPING."""
        if not transactional_id:
            return ErrorCode.invalid_request
        found = self.manager.get(transactional_id)
        return ErrorCode.invalid_producer_id_mapping if found is None else found

    # --- InitProducerId --------------------------------------------------------------------

    def validate_timeout(self, timeout_ms: int) -> bool:
        """0 < transaction.timeout.ms <= transaction.max.timeout.ms."""
        return 0 < timeout_ms <= self.config.max_timeout_ms

    def init_producer_id(
        self, transactional_id: str, timeout_ms: int, expected: ProducerIdAndEpoch | None,
        now_ms: int, callback: Callable[[InitProducerIdResult], None],
    ) -> None:
        """InitProducerId with a transactional id (without one it is the idempotent producer's,
        answered by :mod:`reference_broker.producers`)."""
        if not transactional_id:
            callback(InitProducerIdResult(ErrorCode.invalid_request))
            return
        if not self.validate_timeout(timeout_ms):
            callback(InitProducerIdResult(ErrorCode.invalid_transaction_timeout))
            return
        found = self.manager.get(transactional_id)
        if found is None:
            producer_id = self._new_producer_id()
            if isinstance(producer_id, ErrorCode):
                callback(InitProducerIdResult(producer_id))
                return
            found = self.manager.put_if_absent(TransactionMetadata(
                transactional_id, producer_id, timeout_ms=timeout_ms, last_update_ms=now_ms))
        if isinstance(found, ErrorCode):
            callback(InitProducerIdResult(found))
            return
        decided = self._prepare_init(found.metadata, timeout_ms, expected, now_ms)
        if isinstance(decided, ErrorCode):
            callback(InitProducerIdResult(decided))
            return
        if decided.state is _S.PREPARE_EPOCH_FENCE:
            # Abort the open transaction first; the new instance retries (CONCURRENT_TRANSACTIONS)
            # and gets the epoch after the abort's.
            def fenced(result: EndTxnResult) -> None:
                error = result.error if result.error is not ErrorCode.none else ErrorCode.concurrent_transactions
                callback(InitProducerIdResult(error))

            self._end_transaction(transactional_id, decided.producer_id, decided.producer_epoch,
                                  False, False, self._abort_version(found.metadata), now_ms, fenced)
            return

        def written(error: ErrorCode) -> None:
            if error is ErrorCode.none:
                log.info("initialized transactional id %s: producer id %d, epoch %d",
                         transactional_id, decided.producer_id, decided.producer_epoch)
                callback(InitProducerIdResult(error, decided.producer_id, decided.producer_epoch))
            else:
                callback(InitProducerIdResult(error))

        self.manager.append(transactional_id, found.coordinator_epoch, decided, now_ms, written)

    def _prepare_init(
        self, txn: TransactionMetadata, timeout_ms: int, expected: ProducerIdAndEpoch | None,
        now_ms: int,
    ) -> ErrorCode | TxnTransit:
        """Kafka's prepareInitProducerIdTransit."""
        if txn.pending is not None:
            return ErrorCode.concurrent_transactions
        if expected is not None and not (
            # KIP-360: fence the caller unless the metadata is new, it names the current id, or
            # it names the previous id at an exhausted epoch (a retry of the rotation).
            txn.producer_epoch == NO_PRODUCER_EPOCH
            or expected.producer_id == txn.producer_id
            or (expected.producer_id == txn.previous_producer_id and is_epoch_exhausted(expected.epoch))
        ):
            return ErrorCode.producer_fenced
        if txn.state.is_prepare:
            return ErrorCode.concurrent_transactions
        if txn.state is _S.ONGOING:
            return txn.prepare_fence_producer_epoch()
        if txn.state in (_S.EMPTY, _S.COMPLETE_COMMIT, _S.COMPLETE_ABORT):
            if txn.epoch_exhausted and (expected is None or expected.epoch == txn.producer_epoch):
                producer_id = self._new_producer_id()
                if isinstance(producer_id, ErrorCode):
                    return producer_id
                return txn.prepare_producer_id_rotation(producer_id, timeout_ms, now_ms, expected is not None)
            transit = txn.prepare_increment_producer_epoch(
                timeout_ms, None if expected is None else expected.epoch, now_ms)
            return ErrorCode.producer_fenced if transit is None else transit
        raise IllegalTransitionError(f"{txn.transactional_id} found in {txn.state.display}")

    # --- AddPartitionsToTxn, AddOffsetsToTxn -----------------------------------------------

    def add_partitions(
        self, transactional_id: str, producer_id: int, producer_epoch: int,
        partitions: Iterable[TopicPartition], now_ms: int, callback: ErrorCallback,
        client_transaction_version: int = 0,
    ) -> None:
        """AddPartitionsToTxn (one transaction; every partition gets the same error).
        ``client_transaction_version`` is 2 for AddPartitionsToTxn v5+ on a coordinator whose
        ``transaction.version`` is 2 (TransactionVersion.transactionVersionForAddPartitionsToTxn)."""
        wanted = frozenset(partitions)
        found = self._known(transactional_id)
        if isinstance(found, ErrorCode):
            callback(found)
            return
        txn = found.metadata
        if txn.producer_id != producer_id:
            callback(ErrorCode.invalid_producer_id_mapping)
        elif txn.producer_epoch != producer_epoch:
            callback(ErrorCode.producer_fenced)
        elif txn.pending is not None or txn.state.is_prepare:
            callback(ErrorCode.concurrent_transactions)
        elif txn.state is _S.ONGOING and wanted <= txn.partitions:
            callback(ErrorCode.none)  # already in the transaction: nothing to write
        else:
            self.manager.append(transactional_id, found.coordinator_epoch,
                                txn.prepare_add_partitions(wanted, now_ms, client_transaction_version),
                                now_ms, callback)

    def add_offsets(
        self, transactional_id: str, producer_id: int, producer_epoch: int, group_id: str,
        offsets_partitions: int, now_ms: int, callback: ErrorCallback,
    ) -> None:
        """AddOffsetsToTxn (KIP-98): add the group's ``__consumer_offsets`` partition (of
        ``offsets_partitions``), where TxnOffsetCommit will write, so that the offsets commit
        or abort with the transaction (KafkaApis computes it with the group coordinator's
        partitionFor). Fencing zombies by the group's generation (KIP-447) is the group
        coordinator's business, in TxnOffsetCommit, not this one's."""
        partition = (OFFSETS_TOPIC, offsets_partition_for(group_id, offsets_partitions))
        self.add_partitions(transactional_id, producer_id, producer_epoch, [partition], now_ms, callback)

    def verify_partitions(
        self, transactional_id: str, producer_id: int, producer_epoch: int,
        partitions: Iterable[TopicPartition],
    ) -> dict[TopicPartition, ErrorCode]:
        """KIP-890 part 1: is each partition in the ongoing transaction of (producer id,
        epoch)? NONE if so, TRANSACTION_ABORTABLE if not (the producer aborts: a write to a
        partition it never added is a hanging transaction in the making); the whole request
        fails INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED or CONCURRENT_TRANSACTIONS (the
        outcome is decided). Kafka's handleVerifyPartitionsInTransaction; the pending state is
        not looked at (the log append checks again)."""
        wanted = list(partitions)
        found = self._known(transactional_id)
        error: ErrorCode
        if isinstance(found, ErrorCode):
            error = found
        elif found.metadata.producer_id != producer_id:
            error = ErrorCode.invalid_producer_id_mapping
        elif found.metadata.producer_epoch != producer_epoch:
            error = ErrorCode.producer_fenced
        elif found.metadata.state.is_prepare:
            error = ErrorCode.concurrent_transactions
        else:
            txn = found.metadata
            return {tp: ErrorCode.none if tp in txn.partitions else ErrorCode.transaction_abortable
                    for tp in wanted}
        return dict.fromkeys(wanted, error)

    # --- EndTxn ----------------------------------------------------------------------------

    def end_txn(
        self, transactional_id: str, producer_id: int, producer_epoch: int, commit: bool,
        client_transaction_version: int, now_ms: int, callback: Callable[[EndTxnResult], None],
    ) -> None:
        """EndTxn. ``client_transaction_version`` is 2 for EndTxn v5+ when the coordinator's
        ``transaction.version`` is 2 (TransactionVersion.transactionVersionForEndTxn), else 0."""
        self._end_transaction(transactional_id, producer_id, producer_epoch, commit, True,
                              client_transaction_version, now_ms, callback)

    def _end_transaction(
        self, transactional_id: str, producer_id: int, producer_epoch: int, commit: bool,
        from_client: bool, client_version: int, now_ms: int,
        callback: Callable[[EndTxnResult], None],
    ) -> None:
        """Kafka's endTransaction (and endTransactionWithTV1): decide, write PrepareX, answer,
        output the markers."""
        found = self._known(transactional_id)
        if isinstance(found, ErrorCode):
            callback(EndTxnResult(found))
            return
        txn, coordinator_epoch = found.metadata, found.coordinator_epoch
        v2 = supports_epoch_bump(client_version)
        decided = (self._prepare_end_v2(txn, producer_id, producer_epoch, commit, from_client, now_ms) if v2
                   else self._prepare_end_v1(txn, producer_id, producer_epoch, commit, from_client, now_ms))
        if isinstance(decided, EndTxnResult):
            if not from_client and txn.pending is _S.PREPARE_EPOCH_FENCE:
                txn.pending = None  # the fence is not written: nothing is in flight
            callback(decided)
            return
        transit, epoch_fence = decided

        def written(error: ErrorCode) -> None:
            if error is not ErrorCode.none:
                if epoch_fence:
                    current = self.manager.get(transactional_id)
                    if isinstance(current, Owned) and current.coordinator_epoch == coordinator_epoch:
                        current.metadata.failed_epoch_fence = True  # do not bump it again
                callback(EndTxnResult(error))
                return
            after = self._prepare_complete(transactional_id, coordinator_epoch, producer_id,
                                           producer_epoch, commit, v2, now_ms)
            if isinstance(after, ErrorCode):
                callback(EndTxnResult(after))
                return
            txn_now, complete = after
            # EndTxn v5+ (TV2) tells the client the id and epoch to go on with.
            callback(EndTxnResult(ErrorCode.none, txn_now.producer_id, txn_now.producer_epoch) if v2
                     else EndTxnResult(ErrorCode.none))
            self._send_markers(txn_now, coordinator_epoch, commit, complete, now_ms)

        self.manager.append(transactional_id, coordinator_epoch, transit, now_ms, written)

    @staticmethod
    def _decided_already(txn: TransactionMetadata, commit: bool, retry: bool) -> ErrorCode:
        """EndTxn in a state whose outcome is decided: NONE for a retry of the same outcome once
        complete, CONCURRENT_TRANSACTIONS while its markers are written, else INVALID_TXN_STATE."""
        same = (txn.state in (_S.COMPLETE_COMMIT, _S.PREPARE_COMMIT)) == commit
        if txn.state in (_S.DEAD, _S.PREPARE_EPOCH_FENCE):
            raise IllegalTransitionError(f"{txn.transactional_id} found in {txn.state.display}")
        if same and retry and txn.state in (_S.COMPLETE_COMMIT, _S.COMPLETE_ABORT):
            return ErrorCode.none
        if same and txn.state.is_prepare:
            return ErrorCode.concurrent_transactions
        log.info("EndTxn(%s) of %s in state %s", "commit" if commit else "abort",
                 txn.transactional_id, txn.state.display)
        return ErrorCode.invalid_txn_state

    def _fence_to_abort(self, txn: TransactionMetadata, producer_epoch: int, commit: bool) -> None:
        """The coordinator's own abort after a fence: clear the fence to make way for
        PrepareAbort, with the fence's bumped epoch."""
        if commit:
            raise IllegalTransitionError(f"{txn.transactional_id}: commit of a fenced transaction")
        txn.pending = None
        txn.producer_epoch = producer_epoch
        txn.last_producer_epoch = NO_PRODUCER_EPOCH

    def _prepare_end_v1(
        self, txn: TransactionMetadata, producer_id: int, producer_epoch: int, commit: bool,
        from_client: bool, now_ms: int,
    ) -> EndTxnResult | tuple[TxnTransit, bool]:
        """Transaction versions 0 and 1 (KIP-98): the client's epoch must be the current one (the
        coordinator's own abort carries the fence's bumped epoch); only Ongoing can be ended;
        a retry of a completed outcome is NONE."""
        fencing = txn.pending is _S.PREPARE_EPOCH_FENCE
        if txn.producer_id != producer_id:
            return EndTxnResult(ErrorCode.invalid_producer_id_mapping)
        if (from_client and producer_epoch != txn.producer_epoch) or producer_epoch < txn.producer_epoch:
            return EndTxnResult(ErrorCode.producer_fenced)
        if txn.pending is not None and not fencing:
            return EndTxnResult(ErrorCode.concurrent_transactions)
        if txn.state is not _S.ONGOING:
            return EndTxnResult(self._decided_already(txn, commit, retry=True))
        if fencing:
            self._fence_to_abort(txn, producer_epoch, commit)
        target = _S.PREPARE_COMMIT if commit else _S.PREPARE_ABORT
        return txn.prepare_abort_or_commit(target, 0, NO_PRODUCER_ID, now_ms), fencing

    def _prepare_end_v2(
        self, txn: TransactionMetadata, producer_id: int, producer_epoch: int, commit: bool,
        from_client: bool, now_ms: int,
    ) -> EndTxnResult | tuple[TxnTransit, bool]:
        """Transaction version 2 (KIP-890 part 2): every EndTxn bumps the epoch, so a retry
        carries the epoch before the bump (or, after a rotation, the previous producer id at
        32766); an abort with the current epoch is accepted in Empty and CompleteX too (the
        client cannot know whether a partition joined its transaction):

        ==============  ===================  ====================
        state           abort: retry/current commit: retry/current
        ==============  ===================  ====================
        Empty           FENCED / bump        FENCED / INVALID
        CompleteAbort   NONE / bump          INVALID / INVALID
        CompleteCommit  INVALID / bump       NONE / INVALID
        ==============  ===================  ====================
        """
        current = EndTxnResult(ErrorCode.none, txn.producer_id, txn.producer_epoch)
        fencing = txn.pending is _S.PREPARE_EPOCH_FENCE
        retry_on_overflow = (not fencing and txn.previous_producer_id == producer_id
                             and producer_epoch == MAX_EPOCH - 1 and txn.producer_epoch == 0)
        retry_on_bump = not fencing and txn.producer_epoch == producer_epoch + 1
        retry = retry_on_bump or retry_on_overflow
        if fencing:
            valid_epoch = ((not from_client or producer_epoch == txn.producer_epoch)
                           and producer_epoch >= txn.producer_epoch)
        elif txn.state.is_prepare:
            valid_epoch = retry_on_bump
        elif txn.state in (_S.COMPLETE_COMMIT, _S.COMPLETE_ABORT):
            valid_epoch = retry or producer_epoch == txn.producer_epoch
        else:
            valid_epoch = producer_epoch == txn.producer_epoch
        if txn.producer_id != producer_id and not retry_on_overflow:
            return EndTxnResult(ErrorCode.invalid_producer_id_mapping)
        if not valid_epoch:
            return EndTxnResult(ErrorCode.producer_fenced)
        if txn.pending is not None and not fencing:
            return EndTxnResult(ErrorCode.concurrent_transactions)
        empty_abort = (not commit and not retry
                       and txn.state in (_S.EMPTY, _S.COMPLETE_COMMIT, _S.COMPLETE_ABORT))
        if txn.state is not _S.ONGOING and not empty_abort:
            error = self._decided_already(txn, commit, retry)
            return current if error is ErrorCode.none else EndTxnResult(error)
        next_producer_id = NO_PRODUCER_ID
        # The epoch is bumped: when that exhausts it, the next producer id takes over at
        # CompleteX. kconform also rotates after a fence of an exhausted epoch (Kafka skips the
        # fence path here, and its bump would then overflow).
        if is_epoch_exhausted(producer_epoch if fencing else txn.producer_epoch):
            allocated = self._new_producer_id()
            if isinstance(allocated, ErrorCode):
                return EndTxnResult(allocated)
            next_producer_id = allocated
        if fencing:
            self._fence_to_abort(txn, producer_epoch, commit)
        target = _S.PREPARE_COMMIT if commit else _S.PREPARE_ABORT
        return txn.prepare_abort_or_commit(target, 2, next_producer_id, now_ms, empty_abort), fencing

    def _prepare_complete(
        self, transactional_id: str, coordinator_epoch: int, producer_id: int, producer_epoch: int,
        commit: bool, v2: bool, now_ms: int,
    ) -> ErrorCode | tuple[TransactionMetadata, TxnTransit]:
        """After PrepareX is replicated: check nothing changed, and prepare CompleteX (pending
        while the markers are written)."""
        found = self.manager.get(transactional_id)
        if isinstance(found, ErrorCode):
            return found
        if found is None or found.coordinator_epoch != coordinator_epoch:
            return ErrorCode.not_coordinator
        txn = found.metadata
        if txn.producer_id != producer_id:
            return ErrorCode.invalid_producer_id_mapping
        if txn.producer_epoch != producer_epoch and not (v2 and txn.producer_epoch == producer_epoch + 1):
            return ErrorCode.producer_fenced
        if txn.pending is not None:
            return ErrorCode.concurrent_transactions
        expected = _S.PREPARE_COMMIT if commit else _S.PREPARE_ABORT
        if txn.state is not expected:
            return ErrorCode.invalid_txn_state
        return txn, txn.prepare_complete(now_ms)

    # --- markers ---------------------------------------------------------------------------

    def _send_markers(
        self, txn: TransactionMetadata, coordinator_epoch: int, commit: bool, complete: TxnTransit,
        now_ms: int,
    ) -> None:
        """Output the markers of a decided transaction; one with no partition (a TV2 abort of
        an empty transaction) has none to write and is completed at once, as Kafka's marker
        channel does."""
        markers = TxnMarkers(
            txn.transactional_id, txn.producer_id, txn.producer_epoch, coordinator_epoch, commit,
            frozenset(txn.partitions), txn.client_transaction_version, complete,
        )
        if markers.partitions:
            self._markers.append(markers)
            if self.on_markers is not None:
                self.on_markers()
        else:
            self.markers_written(markers, now_ms)

    def take_markers(self) -> list[TxnMarkers]:
        """The markers decided since the last call, for the caller to write."""
        markers, self._markers = self._markers, []
        return markers

    def owns(self, markers: TxnMarkers) -> bool:
        """Whether this node still coordinates the transaction of ``markers`` at their
        coordinator epoch (else it must not write them: the new coordinator does)."""
        found = self.manager.get(markers.transactional_id)
        return isinstance(found, Owned) and found.coordinator_epoch == markers.coordinator_epoch

    def markers_written(self, markers: TxnMarkers, now_ms: int) -> None:
        """Every marker of ``markers`` is written: write CompleteX (Kafka's
        TransactionMarkerChannelManager.tryAppendToLog). COORDINATOR_NOT_AVAILABLE is retried
        at the next :meth:`tick`; other errors (the partition moved) leave the transaction to
        the next coordinator, which writes the markers again. A second report of the same
        markers (the caller retried) writes nothing more."""
        found = self.manager.get(markers.transactional_id)
        if not isinstance(found, Owned) or found.coordinator_epoch != markers.coordinator_epoch:
            return  # unloaded: the new coordinator writes the markers again
        key = (markers.transactional_id, markers.coordinator_epoch)
        if found.metadata.pending is not markers.complete.state or key in self._completing:
            return  # CompleteX is written, or being written
        self._completing.add(key)

        def written(error: ErrorCode) -> None:
            self._completing.discard(key)
            if error is ErrorCode.coordinator_not_available:
                self._retry_complete.append(markers)
            elif error is not ErrorCode.none:
                log.info("completing the transaction of %s failed: %s", markers.transactional_id, error.name)

        self.manager.append(markers.transactional_id, markers.coordinator_epoch, markers.complete,
                            now_ms, written, lambda error: error is ErrorCode.coordinator_not_available)

    # --- timers ----------------------------------------------------------------------------

    def tick(self, now_ms: int) -> None:
        """Retry CompleteX writes, abort timed-out transactions
        (transaction.abort.timed.out.transaction.cleanup.interval.ms) and expire idle ids
        (transaction.remove.expired.transaction.cleanup.interval.ms)."""
        retries, self._retry_complete = self._retry_complete, []
        for markers in retries:
            self.markers_written(markers, now_ms)
        if now_ms >= self._next_abort_check_ms:
            self._next_abort_check_ms = now_ms + self.config.abort_timed_out_transaction_cleanup_interval_ms
            self.abort_timed_out_transactions(now_ms)
        if now_ms >= self._next_expiry_ms:
            self._next_expiry_ms = now_ms + self.config.remove_expired_transaction_cleanup_interval_ms
            self.manager.remove_expired(now_ms)

    def abort_timed_out_transactions(self, now_ms: int) -> None:
        """Abort every transaction Ongoing for longer than its timeout, fencing its producer
        with an epoch bump (KIP-98: a hung producer must not hold the LSO back forever)."""
        timed_out = [
            txn for _, txn in self.manager.all_loaded()
            if txn.pending is None and txn.state is _S.ONGOING and txn.start_ms + txn.timeout_ms < now_ms
        ]
        for txn in timed_out:
            fence = txn.prepare_fence_producer_epoch()

            def done(result: EndTxnResult, tid: str = txn.transactional_id) -> None:
                log.info("timed-out transaction of %s: abort %s", tid, result.error.name)

            log.info("aborting the timed-out transaction of %s", txn.transactional_id)
            self._end_transaction(txn.transactional_id, fence.producer_id, fence.producer_epoch,
                                  False, False, self._abort_version(txn), now_ms, done)

    def _abort_version(self, txn: TransactionMetadata) -> int:
        """The transaction version of an abort the coordinator starts itself (a fence, a
        timeout): the one the transaction's client used, on a coordinator that runs it. Kafka
        4.0's coordinator took its own level instead; Kafka 4.4.0 fences a transaction of a
        version-0 client with one epoch bump, not two (observed with kconform's
        transaction-fencing check), so the client's version is what counts."""
        return min(txn.client_transaction_version, self.config.transaction_version)

    # --- which partitions are ours ---------------------------------------------------------

    def begin_loading(self, partition: int, coordinator_epoch: int) -> None:
        """This node became leader of ``__transaction_state`` partition ``partition``: its ids
        answer COORDINATOR_LOAD_IN_PROGRESS until :meth:`load_partition`."""
        self.manager.begin_loading(partition, coordinator_epoch)

    def load_partition(self, partition: int, coordinator_epoch: int, now_ms: int) -> None:
        """Rebuild the partition's ids from its records (Kafka's onElection); transactions left
        in PrepareCommit / PrepareAbort get their markers output again."""
        self._drop_markers(partition)
        for txn in self.manager.load(partition, coordinator_epoch):
            self._send_markers(txn, coordinator_epoch, txn.state is _S.PREPARE_COMMIT,
                               txn.prepare_complete(now_ms), now_ms)

    def unload_partition(self, partition: int, coordinator_epoch: int | None = None) -> None:
        """Another node leads the partition now (Kafka's onResignation): forget its ids and the
        markers not yet handed out."""
        self.manager.unload(partition, coordinator_epoch)
        self._drop_markers(partition)

    def _drop_markers(self, partition: int) -> None:
        def keep(markers: TxnMarkers) -> bool:
            return self.partition_for(markers.transactional_id) != partition

        self._markers = [m for m in self._markers if keep(m)]
        self._retry_complete = [m for m in self._retry_complete if keep(m)]

    # --- DescribeTransactions, ListTransactions ---------------------------------------------

    def describe(self, transactional_id: str) -> TransactionDescription:
        if not transactional_id:
            return TransactionDescription(transactional_id, ErrorCode.invalid_request)
        found = self.manager.get(transactional_id)
        if isinstance(found, ErrorCode):
            return TransactionDescription(transactional_id, found)
        if found is None or found.metadata.state is _S.DEAD:
            return TransactionDescription(transactional_id, ErrorCode.transactional_id_not_found)
        txn = found.metadata
        topics: dict[str, tuple[int, ...]] = {}
        for topic, partition in sorted(txn.partitions):
            topics[topic] = (*topics.get(topic, ()), partition)
        return TransactionDescription(transactional_id, ErrorCode.none, txn.state.display,
                                      txn.producer_id, txn.producer_epoch, txn.timeout_ms,
                                      txn.start_ms, topics)

    def list_transactions(
        self, producer_ids: Iterable[int] = (), states: Iterable[str] = (), duration_ms: int = -1,
        now_ms: int = 0,
    ) -> ListTransactionsResult:
        """ListTransactions (KIP-664; the duration filter is KIP-994): Dead ids are left out;
        state names Kafka does not know are returned as unknown filters."""
        if self.manager.loading:
            return ListTransactionsResult(ErrorCode.coordinator_load_in_progress)
        wanted_ids = set(producer_ids)
        names = list(states)
        wanted_states = {s for s in map(TransactionState.from_name, names) if s is not None}
        unknown = tuple(n for n in names if TransactionState.from_name(n) is None)
        listings = tuple(
            TransactionListing(txn.transactional_id, txn.producer_id, txn.state.display)
            for _, txn in sorted(self.manager.all_loaded(), key=lambda e: e[1].transactional_id)
            if txn.state is not _S.DEAD
            and (not wanted_ids or txn.producer_id in wanted_ids)
            and (not names or txn.state in wanted_states)
            and not (duration_ms >= 0 and now_ms - txn.start_ms <= duration_ms)
        )
        return ListTransactionsResult(ErrorCode.none, listings, unknown)
