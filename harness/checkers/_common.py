"""Helpers shared by the checkers (not part of the public API)."""

from __future__ import annotations

import functools
from collections.abc import Callable

from harness.history.index import HistoryIndex, Write
from harness.history.load import History, no_gc

from harness.checkers.result import CheckResult


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
    """`event`, plus the send it completes when it is a send completion (which names no value)."""
    raw = history.raw[event]
    if raw["f"] == "send" and "invoke" in raw:
        return (raw["invoke"], event)
    return (event,)


def tp_name(topic: str, partition: int) -> str:
    return f"{topic}-{partition}"
