"""Checkers of the log itself, joining writes to reads: what is at each offset, and what is missing.

- inconsistent-offsets: one (partition, offset) seen holding two different values (by acks or reads).
- duplicate: one value seen at more than one offset.
- lost-write: an acknowledged write never read, although a consumer read past its offset in one
  run (it read a lower and a higher offset of the partition in succession, with no seek or
  rebalance between), so the log it read did not have the write; or an acknowledged write
  whose own offset a consumer that started reading after the acknowledgement found holding
  another value (the write was replaced: a failover that reused its offset), read before or not.
- unseen: an acknowledged write never read although a drain that started after its
  acknowledgement read its partition to the end (and it is not a lost-write).
- aborted-read (G1a): a read returned a value whose send definitely failed, or a read_committed
  read returned a record of a transaction that certainly did not commit
  (harness/checkers/transactions.py).

Values whose send is `info` (or still pending) may or may not be in the log: they are never
lost or unseen, and reading them is fine.
"""

from __future__ import annotations

from harness.checkers._common import Intervals, checker, tp_name, with_invocation, write_events
from harness.checkers.attribution import BROKER_ANSWERS, BatchIdentities, duplicate_attribution
from harness.checkers.result import Anomaly, CheckResult
from harness.checkers.transactions import aborted_txn_reads
from harness.history.index import DerivedView, HistoryIndex, Write
from harness.history.load import History

# Views several checks share (computed once per history).
DUPLICATE_IDENTITIES: DerivedView[BatchIdentities] = DerivedView("duplicate-identities")
ACKED_UNREAD: DerivedView[list[Write]] = DerivedView("acked-unread")
LOST: DerivedView[dict[str, tuple[Write, int, int]]] = DerivedView("lost")
REPLACED: DerivedView[dict[str, tuple[Write, int]]] = DerivedView("replaced")


@checker
def inconsistent_offsets(history: History) -> CheckResult:
    """One (topic, partition, offset) observed holding more than one value."""
    ix = history.index
    anomalies = []
    for (t, p, o), values in sorted(ix.offset_conflicts.items()):
        events = [e for idx in values.values() for e in with_invocation(history, ix, idx)]
        shown = ", ".join(repr(v) for v in sorted(values))
        anomalies.append(Anomaly("inconsistent-offsets",
                                 f"{tp_name(t, p)} offset {o} was seen holding {len(values)} values: {shown}",
                                 events, BROKER_ANSWERS["inconsistent-offsets"]))
    return CheckResult("inconsistent-offsets", tuple(anomalies))


@checker
def duplicate(history: History) -> CheckResult:
    """One value observed at more than one (topic, partition, offset)."""
    ix = history.index
    anomalies = []
    identities = duplicate_identities(history)
    for value, positions in sorted(ix.value_conflicts.items()):
        events = [e for idx in positions.values() for e in with_invocation(history, ix, idx)]
        shown = ", ".join(f"{tp_name(t, p)}@{o}" for t, p, o in sorted(positions))
        anomalies.append(Anomaly("duplicate", f"value {value!r} is at {len(positions)} offsets: {shown}", events,
                                 duplicate_attribution(history, value, positions, identities)))
    return CheckResult("duplicate", tuple(anomalies))


def duplicate_identities(history: History) -> BatchIdentities:
    """The producer identities of every position a duplicated value was seen at (cached: the
    duplicate check and the delivery guarantees use them)."""
    ix = history.index
    return ix.derived(DUPLICATE_IDENTITIES, lambda: BatchIdentities(
        history, (pos for positions in ix.value_conflicts.values() for pos in positions)))


def _acked_unread(ix: HistoryIndex) -> list[Write]:
    """The acknowledged writes whose value nobody read (cached: lost-write and unseen use it)."""
    def compute() -> list[Write]:
        found = [ix.write(v) for v in ix.acked.difference(ix.first_read)]
        return sorted((w for w in found if w is not None), key=lambda w: w.invoke)

    return ix.derived(ACKED_UNREAD, compute)


def _lost(history: History) -> dict[str, tuple[Write, int, int]]:
    """Lost acked writes: value -> (write, read before, read after), the two reads being the
    run's reads on both sides of it, or twice the read that found another value at its offset."""
    ix = history.index

    def compute() -> dict[str, tuple[Write, int, int]]:
        lost = _find_lost(ix)
        for value, (w, read) in _replaced(history).items():
            lost.setdefault(value, (w, read, read))
        return lost

    return ix.derived(LOST, compute)


def _replaced(history: History) -> dict[str, tuple[Write, int]]:
    return history.index.derived(REPLACED, lambda: _find_replaced(history))


