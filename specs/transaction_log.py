"""The partition logs transactions write (KIP-98), record by record and marker by marker, and
what a read_committed reader of them keeps.

Theory of operation. `specs.transactions` judges what readers saw from what clients knew; this
module says what a broker's logs hold, offset by offset, while transactional producers,
idempotent producers and plain producers write to the same partitions, so that every Fetch and
ListOffsets answer can be compared with it exactly (the transaction state machine,
`harness/stateful/txn_machine.py`, does):

- a transaction begins open; AddPartitionsToTxn adds partitions to it, and its batches take
  the next offsets of a partition like anyone else's, interleaved with other writers';
- ending it (EndTxn, or the abort a new instance of its transactional id causes) appends one
  *marker* (a control batch of one record: COMMIT or ABORT) to **every partition added**,
  written to or not, each taking one offset (KIP-98, "Transactional messaging"; Kafka's
  coordinator writes a marker to each partition of the transaction's metadata);
- a partition's **last stable offset** (LSO) is the first offset of its oldest transaction still
  open there (one that wrote a record to it), else the high watermark; the model's logs are
  fully replicated (every write is acknowledged with acks=all and the markers are waited for),
  so the high watermark is the log end;
- a read_committed Fetch returns only batches below the LSO, and lists the aborted transactions
  (producer id, first offset in the partition) so that the consumer can drop their records.
  Kafka lists only transactions that wrote a record to the partition: a marker without data
  "would not need to be reflected in the transaction index" (Kafka's
  ProducerAppendInfo.appendEndTxnMarker);
- the records a read_committed consumer keeps from a fetch at offset ``o`` are therefore exactly
  the records in ``[o, LSO)`` that no aborted transaction wrote (`specs.transactions.
  read_committed_view`): records outside transactions and committed ones.

:func:`read_committed_offsets` is the consumer's half: given the batches of a read_committed
Fetch answer and its aborted-transaction list, which records Kafka's Java consumer hands to the
application (``CompletedFetch.nextFetchedRecord``). Comparing its result with the model's
:meth:`TransactionLog.read_committed` checks the LSO, the batches and the aborted list at once,
the way they matter: a broker that lists an aborted transaction too few serves aborted records
(G1a, aborted read), one that lists one too many hides committed ones.

The model is a value: every operation returns a new `TransactionLog`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping, Sequence

import attrs

from specs.transactions import Outcome, read_committed_view
from specs.types import Offset, TopicPartition

NO_PRODUCER_ID = -1
"""The producer id of a batch written without one (a plain, non-idempotent producer)."""


class TxnState(enum.Enum):
    """Where a transaction is, as the broker must see it once the step that changed it is over."""

    OPEN = "open"
    COMMITTED = "committed"
    ABORTED = "aborted"


OUTCOMES: Mapping[TxnState, Outcome] = {
    TxnState.OPEN: Outcome.UNKNOWN, TxnState.COMMITTED: Outcome.COMMITTED, TxnState.ABORTED: Outcome.ABORTED,
}


@attrs.frozen
class Appended:
    """A data record in a partition: its value, its producer and its transaction (None: written
    outside any transaction)."""

    offset: Offset
    value: str
    producer_id: int = NO_PRODUCER_ID
    transaction: int | None = None


@attrs.frozen
class Marker:
    """A transaction marker (KIP-98): the control batch that ends ``transaction`` in a partition."""

    offset: Offset
    producer_id: int
    transaction: int
    commit: bool

    @property
    def kind(self) -> str:
        """Kafka's ControlRecordType name."""
        return "COMMIT" if self.commit else "ABORT"


Entry = Appended | Marker


@attrs.frozen
class Transaction:
    """One transaction: its producer, its state, the partitions added to it."""

    producer_id: int
    state: TxnState = TxnState.OPEN
    partitions: frozenset[TopicPartition] = frozenset()


