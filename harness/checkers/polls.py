"""Checkers of what each consumer was given, poll after poll.

- poll-skip: within one run (no seek, assign, subscribe, rebalance or failed poll between), a
  consumer read offset a then offset b > a + 1 of a partition, and some offset between them is
  known to hold a record (an acknowledged write, or a read by anyone). A read_committed reader
  skips, as it must, the records of transactions that aborted (or may have): those never count.
- nonmonotonic-poll: within one run, a consumer read offset a then b <= a of a partition.
- read-uncommitted: a poll returned a record at or past the high watermark (or, for a
  read_committed consumer, the last stable offset) that the same response reported.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from harness.checkers._common import checker, tp_name, with_invocation
from harness.checkers.attribution import BROKER_ANSWERS
from harness.checkers.result import Anomaly, CheckResult
from harness.checkers.txn_view import txn_view
from harness.history.index import DerivedView
from harness.history.load import History


@checker
def poll_skip(history: History) -> CheckResult:
    """A consumer jumped over offsets known to hold records, with no seek or rebalance to explain it."""
    ix = history.index
    view = txn_view(history) if ix.txns else None
    anomalies = []
    for (t, p, a, b, ea, eb, proc), between in skips(history):
        if view is not None and view.reads_committed(eb):
            skippable = view.invisible_to_read_committed
            between = [o for o in between if not skippable(ix.at_offset[(t, p, o)][0])]
            if not between:
                continue
        first = between[0]
        evidence = with_invocation(history, ix, ix.at_offset[(t, p, first)][1])
        anomalies.append(Anomaly(
            "poll-skip",
            f"{proc} read {tp_name(t, p)} offset {a} then {b}, skipping {len(between)} offset(s) known to "
            f"hold records (first {first})",
            (ea, eb, *evidence)))
    return CheckResult("poll-skip", tuple(anomalies))


Gap = tuple[str, int, int, int, int, int, str]  # topic, partition, from offset, to offset, events, process
SKIPS: DerivedView[list[tuple[Gap, list[int]]]] = DerivedView("skips")


def skips(history: History) -> list[tuple[Gap, list[int]]]:
    """Every forward jump of a run (`HistoryIndex.gaps`) over offsets known to hold a record, with
    those offsets (computed once: poll-skip and torn-transaction start from them)."""
    ix = history.index

    def compute() -> list[tuple[Gap, list[int]]]:
        if not ix.gaps:
            return []
        known = ix.known_offsets()
        at_offset = ix.at_offset
        out = []
        for gap in ix.gaps:
            t, p, a, b, _ea, _eb, _proc = gap
            if b == a + 2:
                # One offset between (most often a transaction marker): a lookup, not two searches.
                if (t, p, a + 1) in at_offset:
                    out.append((gap, [a + 1]))
                continue
            offsets = known.get((t, p))
            if offsets is not None:
                i = bisect_right(offsets, a)
                j = bisect_left(offsets, b)
                if i < j:
                    out.append((gap, offsets[i:j]))
        return out

    return ix.derived(SKIPS, compute)


@checker
def nonmonotonic_poll(history: History) -> CheckResult:
    """A consumer's successive reads of a partition went back or repeated, with no seek or rebalance."""
    anomalies = [
        Anomaly("nonmonotonic-poll",
                f"{proc} read {tp_name(t, p)} offset {a} then offset {b} with no seek or rebalance between",
                (ea, eb))
        for t, p, a, b, ea, eb, proc in history.index.backsteps
    ]
    return CheckResult("nonmonotonic-poll", tuple(anomalies))


@checker
def read_uncommitted(history: History) -> CheckResult:
    """A consumer was given a record at or past the high watermark (or LSO) its own fetch reported."""
    anomalies = [
        Anomaly("read-uncommitted",
                f"a poll returned {tp_name(t, p)} offset {o} although the same response gave the {what} as {bound}",
                (idx,), BROKER_ANSWERS["read-uncommitted"])
        for t, p, o, bound, what, idx in history.index.uncommitted_reads
    ]
    return CheckResult("read-uncommitted", tuple(anomalies))
