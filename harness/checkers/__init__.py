"""Anomaly checkers: pure functions from a history to a result, plus `check` to run several.

Each checker takes a `History` and returns a `CheckResult` whose anomalies carry Jepsen's names
and the minimal events that witness them (docs/anomalies.md defines each one). They share the
history's index, built once in one pass; every checker is linear or n log n in the history.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from harness.checkers.delivery import at_least_once, at_most_once, exactly_once
from harness.checkers.dependencies import g0, g1c, g_single
from harness.checkers.groups import committed_offset_regression, group_split_brain
from harness.checkers.log import aborted_read, duplicate, inconsistent_offsets, lost_write, unseen
from harness.checkers.polls import nonmonotonic_poll, poll_skip, read_uncommitted
from harness.checkers.result import Anomaly, CheckResult, Report
from harness.checkers.sends import nonmonotonic_send
from harness.checkers.streams import streams_exactly_once
from harness.checkers.transactions import (
    exactly_once_processing,
    hanging_transaction,
    intermediate_read,
    lso_above_hw,
    lso_past_open_transaction,
    torn_transaction,
)
from harness.history.load import History

Checker = Callable[[History], CheckResult]

CHECKS: Mapping[str, Checker] = {
    "inconsistent-offsets": inconsistent_offsets,
    "duplicate": duplicate,
    "lost-write": lost_write,
    "unseen": unseen,
    "aborted-read": aborted_read,
    "poll-skip": poll_skip,
    "nonmonotonic-poll": nonmonotonic_poll,
    "nonmonotonic-send": nonmonotonic_send,
    "read-uncommitted": read_uncommitted,
    "committed-offset-regression": committed_offset_regression,
    "group-split-brain": group_split_brain,
    "G1b": intermediate_read,
    "torn-transaction": torn_transaction,
    "lso-above-hw": lso_above_hw,
    "lso-past-open-transaction": lso_past_open_transaction,
    "hanging-transaction": hanging_transaction,
    "exactly-once-processing": exactly_once_processing,
    "G0": g0,
    "G1c": g1c,
    "G-single": g_single,
    "streams-exactly-once": streams_exactly_once,
}
"""The anomaly checks, run by default (the transactional ones skip, saying why, on a history
without transactions or without the observations they need)."""

TRANSACTIONAL = ("G1b", "torn-transaction", "lso-above-hw", "lso-past-open-transaction", "hanging-transaction",
                 "exactly-once-processing", "G0", "G1c", "G-single")
"""The checks of transactions and their observations (aborted-read also judges transactions)."""

GUARANTEES: Mapping[str, Checker] = {
    "at-least-once": at_least_once,
    "at-most-once": at_most_once,
    "exactly-once": exactly_once,
}
"""The delivery-guarantee checks, run when asked for."""


def check(history: History, guarantees: Iterable[str] = (), checks: Iterable[str] | None = None) -> Report:
    """Run `checks` (default: every anomaly check) and the `guarantees` asked for on `history`.

    Unknown names raise KeyError naming the known ones.
    """
    names = list(CHECKS) if checks is None else list(dict.fromkeys(checks))
    wanted = list(dict.fromkeys(guarantees))
    for name in names:
        if name not in CHECKS and name not in GUARANTEES:
            raise KeyError(f"unknown check {name!r} (known: {', '.join([*CHECKS, *GUARANTEES])})")
    for name in wanted:
        if name not in GUARANTEES:
            raise KeyError(f"unknown guarantee {name!r} (known: {', '.join(GUARANTEES)})")
    table = {**CHECKS, **GUARANTEES}
    results = [table[name](history) for name in [*names, *(g for g in wanted if g not in names)]]
    return Report(tuple(results))


__all__ = [
    "CHECKS",
    "GUARANTEES",
    "TRANSACTIONAL",
    "Anomaly",
    "CheckResult",
    "Checker",
    "Report",
    "aborted_read",
    "at_least_once",
    "at_most_once",
    "check",
    "committed_offset_regression",
    "duplicate",
    "exactly_once",
    "exactly_once_processing",
    "g0",
    "g1c",
    "g_single",
    "group_split_brain",
    "hanging_transaction",
    "inconsistent_offsets",
    "intermediate_read",
    "lost_write",
    "lso_above_hw",
    "lso_past_open_transaction",
    "nonmonotonic_poll",
    "nonmonotonic_send",
    "poll_skip",
    "read_uncommitted",
    "streams_exactly_once",
    "torn_transaction",
    "unseen",
]
