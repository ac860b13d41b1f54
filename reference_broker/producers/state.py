"""What one partition remembers about its idempotent producers, and the checks a batch must pass.

Theory of operation (Kafka's ProducerStateManager, ProducerStateEntry and ProducerAppendInfo;
KIP-98 "Exactly Once Delivery and Transactional Messaging"):

An idempotent producer gets a producer id from InitProducerId and stamps every batch with that
id, an epoch and a *base sequence*: per partition, sequences count records from 0, so a batch of
``n`` records starting at sequence ``s`` covers ``s .. s+n-1`` (modulo 2**31: after
2147483647 comes 0). Each partition keeps, per producer id, the current epoch and the metadata
(first/last sequence, first/last offset, timestamp) of the producer's last five batches: five
because a producer has at most five requests in flight (``max.in.flight.requests.per.connection
<= 5`` is required for idempotence), so any retry it can send is one of those five.

A produced batch carrying a producer id (``producer_id >= 0``; -1 means "not idempotent" and
bypasses everything here) is judged against that entry, in this order:

====================================================  ===========================================
situation                                             outcome
====================================================  ===========================================
same epoch, sequence range equal to a cached batch    duplicate: nothing is written, the client
                                                      gets the original offsets back
no entry for the producer id, first sequence 0        accepted (a new producer)
no entry, first sequence not 0                        UNKNOWN_PRODUCER_ID
epoch lower than the entry's                          INVALID_PRODUCER_EPOCH
epoch higher than the entry's, first sequence 0       accepted; the cache restarts with this batch
epoch higher, first sequence not 0                    OUT_OF_ORDER_SEQUENCE_NUMBER
same epoch, first sequence = last sequence + 1        accepted
same epoch, anything else (gap, old, overlapping)     OUT_OF_ORDER_SEQUENCE_NUMBER
====================================================  ===========================================

UNKNOWN_PRODUCER_ID for an unknown producer whose first sequence is not 0 is what Kafka 0.11 to
2.4 answered (the producer's state expired, or retention removed its last batch). Kafka 2.5 and
later (KIP-360) accept such a write and start a new entry from it; the reference broker keeps the
older, stricter rule because it tells the producer that the broker has forgotten it, which is
what this broker's conformance checks want to see.

Checking (:meth:`ProducerStateManager.check`) is pure: a produce is checked in full before any
offset is assigned, so a rejected request changes nothing. Once the batches are in the log,
:meth:`ProducerStateManager.update` records them. ``update`` does no checking: it is also how a
follower copying its leader, and log recovery replaying stored batches, rebuild the state (as
Kafka's replication-origin ProducerAppendInfo does), and the cleaner may have removed batches
from the middle of a producer's history.

A producer whose last batch is older than ``producer.id.expiration.ms`` is forgotten by
:meth:`ProducerStateManager.remove_expired` (Kafka's removeExpiredProducers). As in Kafka, the
age is measured from the batch's largest record timestamp, i.e. the producer's clock under
CreateTime and the broker's under LogAppendTime. A producer with an ongoing transaction never
expires (Kafka's isProducerExpired).

Transactions (KIP-98; Kafka's ProducerStateEntry.currentTxnFirstOffset and
ProducerAppendInfo.appendEndTxnMarker): a transactional batch from a producer without an ongoing
transaction on this partition begins one at its base offset; a control batch (a COMMIT or ABORT
marker the coordinator has the partition leader write) ends it and yields a
:class:`CompletedTxn` (producer id, first offset, the marker's offset, aborted?), which the log
turns into its last stable offset and, for an abort, an entry of its transaction index (a
marker ending nothing on the partition yields none). While a
transaction is ongoing a producer's non-transactional batch is INVALID_TXN_STATE, and a marker
carrying an epoch older than the producer's is INVALID_PRODUCER_EPOCH (a coordinator epoch older
than the last marker's is TRANSACTION_COORDINATOR_FENCED), as in Kafka.

Who appends matters (Kafka's AppendOrigin): a client's Produce passes every check above. The
group coordinator's transactional offset commits (TxnOffsetCommit, KIP-98/KIP-447) are written
by the broker itself, with the producer's id and epoch, the transactional flag and base sequence
0 every time (Kafka's GroupMetadataManager.storeOffsets and, in Kafka 4, CoordinatorRuntime both
build them so): for :attr:`AppendOrigin.COORDINATOR` Kafka skips the sequence and duplicate
checks (ProducerAppendInfo checks sequences for CLIENT appends only, UnifiedLog looks for
duplicates only then) and keeps the epoch and transaction-state ones. Such a batch begins the
producer's transaction on the ``__consumer_offsets`` partition like any transactional batch, so
the marker WriteTxnMarkers appends there later completes it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Sequence
from typing import ClassVar

import attrs
from kio.schema.errors import ErrorCode

from reference_broker.records import BatchHeader, EndTransactionMarker, InvalidRecordError

NO_PRODUCER_ID = -1
NO_SEQUENCE = -1
SEQUENCE_MODULUS = 2**31  # sequences are int32 and wrap from Integer.MAX_VALUE to 0
CACHED_BATCHES = 5  # Kafka's ProducerStateEntry.NUM_BATCHES_TO_RETAIN
DEFAULT_PRODUCER_ID_EXPIRATION_MS = 86_400_000  # producer.id.expiration.ms


class ProducerStateError(Exception):
    """A batch the producer state refuses; ``error_code`` is the Kafka error to answer."""

    error_code: ClassVar[ErrorCode] = ErrorCode.unknown_server_error


class OutOfOrderSequenceError(ProducerStateError):
    """A sequence that does not follow the producer's last one (OUT_OF_ORDER_SEQUENCE_NUMBER)."""

    error_code = ErrorCode.out_of_order_sequence_number


