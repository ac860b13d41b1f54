"""The transactional checkers' shared view of a history, derived once from the index.

Every transactional check needs the same few tables: each transaction (its sends, polls,
offsets, outcome and timing), which transaction wrote each value, and what read_committed
readers read. The last one is the expensive part (a dict lookup per record read), so one pass
computes what three checks need from it (`ReadCommittedReads`): the aborted values read, the
reads that completed before their writer asked to commit, and which readers saw which
committed values.

A read is **read_committed** when its poll asked for that isolation level, or it is a poll
micro-operation of a transaction that did (docs/history-format.md).
"""

from __future__ import annotations

from typing import Any

import attrs

from harness.history.format import READ_COMMITTED
from harness.history.index import NEVER, DerivedView
from harness.history.load import History
from specs.transactions import Outcome, must_be_visible, outcome_of

Record = list[Any]  # [topic, partition, offset, key, value]


class Txn:
    """One transaction of the history (plain slots: a history holds hundreds of thousands)."""

    __slots__ = ("id", "process", "completion", "outcome", "read_committed", "end_invoked", "done_time", "writes",
                 "polls", "offsets")

    def __init__(self, invoke: dict[str, Any], completion: dict[str, Any] | None) -> None:
        v = invoke["value"]
        self.id: int = invoke["index"]
        self.process: str = invoke["process"]
        self.read_committed = v.get("isolation_level") == READ_COMMITTED
        self.polls: list[list[Record]] = []
        self.offsets: list[tuple[str, list[list[Any]]]] = []  # (group, [[topic, partition, offset]])
        # (value, topic, partition or None, offset or None): the completed sends, then the intended
        # ones that did not complete (they may be in the log)
        self.writes: list[tuple[str, str, int | None, int | None]] = []
        ops = None
        if completion is None:
            self.completion: int | None = None
            self.done_time = NEVER
            self.end_invoked: int | None = None
            self.outcome = Outcome.UNKNOWN
        else:
            done = completion["value"]
            self.completion = completion["index"]
            self.done_time = completion["time"]
            self.end_invoked = done.get("end_invoked")
            self.outcome = outcome_of(completion["type"], done.get("outcome"))
            ops = done.get("ops")
        writes = self.writes
        for op in ops or ():
            kind = op[0]
            if kind == "send":
                writes.append((op[4], op[1], op[2], op[5]))
            elif kind == "poll":
                self.polls.append(op[1])
            else:
                self.offsets.append((op[1], op[2]))
        intended = [op for op in v["ops"] if op[0] == "send"]
        if intended:
            done_values = {w[0] for w in writes}
            writes.extend((op[4], op[1], op[2], None) for op in intended if op[4] not in done_values)

    @property
    def events(self) -> tuple[int, ...]:
        """Its invocation and, when it has one, its completion."""
        return (self.id,) if self.completion is None else (self.id, self.completion)

    @property
    def reads_done_by(self) -> int:
        """A time by which its polls had returned: when it asked to end, else its completion."""
        return self.end_invoked if self.end_invoked is not None else self.done_time

    def describe(self) -> str:
        return f"{self.process}'s transaction #{self.id} ({self.outcome.value})"


@attrs.define
class ReadCommittedReads:
    """What read_committed readers read of transactional values, from one pass over their reads.

    - `aborted`: (record, its writer, the read event, the reader) for each aborted record read;
    - `early`: (record, its writer, the read event, the reader) for each record of a transaction
      not known to have aborted, read by a poll that had returned before that transaction asked to
      end (or by the transaction itself).
    """

    aborted: list[tuple[Record, Txn, int, str]] = attrs.field(factory=list)
    early: list[tuple[Record, Txn, int, str]] = attrs.field(factory=list)


