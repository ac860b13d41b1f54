"""Kafka transactions (KIP-98, KIP-447) as a pure model: what a transaction wrote, how it ended,
what read_committed readers may see, and which anomalies Kafka's transactions rule out.

Theory of operation. A transactional producer appends its records to each partition as it sends
them, interleaved with everyone else's; nothing is buffered. Ending the transaction
(`commitTransaction` or `abortTransaction`) makes the coordinator write a COMMIT or ABORT
*marker* into every partition the transaction wrote to, one partition at a time (KIP-98,
"Transactional messaging"). A partition's **last stable offset** (LSO) is the first offset of
its oldest transaction without a marker, capped by the high watermark (`specs.log`). A
`read_committed` consumer reads only below the LSO and skips aborted records (KIP-98, "Reading
transactional messages"); a `read_uncommitted` consumer reads everything below the high
watermark. So for a read_committed reader:

- a record of a **committed** transaction must be visible once the LSO has passed it;
- a record of an **aborted** transaction is never visible (reading one is G1a, aborted read);
- a record of a transaction still **open** is not visible yet (reading one is G1b: the log's
  intermediate state);
- a record of a transaction whose outcome the client never learnt may be either.

Kafka's transactions make a transaction's writes atomic for readers and, with
`sendOffsetsToTransaction`, make consumed offsets commit with the output (KIP-447): each input
record processed by exactly one committed transaction. They do **not** isolate transactions
from each other: two open transactions append to the same partitions at once, and the log order
(a *ww* dependency: one's record precedes the other's) says nothing about which commits first.
Adya's cycles over ww edges are therefore allowed (G0, and G1c through ww edges), as Jepsen's
Kafka workload allows them; a cycle of *wr* edges alone (each transaction read another's
committed write) is impossible, since a transaction polls before it commits and a record is
visible only after its transaction committed: such a cycle proves that some read saw an
uncommitted record (G1b). read_committed is no snapshot: a reader may see one partition's
marker before another's, or simply read one partition further than another, so a read that
misses a later write (an *rw* edge) is allowed too (G-single is not ruled out).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence

import attrs

from specs.types import Offset, TopicPartition

TRANSACTION_TIMEOUT_MS = 60_000
"""The producer's default `transaction.timeout.ms`: the coordinator aborts a transaction open longer."""
ABORT_CHECK_INTERVAL_MS = 10_000
"""The broker's default `transaction.abort.timed.out.transaction.cleanup.interval.ms`: how often the
coordinator looks for transactions past their timeout."""


class Outcome(enum.Enum):
    """How a transaction ended, as far as its client knows."""

    COMMITTED = "committed"
    ABORTED = "aborted"
    UNKNOWN = "unknown"


def outcome_of(completion: str | None, ended: str | None = None) -> Outcome:
    """A transaction's outcome from its completion type (`ok`, `fail`, `info`, None when it never
    completed) and, for `ok`, how it ended (`commit` or `abort`). A `fail` certainly did not
    commit; an `info` (a timeout, a lost connection) may have."""
    if completion == "ok":
        return Outcome.COMMITTED if ended == "commit" else Outcome.ABORTED
    if completion == "fail":
        return Outcome.ABORTED
    return Outcome.UNKNOWN


def may_be_visible(outcome: Outcome | None) -> bool:
    """Whether a read_committed reader may see a record written with this outcome (None: not in a
    transaction, always visible below the LSO)."""
    return outcome is not Outcome.ABORTED


def must_be_visible(outcome: Outcome | None) -> bool:
    """Whether a read_committed reader that reads past the record must have seen it."""
    return outcome is None or outcome is Outcome.COMMITTED


@attrs.frozen
class TxnRecord:
    """One record a transaction sent: where it went and, when known, the offset it got."""

    partition: TopicPartition
    value: str
    key: str | None = None
    offset: Offset | None = None


@attrs.frozen
class Transaction:
    """One transaction: its records, what it read, the offsets it committed for a consumer group
    (consume-transform-produce, KIP-447), how it ended and when its end was asked for."""

    id: int
    process: str
    outcome: Outcome
    writes: tuple[TxnRecord, ...] = ()
    reads: tuple[tuple[TopicPartition, Offset, str], ...] = ()
    offsets: Mapping[str, Mapping[TopicPartition, Offset]] = attrs.field(factory=dict)
    read_committed: bool = True
    end_invoked: int | None = None  # monotonic ns, the history's clock

    def partitions(self) -> frozenset[TopicPartition]:
        """The partitions it wrote to (each gets a marker when it ends)."""
        return frozenset(w.partition for w in self.writes)


def read_committed_view(log: Sequence[tuple[Offset, Outcome | None]], last_stable_offset: Offset) -> tuple[Offset, ...]:
    """The offsets a read_committed reader is given from one partition: the records below the LSO
    whose writer did not abort (`log` lists each record's offset and its transaction's outcome,
    None for a record outside any transaction; markers are not records)."""
    return tuple(o for o, outcome in log if o < last_stable_offset and outcome is not Outcome.ABORTED)


def stable_offsets_consistent(last_stable_offset: int, high_watermark: int) -> bool:
    """One answer's LSO never exceeds its high watermark (KIP-98: the LSO is capped by it)."""
    return last_stable_offset <= high_watermark


def passes_open_transaction(last_stable_offset: int, first_offset: int) -> bool:
    """Whether an LSO is past a record of a transaction that was open at the time: it must stay
    at or below the transaction's first offset in the partition until its marker is written."""
    return last_stable_offset > first_offset


def hanging(stuck_ns: int, timeout_ms: int = TRANSACTION_TIMEOUT_MS,
            check_interval_ms: int = ABORT_CHECK_INTERVAL_MS) -> bool:
    """Whether an LSO held below the high watermark for `stuck_ns` proves a hanging transaction:
    the transaction at the LSO stayed open longer than its timeout plus the coordinator's check
    interval, so the coordinator failed to abort it (KIP-664 calls these hanging transactions)."""
    return stuck_ns > (timeout_ms + check_interval_ms) * 1_000_000


class Dependency(enum.Enum):
    """An edge of Adya's direct serialization graph between two committed transactions."""

    WW = "ww"  # the first one's record precedes the second one's in a partition's log
    WR = "wr"  # the second one read a record the first one wrote
    RW = "rw"  # the first one read a partition up to an offset below a record the second one wrote


def cycle_anomaly(edges: Iterable[Dependency]) -> str:
    """Adya's name for a cycle with these edges (Elle's): G0 all ww, G1c ww and wr with at least
    one wr, G-single exactly one rw, G2 more rw."""
    kinds = list(edges)
    rw = kinds.count(Dependency.RW)
    if rw == 1:
        return "G-single"
    if rw > 1:
        return "G2"
    return "G1c" if Dependency.WR in kinds else "G0"


KAFKA_ALLOWS: Mapping[str, str] = {
    "G0": ("Kafka's transactions do not isolate writes: open transactions append to the same partitions "
           "at once, and the log order does not follow the commit order (Jepsen's Kafka workload allows G0)"),
    "G1c": ("a cycle through ww edges: the log order of two transactions' records says nothing about which "
            "committed first, so Kafka allows it (a cycle of wr edges alone is impossible and is reported as G1b)"),
    "G-single": ("read_committed is not a snapshot: a reader may see one partition's commit marker before "
                 "another's, or read one partition less far than another, so missing a later write is allowed"),
}
"""The dependency cycles Kafka's transactions do not rule out, with the reason (module docstring)."""