class InvalidProducerEpochError(ProducerStateError):
    """An epoch older than the producer's current one (INVALID_PRODUCER_EPOCH)."""

    error_code = ErrorCode.invalid_producer_epoch


class UnknownProducerIdError(ProducerStateError):
    """A continuing sequence from a producer this partition has no state for
    (UNKNOWN_PRODUCER_ID)."""

    error_code = ErrorCode.unknown_producer_id


class InvalidTxnStateError(ProducerStateError):
    """A non-transactional batch from a producer whose transaction on this partition is still
    ongoing (INVALID_TXN_STATE, Kafka's ProducerAppendInfo.checkProducerEpoch/appendDataBatch)."""

    error_code = ErrorCode.invalid_txn_state


class CoordinatorFencedError(ProducerStateError):
    """A marker from a coordinator epoch older than the one of the producer's last marker
    (TRANSACTION_COORDINATOR_FENCED): a zombie coordinator (Kafka's appendEndTxnMarker)."""

    error_code = ErrorCode.transaction_coordinator_fenced


class AppendOrigin(enum.Enum):
    """Who appends a batch on the leader (Kafka's AppendOrigin; see the module docstring)."""

    CLIENT = "client"  # a Produce request: every check
    COORDINATOR = "coordinator"  # the broker's own coordinators: epoch and transaction state only


def next_sequence(sequence: int, count: int = 1) -> int:
    """The sequence ``count`` records after ``sequence``, with Kafka's int32 wraparound."""
    return (sequence + count) % SEQUENCE_MODULUS


@attrs.frozen(slots=True)
class BatchMetadata:
    """One stored batch of a producer: its sequence range, offset range and timestamp."""

    first_seq: int
    last_seq: int
    first_offset: int
    last_offset: int
    timestamp: int  # the batch's largest record timestamp


@attrs.frozen(slots=True)
class ProducerEntry:
    """A producer as one partition knows it: current epoch and its last batches, oldest first.

    ``batches`` is never empty and holds at most :data:`CACHED_BATCHES` batches, all of the
    current epoch (a new epoch starts the cache afresh, as Kafka's maybeUpdateProducerEpoch);
    after a marker that brought a new epoch it holds that marker alone, with no sequence
    (:data:`NO_SEQUENCE`), so the epoch's first batch must start at sequence 0.
    ``current_txn_first_offset`` is the first offset of the producer's ongoing transaction on
    this partition (None: none is ongoing) and ``coordinator_epoch`` the coordinator epoch of its
    last marker (-1: none yet), Kafka's ProducerStateEntry fields of the same names.
    """

    producer_id: int
    epoch: int
    batches: tuple[BatchMetadata, ...]
    current_txn_first_offset: int | None = None
    coordinator_epoch: int = -1

    @property
    def last_batch(self) -> BatchMetadata:
        return self.batches[-1]

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq

    @property
    def last_offset(self) -> int:
        return self.batches[-1].last_offset

    @property
    def last_timestamp(self) -> int:
        return self.batches[-1].timestamp

    def find_duplicate(self, epoch: int, first_seq: int, last_seq: int) -> BatchMetadata | None:
        """The cached batch a retry with this epoch and sequence range repeats, if any
        (Kafka's ProducerStateEntry.findDuplicateBatch)."""
        if epoch != self.epoch:
            return None
        for batch in self.batches:
            if batch.first_seq == first_seq and batch.last_seq == last_seq:
                return batch
        return None

    def with_batch(self, epoch: int, batch: BatchMetadata) -> ProducerEntry:
        """This entry after ``batch`` was written with ``epoch`` (its transaction, if any,
        stays ongoing)."""
        batches = (batch,) if epoch != self.epoch else (*self.batches, batch)[-CACHED_BATCHES:]
        return attrs.evolve(self, epoch=epoch, batches=batches)