class TransactionRuleError(ValueError):
    """An operation the transaction protocol does not allow (the model's caller is wrong)."""


@attrs.frozen
class TransactionLog:
    """Partition logs starting at offset 0 (nothing is ever deleted) and the transactions that
    wrote to them, numbered from 0 in the order they began."""

    logs: Mapping[TopicPartition, tuple[Entry, ...]] = attrs.field(factory=dict)
    transactions: tuple[Transaction, ...] = ()

    # --- writing -------------------------------------------------------------------------------

    def begin(self, producer_id: int, partitions: Iterable[TopicPartition]) -> tuple[TransactionLog, int]:
        """A new open transaction of ``producer_id`` with ``partitions`` added; its number."""
        txn = Transaction(producer_id, partitions=frozenset(partitions))
        return attrs.evolve(self, transactions=(*self.transactions, txn)), len(self.transactions)

    def add(self, transaction: int, partitions: Iterable[TopicPartition]) -> TransactionLog:
        """AddPartitionsToTxn: ``partitions`` join the open ``transaction``."""
        txn = self._open(transaction)
        return self._replace(transaction, attrs.evolve(txn, partitions=txn.partitions | frozenset(partitions)))

    def append(self, tp: TopicPartition, values: Sequence[str], producer_id: int = NO_PRODUCER_ID,
               transaction: int | None = None) -> tuple[TransactionLog, Offset]:
        """One batch at the end of ``tp`` (of ``transaction``, which must be open and have ``tp``
        added); the new model and the batch's base offset."""
        if transaction is not None and tp not in self._open(transaction).partitions:
            raise TransactionRuleError(f"transaction {transaction} writes to {tp}, which was never added to it")
        base = self.end_offset(tp)
        batch = tuple(Appended(Offset(base + i), v, producer_id, transaction) for i, v in enumerate(values))
        return self._with_entries(tp, batch), base

    def end(self, transaction: int, commit: bool) -> tuple[TransactionLog, dict[TopicPartition, Marker]]:
        """End the open ``transaction``: a marker at the end of every partition added to it.
        Returns the new model and each partition's marker."""
        txn = self._open(transaction)
        model = self._replace(transaction, attrs.evolve(
            txn, state=TxnState.COMMITTED if commit else TxnState.ABORTED))
        markers: dict[TopicPartition, Marker] = {}
        for tp in sorted(txn.partitions):
            markers[tp] = Marker(model.end_offset(tp), txn.producer_id, transaction, commit)
            model = model._with_entries(tp, (markers[tp],))
        return model, markers

    # --- reading -------------------------------------------------------------------------------

    def state(self, transaction: int) -> TxnState:
        return self.transactions[transaction].state

    def entries(self, tp: TopicPartition, start: int = 0, end: int | None = None) -> tuple[Entry, ...]:
        """The records and markers of ``tp`` in ``[start, end)`` (end: the log end)."""
        log = self.logs.get(tp, ())
        return log[max(start, 0):len(log) if end is None else max(end, 0)]

    def end_offset(self, tp: TopicPartition) -> Offset:
        """The log end offset of ``tp`` (and its high watermark: the model is fully replicated)."""
        return Offset(len(self.logs.get(tp, ())))

    def first_offsets(self, tp: TopicPartition) -> dict[int, Offset]:
        """Each transaction's first record in ``tp``, for those that wrote one."""
        first: dict[int, Offset] = {}
        for entry in self._records(tp):
            if entry.transaction is not None:
                first.setdefault(entry.transaction, entry.offset)
        return first

    def last_stable_offset(self, tp: TopicPartition) -> Offset:
        """The first offset of the oldest transaction still open in ``tp``, else the high
        watermark (KIP-98)."""
        held = [o for txn, o in self.first_offsets(tp).items() if self.state(txn) is TxnState.OPEN]
        return min(held, default=self.end_offset(tp))

    def aborted_transactions(self, tp: TopicPartition) -> frozenset[tuple[int, Offset]]:
        """(producer id, first offset) of each aborted transaction that wrote a record to ``tp``:
        what a read_committed Fetch lists, those its range overlaps."""
        return frozenset((self.transactions[txn].producer_id, offset) for txn, offset in self.first_offsets(tp).items()
                         if self.state(txn) is TxnState.ABORTED)

    def read_committed(self, tp: TopicPartition, start: int) -> tuple[Appended, ...]:
        """The records a read_committed consumer fetching ``tp`` from ``start`` keeps: those
        below the LSO that no aborted transaction wrote."""
        records = [e for e in self._records(tp) if e.offset >= start]
        view = [(e.offset, self._outcome(e)) for e in records]
        kept = set(read_committed_view(view, self.last_stable_offset(tp)))
        return tuple(e for e in records if e.offset in kept)

    # --- helpers -------------------------------------------------------------------------------

    def _records(self, tp: TopicPartition) -> Iterator[Appended]:
        return (e for e in self.logs.get(tp, ()) if isinstance(e, Appended))

    def _outcome(self, record: Appended) -> Outcome | None:
        return None if record.transaction is None else OUTCOMES[self.state(record.transaction)]

    def _open(self, transaction: int) -> Transaction:
        txn = self.transactions[transaction]
        if txn.state is not TxnState.OPEN:
            raise TransactionRuleError(f"transaction {transaction} is {txn.state.value}, not open")
        return txn

    def _replace(self, transaction: int, txn: Transaction) -> TransactionLog:
        txns = list(self.transactions)
        txns[transaction] = txn
        return attrs.evolve(self, transactions=tuple(txns))

    def _with_entries(self, tp: TopicPartition, entries: tuple[Entry, ...]) -> TransactionLog:
        return attrs.evolve(self, logs={**self.logs, tp: self.logs.get(tp, ()) + entries})


