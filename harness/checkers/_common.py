"""Helpers shared by the checkers (not part of the public API)."""

from __future__ import annotations

import functools
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from harness.checkers.result import CheckResult
from harness.history._gc import no_gc
from harness.history.index import HistoryIndex, Write
from harness.history.load import History


def checker(fn: Callable[[History], CheckResult]) -> Callable[[History], CheckResult]:
    """Run a checker with the cyclic GC paused: its tuples would make the collector rescan the
    whole loaded history again and again (measured: most of a check's time)."""

    @functools.wraps(fn)
    def run(history: History) -> CheckResult:
        with no_gc():
            return fn(history)

    return run


def write_events(w: Write) -> tuple[int, ...]:
    """A send's invocation and, when it has one, its completion."""
    return (w.invoke,) if w.completion is None else (w.invoke, w.completion)


def with_invocation(history: History, index: HistoryIndex, event: int) -> tuple[int, ...]:
    """`event`, plus the send or transaction it completes when it is the completion of one
    (which does not say what was asked)."""
    raw = history.raw[event]
    if (raw["f"] == "send" or raw["f"] == "txn") and "invoke" in raw:
        return (raw["invoke"], event)
    return (event,)


def tp_name(topic: str, partition: int) -> str:
    return f"{topic}-{partition}"


P = TypeVar("P")


class Intervals(Generic[P]):
    """Intervals (start, end, payload), answering "does one overlap (lo, hi)?" in O(log n).

    Sorted by start, with the running maximum end (and its payload): the intervals starting
    before `hi` include one ending after `lo` exactly when that maximum is after `lo`.
    """

    __slots__ = ("starts", "reach")

    def __init__(self, intervals: Iterable[tuple[int, int, P]]) -> None:
        self.starts: list[int] = []
        self.reach: list[tuple[int, P]] = []
        top: tuple[int, P] | None = None
        for start, end, payload in sorted(intervals, key=lambda x: (x[0], x[1])):
            if top is None or end > top[0]:
                top = (end, payload)
            self.starts.append(start)
            self.reach.append(top)

    def find(self, lo: int, hi: int) -> P | None:
        """The payload of an interval with start < hi and end > lo, or None."""
        i = bisect_left(self.starts, hi) - 1
        if i >= 0 and self.reach[i][0] > lo:
            return self.reach[i][1]
        return None

    def overlaps(self, lo: int, hi: int) -> bool:
        i = bisect_left(self.starts, hi) - 1
        return i >= 0 and self.reach[i][0] > lo