@attrs.frozen(slots=True)
class CompletedTxn:
    """A transaction a marker ended on this partition (Kafka's CompletedTxn): its data lies in
    ``[first_offset, last_offset]``, ``last_offset`` being the marker's offset."""

    producer_id: int
    first_offset: int
    last_offset: int
    is_aborted: bool


@attrs.frozen(slots=True)
class Duplicate:
    """A produce whose batches were all written before: answer with the original offsets."""

    first_offset: int
    last_offset: int
    timestamp: int


def batch_metadata(header: BatchHeader) -> BatchMetadata:
    """What the producer state keeps of a stored batch."""
    return BatchMetadata(
        first_seq=header.base_sequence,
        last_seq=header.last_sequence,
        first_offset=header.base_offset,
        last_offset=header.last_offset,
        timestamp=header.max_timestamp,
    )


def check_client_batch(header: BatchHeader) -> None:
    """Rules Kafka's LogValidator applies to a batch a client produces, on its producer fields.

    Raises records.InvalidRecordError (INVALID_RECORD) for a control batch (only the
    partition leader writes those, for WriteTxnMarkers) and for a producer id without a sequence
    number.

    A transactional batch is accepted from any idempotent producer. Kafka 3.6+ (KIP-890 part 1,
    transaction verification) first asks the transaction coordinator whether the partition was
    added to the producer's ongoing transaction and answers INVALID_TXN_STATE when not; that
    verification arrives with the reference broker's transaction coordinator.
    """
    if header.is_control:
        raise InvalidRecordError("clients are not allowed to write control records")
    if header.producer_id == NO_PRODUCER_ID:
        return
    if header.base_sequence < 0:
        raise InvalidRecordError(
            f"invalid sequence number {header.base_sequence} in a record batch with producer "
            f"id {header.producer_id}"
        )


def check_epoch(producer_id: int, current_epoch: int, epoch: int) -> None:
    """An epoch older than the producer's current one is INVALID_PRODUCER_EPOCH (Kafka's
    ProducerAppendInfo.checkProducerEpoch, for every origin but replication)."""
    if epoch < current_epoch:
        raise InvalidProducerEpochError(
            f"producer id {producer_id} sent epoch {epoch}, older than its current epoch "
            f"{current_epoch}"
        )


def check_txn_state(entry: ProducerEntry | None, header: BatchHeader) -> None:
    """A non-transactional batch while the producer's transaction is ongoing here is
    INVALID_TXN_STATE (Kafka's ProducerAppendInfo.appendDataBatch)."""
    if (
        not header.is_transactional
        and entry is not None
        and entry.current_txn_first_offset is not None
    ):
        raise InvalidTxnStateError(
            f"producer id {header.producer_id} sent a non-transactional batch while its "
            f"transaction from offset {entry.current_txn_first_offset} is ongoing"
        )


def check_sequence(
    producer_id: int, current: tuple[int, int] | None, epoch: int, first_seq: int
) -> None:
    """Judge a batch's epoch and first sequence against the producer's ``(epoch, last sequence)``
    (None: no state for this producer). Kafka's ProducerAppendInfo.checkProducerEpoch and
    checkSequence, with the pre-KIP-360 UNKNOWN_PRODUCER_ID rule (see the module docstring).
    """
    if current is None:
        if first_seq != 0:
            raise UnknownProducerIdError(
                f"no state for producer id {producer_id} on this partition (it expired, or its "
                f"last batch was removed), and its batch starts at sequence {first_seq}, not 0"
            )
        return
    current_epoch, last_seq = current
    check_epoch(producer_id, current_epoch, epoch)
    if epoch > current_epoch:
        if first_seq != 0:
            raise OutOfOrderSequenceError(
                f"producer id {producer_id} starts epoch {epoch} at sequence {first_seq}; "
                "a new epoch must start at 0"
            )
        return
    if first_seq != next_sequence(last_seq):
        raise OutOfOrderSequenceError(
            f"producer id {producer_id} epoch {epoch} sent sequence {first_seq}, expected "
            f"{next_sequence(last_seq)} (its last sequence here is {last_seq})"
        )