def _find_replaced(history: History) -> dict[str, tuple[Write, int]]:
    """Acked writes whose offset a poll invoked after the acknowledgement returned holding
    another value: value -> (write, that poll's completion).

    Only positions seen with two values (`offset_conflicts`, rare) are looked at, so the scan of
    the polls costs one dict lookup per record read, and nothing when there is no conflict.
    """
    ix = history.index
    if not ix.offset_conflicts:
        return {}
    acked_at: dict[tuple[str, int, int], list[Write]] = {}
    for key, values in ix.offset_conflicts.items():
        for value in values:
            if value in ix.acked:
                w = ix.write(value)
                if w is not None and (w.topic, w.partition, w.offset) == key:
                    acked_at.setdefault(key, []).append(w)
    found: dict[str, tuple[Write, int]] = {}
    if not acked_at:
        return found
    for e in history.raw:
        if e["f"] != "poll" or e["type"] != "ok":
            continue
        for t, p, o, _k, val in e["value"]["records"]:
            writes = acked_at.get((t, p, o))
            if writes is None:
                continue
            for w in writes:
                assert w.completion is not None
                if val != w.value and w.value not in found and e["invoke"] > w.completion:
                    found[w.value] = (w, e["index"])
    return found


def _find_lost(ix: HistoryIndex) -> dict[str, tuple[Write, int, int]]:
    candidates = _acked_unread(ix)
    if not candidates or not ix.gaps:
        return {}
    by_tp: dict[tuple[str, int], list[tuple[int, int, tuple[int, int]]]] = {}
    for t, p, a, b, ea, eb, _proc in ix.gaps:
        by_tp.setdefault((t, p), []).append((a, b, (ea, eb)))
    sweep = {tp: Intervals(gaps) for tp, gaps in by_tp.items()}
    lost: dict[str, tuple[Write, int, int]] = {}
    for w in candidates:
        assert w.partition is not None and w.offset is not None
        gaps = sweep.get((w.topic, w.partition))
        found = None if gaps is None else gaps.find(w.offset, w.offset)
        if found is not None:
            lost[w.value] = (w, found[0], found[1])
    return lost


@checker
def lost_write(history: History) -> CheckResult:
    """An acknowledged write missing from a stretch of the log a consumer read through."""
    anomalies = []
    for w, ea, eb in sorted(_lost(history).values(), key=lambda x: x[0].invoke):
        where = f"{tp_name(w.topic, w.partition or 0)} offset {w.offset}"
        replaced = _replaced(history).get(w.value)
        if replaced is not None and replaced[1] == ea == eb:
            other = next((r[4] for r in history.raw[ea]["value"]["records"]
                          if (r[0], r[1], r[2]) == (w.topic, w.partition, w.offset)), None)
            explanation = (f"value {w.value!r} was acknowledged at {where}, but a consumer that "
                           f"started reading after the acknowledgement found {other!r} there")
        else:
            explanation = (f"value {w.value!r} was acknowledged at {where} but never read, although "
                           f"a consumer read past that offset")
        anomalies.append(Anomaly("lost-write", explanation, (*write_events(w), ea, eb), BROKER_ANSWERS["lost-write"]))
    return CheckResult("lost-write", tuple(anomalies))


@checker
def unseen(history: History) -> CheckResult:
    """An acknowledged write never read even though a later drain read its partition to the end."""
    ix = history.index
    if not ix.drains:
        return CheckResult("unseen", skipped="the history has no completed drain (a final read of "
                                              "every partition to its end), so unread writes may just be unread yet")
    lost = _lost(history)
    anomalies = []
    for w in _acked_unread(ix):
        if w.value in lost:
            continue
        assert w.completion is not None and w.partition is not None
        for d in ix.drains:
            if d.invoke > w.completion and d.covers(w.topic, w.partition):
                anomalies.append(Anomaly(
                    "unseen",
                    f"value {w.value!r} was acknowledged at {tp_name(w.topic, w.partition)} offset {w.offset} "
                    f"but never read, not even by {d.process}'s drain",
                    (*write_events(w), d.invoke, d.completion), BROKER_ANSWERS["unseen"]))
                break
    anomalies.sort(key=lambda a: a.events)
    return CheckResult("unseen", tuple(anomalies))


@checker
def aborted_read(history: History) -> CheckResult:
    """A read of a value whose send definitely failed, or a read_committed read of an aborted
    transaction's record (G1a)."""
    ix = history.index
    anomalies = []
    for value in ix.failed:
        w = ix.write(value)
        if w is not None and value in ix.first_read:
            read = ix.first_read[w.value]
            anomalies.append(Anomaly(
                "aborted-read",
                f"value {w.value!r} was read although its send definitely failed "
                f"({history.raw[w.completion or 0]['value'].get('error')})",
                (*write_events(w), read)))
    anomalies.extend(aborted_txn_reads(history))
    return CheckResult("aborted-read", tuple(anomalies))
