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
from harness.history.load import History


@checker
def poll_skip(history: History) -> CheckResult:
    """A consumer jumped over offsets known to hold records, with no seek or rebalance to explain it."""
    ix = history.index
    if not ix.gaps:
        return CheckResult("poll-skip")
    known = ix.known_offsets()
    view = txn_view(history) if ix.txns else None
    anomalies = []
    for t, p, a, b, ea, eb, proc in ix.gaps:
        offsets = known.get((t, p), [])
        i = bisect_right(offsets, a)
        j = bisect_left(offsets, b)
        if i < j and view is not None and view.reads_committed(eb):
            skippable = view.invisible_to_read_committed
            between = [o for o in offsets[i:j] if not skippable(ix.at_offset[(t, p, o)][0])]
            i, j, offsets = 0, len(between), between
        if i < j:
            first = offsets[i]
            evidence = with_invocation(history, ix, ix.at_offset[(t, p, first)][1])
            anomalies.append(Anomaly(
                "poll-skip",
                f"{proc} read {tp_name(t, p)} offset {a} then {b}, skipping {j - i} offset(s) known to "
                f"hold records (first {first})",
                (ea, eb, *evidence)))
    return CheckResult("poll-skip", tuple(anomalies))


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