class ProducerStateManager:
    """The producer entries of one partition (Kafka's ProducerStateManager, minus its files)."""

    def __init__(
        self, producer_id_expiration_ms: int = DEFAULT_PRODUCER_ID_EXPIRATION_MS
    ) -> None:
        self.producer_id_expiration_ms = producer_id_expiration_ms
        self._producers: dict[int, ProducerEntry] = {}

    def __len__(self) -> int:
        return len(self._producers)

    def entry(self, producer_id: int) -> ProducerEntry | None:
        return self._producers.get(producer_id)

    def entries(self) -> Iterator[ProducerEntry]:
        return iter(list(self._producers.values()))

    def restore(self, entries: Iterable[ProducerEntry]) -> None:
        """Replace the whole state (loading a snapshot)."""
        self._producers = {entry.producer_id: entry for entry in entries}

    def check(
        self, headers: Sequence[BatchHeader], origin: AppendOrigin = AppendOrigin.CLIENT
    ) -> Duplicate | None:
        """Judge the batches of one produce before any offset is assigned; changes nothing.

        Returns None when every batch may be appended, or a :class:`Duplicate` when every batch
        repeats one the partition already holds. Raises a :class:`ProducerStateError` (or
        records.InvalidRecordError) for the first batch that is refused.

        Later batches of the same producer in the same request are judged against the earlier
        ones, as Kafka does with its per-request ProducerAppendInfo. Kafka takes one batch per
        partition per Produce request (v3+) and answers a duplicate from it; a request that
        mixes repeated and new batches of idempotent producers cannot come from a Kafka client
        and is refused with INVALID_RECORD rather than half-written.

        A coordinator's batches (``origin`` COORDINATOR) are never duplicates and have no
        sequence to check: only their epoch and the producer's transaction state are judged.
        """
        if origin is AppendOrigin.COORDINATOR:
            for header in headers:
                if header.producer_id != NO_PRODUCER_ID:
                    entry = self._producers.get(header.producer_id)
                    if entry is not None:
                        check_epoch(header.producer_id, entry.epoch, header.producer_epoch)
                    check_txn_state(entry, header)
            return None
        pending: dict[int, tuple[int, int]] = {}  # producer id -> (epoch, last sequence)
        repeated: list[BatchMetadata] = []
        new = 0
        for header in headers:
            check_client_batch(header)
            producer_id = header.producer_id
            if producer_id == NO_PRODUCER_ID:
                new += 1
                continue
            entry = self._producers.get(producer_id)
            if entry is not None:
                duplicate = entry.find_duplicate(
                    header.producer_epoch, header.base_sequence, header.last_sequence
                )
                if duplicate is not None:
                    repeated.append(duplicate)
                    continue
            current = pending.get(producer_id)
            if current is None and entry is not None:
                current = (entry.epoch, entry.last_seq)
            check_sequence(producer_id, current, header.producer_epoch, header.base_sequence)
            check_txn_state(entry, header)
            pending[producer_id] = (header.producer_epoch, header.last_sequence)
            new += 1
        if not repeated:
            return None
        if new:
            raise InvalidRecordError(
                "the record set mixes batches already written (retries) with new batches; "
                "send one batch per partition per request"
            )
        return Duplicate(repeated[0].first_offset, repeated[-1].last_offset, repeated[-1].timestamp)

    def check_marker(self, producer_id: int, epoch: int, coordinator_epoch: int) -> None:
        """Judge a transaction marker before it is written (Kafka's appendEndTxnMarker with
        origin COORDINATOR): an epoch older than the producer's current one raises
        InvalidProducerEpochError, a coordinator epoch older than its last marker's
        CoordinatorFencedError. A producer this partition has no state for passes: the marker
        may end a transaction that wrote nothing here, or whose batches expired."""
        entry = self._producers.get(producer_id)
        if entry is None:
            return
        if epoch < entry.epoch:
            raise InvalidProducerEpochError(
                f"transaction marker for producer id {producer_id} carries epoch {epoch}, "
                f"older than its current epoch {entry.epoch}"
            )
        if coordinator_epoch < entry.coordinator_epoch:
            raise CoordinatorFencedError(
                f"transaction marker for producer id {producer_id} from coordinator epoch "
                f"{coordinator_epoch}, older than {entry.coordinator_epoch}"
            )

    def update(
        self, header: BatchHeader, marker: EndTransactionMarker | None = None
    ) -> CompletedTxn | None:
        """Record a batch now stored in the log, without checking it; for a control batch
        (whose ``marker`` the caller parsed) return the transaction it completes.

        Batches without a producer id and data batches without a sequence leave the state as
        it is. A marker ends the producer's ongoing transaction; without one (nothing of it was
        written here, or a second marker) it completes nothing, as in Kafka ("Only emit the
        CompletedTxn for non-empty transactions", ProducerAppendInfo.appendEndTxnMarker): an
        empty transaction holds no last stable offset and is no aborted transaction a
        read_committed Fetch lists. A producer this partition knew nothing of gets an entry at
        the marker's epoch (its data may have been compacted away). A marker with a newer epoch (the coordinator fenced the producer, or transaction
        version 2 bumped it) makes that epoch the producer's, as Kafka's
        maybeUpdateProducerEpoch does: a zombie still writing with the old epoch is then
        refused with INVALID_PRODUCER_EPOCH, and the next batch of the new epoch starts at
        sequence 0. The entry then caches the marker alone, as a batch with no sequence.
        """
        if header.producer_id == NO_PRODUCER_ID:
            return None
        entry = self._producers.get(header.producer_id)
        if header.is_control:
            if marker is None:
                return None  # emptied by the cleaner
            first_offset = entry.current_txn_first_offset if entry is not None else None
            if entry is None or header.producer_epoch > entry.epoch:
                entry = ProducerEntry(header.producer_id, header.producer_epoch, (BatchMetadata(
                    NO_SEQUENCE, NO_SEQUENCE, header.base_offset, header.last_offset, header.max_timestamp),))
            self._producers[header.producer_id] = attrs.evolve(
                entry,
                current_txn_first_offset=None,
                coordinator_epoch=marker.coordinator_epoch,
            )
            if first_offset is None:
                return None  # nothing of the transaction here: nothing to index, no LSO to hold
            return CompletedTxn(
                header.producer_id, first_offset, header.last_offset, marker.is_abort
            )
        if header.base_sequence < 0:
            return None
        batch = batch_metadata(header)
        if entry is None:
            entry = ProducerEntry(header.producer_id, header.producer_epoch, (batch,))
        else:
            entry = entry.with_batch(header.producer_epoch, batch)
        if header.is_transactional and entry.current_txn_first_offset is None:
            entry = attrs.evolve(entry, current_txn_first_offset=header.base_offset)
        self._producers[header.producer_id] = entry
        return None

    def ongoing_transactions(self) -> list[tuple[int, int]]:
        """(first offset, producer id) of every ongoing transaction, oldest first (Kafka's
        ProducerStateManager.ongoingTxns)."""
        return sorted(
            (entry.current_txn_first_offset, entry.producer_id)
            for entry in self._producers.values()
            if entry.current_txn_first_offset is not None
        )

    def first_ongoing_offset(self, excluding_producer: int = NO_PRODUCER_ID) -> int | None:
        """The smallest first offset of the ongoing transactions (of producers other than
        ``excluding_producer``), or None when there is none."""
        # Asked on every Fetch (the last stable offset): one pass, no sorted list.
        return min(
            (entry.current_txn_first_offset for entry in self._producers.values()
             if entry.current_txn_first_offset is not None and entry.producer_id != excluding_producer),
            default=None,
        )

    def is_expired(self, entry: ProducerEntry, now_ms: int) -> bool:
        """Kafka's isProducerExpired: idle for producer.id.expiration.ms and no transaction
        ongoing (an open transaction holds the last stable offset, so it must not be lost)."""
        return (
            entry.current_txn_first_offset is None
            and now_ms - entry.last_timestamp >= self.producer_id_expiration_ms
        )

    def remove_expired(self, now_ms: int) -> list[int]:
        """Forget every producer idle for producer.id.expiration.ms; returns their ids."""
        expired = [pid for pid, entry in self._producers.items() if self.is_expired(entry, now_ms)]
        for producer_id in expired:
            del self._producers[producer_id]
        return expired