class TxnView:
    """The transactions of a history and who wrote each transactional value."""

    def __init__(self, history: History) -> None:
        ix = history.index
        raw = history.raw
        self.history = history
        completions = ix.completions
        self.txns = [Txn(raw[i], completions.get(i)) for i in ix.txns]
        self.by_id = {t.id: t for t in self.txns}
        self.writer: dict[str, Txn] = {}
        # value -> what a read_committed read of it must be compared with: -1 when its writer
        # aborted, else the time its writer asked to end (0 when unknown: never later than a read)
        self._end_of: dict[str, int] = {}
        for t in self.txns:
            end = -1 if t.outcome is Outcome.ABORTED else t.end_invoked or 0
            for w in t.writes:
                self.writer[w[0]] = t
                self._end_of[w[0]] = end
        self._read_committed_polls = frozenset(ix.read_committed_polls)

    def reads_committed(self, event: int) -> bool:
        """Whether the read at `event` (a poll completion or a transaction's completion) was
        read_committed."""
        if event in self._read_committed_polls:
            return True
        txn = self.by_id.get(self.history.raw[event].get("invoke", -1))
        return txn is not None and txn.read_committed

    def invisible_to_read_committed(self, value: str) -> bool:
        """Whether a read_committed reader may skip `value`: its transaction did not certainly commit."""
        w = self.writer.get(value)
        return w is not None and not must_be_visible(w.outcome)

    def committed(self) -> list[Txn]:
        return [t for t in self.txns if t.outcome is Outcome.COMMITTED]

    def read_committed_reads(self) -> ReadCommittedReads:
        """The one pass over read_committed reads (cached on the history's index)."""
        return self.history.index.derived(READ_COMMITTED_READS, self._scan_reads)

    def _reads(self, processes: frozenset[str] | None = None) -> list[tuple[int, str, list[Record], Txn | None, int]]:
        """Every read_committed read (of `processes`, default all): (event, reader, records, the
        reader's transaction or None, a time by which it had returned)."""
        raw = self.history.raw
        reads: list[tuple[int, str, list[Record], Txn | None, int]] = [
            (i, raw[i]["process"], raw[i]["value"]["records"], None, raw[i]["time"])
            for i in self.history.index.read_committed_polls
            if processes is None or raw[i]["process"] in processes]
        reads += [(t.completion, t.process, records, t, t.reads_done_by)
                  for t in self.txns if t.read_committed and t.completion is not None
                  and (processes is None or t.process in processes) for records in t.polls]
        return reads

    def _scan_reads(self) -> ReadCommittedReads:
        out = ReadCommittedReads()
        end_of = self._end_of.get
        # The hot loop (every record a read_committed reader read): one lookup, one comparison.
        suspects = [(record, event, process)
                    for event, process, records, _reader, done in self._reads()
                    for record in records
                    if (end := end_of(record[4])) is not None and (end < 0 or done < end)]
        writer = self.writer
        for record, event, process in suspects:
            w = writer[record[4]]
            (out.aborted if w.outcome is Outcome.ABORTED else out.early).append((record, w, event, process))
        # A transaction that polls its own write reads an open transaction's record.
        for t in self.txns:
            if t.read_committed and t.polls and t.writes and t.completion is not None:
                mine = {w[0] for w in t.writes}
                out.early.extend((record, t, t.completion, t.process) for records in t.polls
                                 for record in records if record[4] in mine and t.outcome is not Outcome.ABORTED)
        return out

    def seen_by(self, processes: frozenset[str]) -> dict[str, dict[str, int]]:
        """For each of `processes`, every transactional value it read read_committed, with the
        first event that returned it (one pass over their reads: checks call it for few readers)."""
        out: dict[str, dict[str, int]] = {p: {} for p in processes}
        writer = self.writer
        for event, process, records, _reader, _done in self._reads(processes):
            mine = out[process]
            for record in records:
                if record[4] in writer and record[4] not in mine:
                    mine[record[4]] = event
        return out


TXN_VIEW: DerivedView[TxnView] = DerivedView("transactions")
READ_COMMITTED_READS: DerivedView[ReadCommittedReads] = DerivedView("read-committed-reads")


def txn_view(history: History) -> TxnView:
    """The history's transactions (derived once, shared by the checks)."""
    return history.index.derived(TXN_VIEW, lambda: TxnView(history))