@attrs.frozen
class FetchedBatch:
    """One record batch of a Fetch answer as a consumer sees it: its header's last offset,
    producer id, transactional and control bits, whether it is an ABORT marker, and the
    offsets of its data records."""

    last_offset: int
    producer_id: int = NO_PRODUCER_ID
    transactional: bool = False
    control: bool = False
    abort_marker: bool = False
    offsets: tuple[int, ...] = ()


def read_committed_offsets(batches: Sequence[FetchedBatch], aborted: Iterable[tuple[int, int]],
                           fetch_offset: int) -> tuple[int, ...]:
    """The offsets of the records a read_committed consumer hands to the application from one
    Fetch answer at ``fetch_offset``: its batches, in order, and its aborted-transaction list
    of (producer id, first offset).

    Kafka's Java consumer (``CompletedFetch.nextFetchedRecord``): before each batch with a
    producer id, every listed transaction whose first offset is at or below the batch's last
    offset makes its producer *aborted*; an ABORT marker of an aborted producer ends that; a
    transactional data batch of an aborted producer is skipped whole. Control batches are never
    handed over, nor records below the fetch offset (a batch may start before it)."""
    pending = sorted(aborted, key=lambda entry: entry[1])
    aborted_producers: set[int] = set()
    kept: list[int] = []
    for batch in batches:
        if batch.producer_id != NO_PRODUCER_ID:
            while pending and pending[0][1] <= batch.last_offset:
                aborted_producers.add(pending.pop(0)[0])
            if batch.abort_marker:
                aborted_producers.discard(batch.producer_id)
            elif batch.transactional and batch.producer_id in aborted_producers:
                continue
        if not batch.control:
            kept.extend(o for o in batch.offsets if o >= fetch_offset)
    return tuple(kept)


__all__ = [
    "NO_PRODUCER_ID",
    "Appended",
    "Entry",
    "FetchedBatch",
    "Marker",
    "Transaction",
    "TransactionLog",
    "TransactionRuleError",
    "TxnState",
    "read_committed_offsets",
]
