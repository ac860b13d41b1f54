"""The model of one partition log: contiguous offsets, log start offset, high watermark, log end.

Theory of operation. A partition is an append-only sequence of records; the broker gives each
appended record the next offset, so offsets are contiguous and increase monotonically (Kafka
documentation 1.1, "Topics and Logs"). Three positions describe it:

- the **log start offset**: the first offset still in the log. It only moves forward, by
  retention or DeleteRecords (KIP-107), and never past the high watermark;
- the **high watermark** (HW): the first offset not yet replicated to every in-sync replica.
  Records below it are *committed* and only committed records are given to consumers (Kafka
  documentation 4.7, "Replication": "Only committed messages are ever given out to the
  consumer"). On a leader it never moves backwards;
- the **log end offset** (LEO): the offset the next appended record will get.

`log_start_offset <= last_stable_offset <= high_watermark <= log_end_offset` always holds. The
last stable offset (LSO, KIP-98) is the first offset of the oldest open transaction, capped by
the high watermark; `read_committed` consumers read only below it.

Followers truncate uncommitted suffixes after a leader change (KIP-101, leader epochs). Only an
unclean leader election (`unclean.leader.election.enable=true`, Kafka documentation 4.7
"Unclean leader election: What if they all die?") may remove committed records; the model
refuses that unless it is asked for explicitly.

The model is a value: every operation returns a new `LogModel`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import attrs

from specs.types import Offset


@attrs.frozen
class ModelRecord:
    """One record as the model sees it: a value id, an optional key id and a timestamp (ms)."""

    value: str
    key: str | None = None
    timestamp: int = -1


class LogRuleError(ValueError):
    """An operation that Kafka's rules forbid (the message names the rule)."""


def _check_positions(instance: LogModel, _attribute: object, _value: object) -> None:
    start, hw, end = instance.log_start_offset, instance.high_watermark, instance.log_end_offset
    if start < 0:
        raise LogRuleError(f"log start offset {start} is negative")
    if not start <= hw <= end:
        raise LogRuleError(
            f"positions out of order: log start {start}, high watermark {hw}, log end {end}"
        )
    first_open = instance.first_open_transaction_offset
    if first_open is not None and not start <= first_open < end:
        raise LogRuleError(f"open transaction at {first_open} is outside the log [{start}, {end})")


@attrs.frozen
class LogModel:
    """One partition log: `records[i]` is at offset `log_start_offset + i`."""

    log_start_offset: Offset = attrs.field(default=Offset(0))
    high_watermark: Offset = attrs.field(default=Offset(0))
    records: tuple[ModelRecord, ...] = attrs.field(default=(), validator=_check_positions)
    first_open_transaction_offset: Offset | None = None

    @property
    def log_end_offset(self) -> Offset:
        """The offset the next appended record gets."""
        return Offset(self.log_start_offset + len(self.records))

    @property
    def last_stable_offset(self) -> Offset:
        """The LSO (KIP-98): below every open transaction and never above the high watermark."""
        if self.first_open_transaction_offset is None:
            return self.high_watermark
        return Offset(min(self.first_open_transaction_offset, self.high_watermark))

    def at(self, offset: Offset) -> ModelRecord | None:
        """The record at `offset`, or None when the offset is outside the log."""
        if self.log_start_offset <= offset < self.log_end_offset:
            return self.records[offset - self.log_start_offset]
        return None

    def entries(self, start: Offset | None = None, end: Offset | None = None) -> Iterator[tuple[Offset, ModelRecord]]:
        """(offset, record) pairs in [start, end), clipped to the log."""
        lo = self.log_start_offset if start is None else max(start, self.log_start_offset)
        hi = self.log_end_offset if end is None else min(end, self.log_end_offset)
        for offset in range(lo, hi):
            yield Offset(offset), self.records[offset - self.log_start_offset]

    def append(self, records: Iterable[ModelRecord]) -> tuple[LogModel, Offset]:
        """Append records at the log end; returns the new log and the base (first) offset.

        Offsets are assigned by the broker, contiguously from the log end offset (Kafka
        documentation 1.1). An empty append is allowed and assigns nothing.
        """
        base = self.log_end_offset
        return attrs.evolve(self, records=self.records + tuple(records)), base

    def advance_high_watermark(self, to: Offset) -> LogModel:
        """Move the high watermark forward to `to` (replication caught up to it).

        The leader's HW never moves backwards and never passes the log end offset (Kafka
        documentation 4.7; KIP-101).
        """
        if to < self.high_watermark:
            raise LogRuleError(f"high watermark cannot move back from {self.high_watermark} to {to}")
        if to > self.log_end_offset:
            raise LogRuleError(f"high watermark {to} would pass the log end offset {self.log_end_offset}")
        return attrs.evolve(self, high_watermark=to)

    def truncate_to(self, offset: Offset, *, unclean: bool = False) -> LogModel:
        """Remove every record at or after `offset` (a follower truncating to the leader, KIP-101).

        Truncating below the high watermark removes committed records: only an unclean leader
        election may do that, so it needs `unclean=True`. The HW then drops to the new log end.
        """
        if offset >= self.log_end_offset:
            return self
        if offset < self.log_start_offset:
            raise LogRuleError(f"cannot truncate to {offset}, before the log start {self.log_start_offset}")
        if offset < self.high_watermark and not unclean:
            raise LogRuleError(
                f"truncating to {offset} would remove committed records below the high watermark "
                f"{self.high_watermark}; only an unclean leader election may do that"
            )
        open_txn = self.first_open_transaction_offset
        return LogModel(
            log_start_offset=self.log_start_offset,
            high_watermark=Offset(min(self.high_watermark, offset)),
            records=self.records[: offset - self.log_start_offset],
            first_open_transaction_offset=open_txn if open_txn is not None and open_txn < offset else None,
        )

    def delete_before(self, offset: Offset) -> LogModel:
        """Advance the log start offset to `offset` (retention or DeleteRecords, KIP-107).

        The log start offset never moves backwards and never passes the high watermark.
        """
        if offset <= self.log_start_offset:
            return self
        if offset > self.high_watermark:
            raise LogRuleError(
                f"log start offset {offset} cannot pass the high watermark {self.high_watermark}"
            )
        if offset > self.last_stable_offset:
            # The model keeps the records of an open transaction until it ends.
            raise LogRuleError(
                f"log start offset {offset} cannot pass the last stable offset {self.last_stable_offset}"
            )
        return attrs.evolve(
            self,
            log_start_offset=offset,
            records=self.records[offset - self.log_start_offset :],
        )

    def committed(self) -> tuple[ModelRecord, ...]:
        """The committed records: those below the high watermark."""
        return self.records[: self.high_watermark - self.log_start_offset]
