"""The seed's delivery guarantees, checked per consumer group (specs.delivery has the predicates).

A record is *delivered* to a group when a poll by one of its members (a process that
subscribed with that `group`) returned it. For each group:

- at-least-once: every acknowledged write the group had to be given was delivered at least
  once. The group had to be given a write when it subscribes to its topic, and either the group
  was delivered a later offset of that partition (it moved past the write) or a drain by one of
  its members, started after the acknowledgement, read that partition to the end. With
  `auto_offset_reset: latest` (Kafka's default) only offsets at or after the first one the group
  read from that partition count.
- at-most-once: no value was delivered to the group more than once.
- exactly-once: both.

Reads by processes outside any group (e.g. a final checking consumer) are not deliveries.
"""

from __future__ import annotations

from typing import Any

from harness.checkers._common import checker, tp_name, write_events
from harness.checkers.result import Anomaly, CheckResult
from harness.history.load import History
from specs.delivery import Guarantee, violations


class _GroupView:
    __slots__ = ("delivered", "first", "top", "low")

    def __init__(self) -> None:
        self.delivered: dict[str, int] = {}
        self.first: dict[str, list[int]] = {}  # value -> its first two delivery events
        self.top: dict[tuple[str, int], tuple[int, int]] = {}  # highest offset delivered, its event
        self.low: dict[tuple[str, int], int] = {}  # lowest offset delivered


def _views(history: History) -> dict[str, _GroupView]:
    views: dict[str, _GroupView] = {g: _GroupView() for g in history.index.group_topics}
    raw = history.raw
    for group, idx in history.index.group_polls:
        view = views.setdefault(group, _GroupView())
        delivered, first, top, low = view.delivered, view.first, view.top, view.low
        for t, p, o, _k, val in raw[idx]["value"]["records"]:
            n = delivered.get(val, 0)
            delivered[val] = n + 1
            if n == 0:
                first[val] = [idx]
            elif n == 1:
                first[val].append(idx)
            tp = (t, p)
            hi = top.get(tp)
            if hi is None or o > hi[0]:
                top[tp] = (o, idx)
            lo = low.get(tp)
            if lo is None or o < lo:
                low[tp] = o
    return views


def _required(history: History, group: str, view: _GroupView) -> dict[str, tuple[int, ...]]:
    """The acknowledged writes `group` had to be given, each with the events that show why."""
    ix = history.index
    topics = ix.group_topics.get(group, set())
    latest = ix.group_reset_policy.get(group, "latest") == "latest"
    drains = [d for d in ix.drains if d.group == group]
    required: dict[str, tuple[int, ...]] = {}
    for w in ix.writes.values():
        if w.status != "ok" or w.topic not in topics:
            continue
        assert w.partition is not None and w.offset is not None and w.completion is not None
        tp = (w.topic, w.partition)
        if latest and w.offset < view.low.get(tp, w.offset + 1):
            continue
        hi = view.top.get(tp)
        if hi is not None and hi[0] > w.offset:
            required[w.value] = (*write_events(w), hi[1])
            continue
        for d in drains:
            if d.invoke > w.completion and d.covers(*tp):
                required[w.value] = (*write_events(w), d.invoke, d.completion)
                break
    return required


def _check(history: History, guarantee: Guarantee) -> CheckResult:
    name = guarantee.value
    ix = history.index
    if not ix.group_topics and not ix.group_polls:
        return CheckResult(name, skipped="the history has no consumer group (no subscribe event): "
                                         "delivery guarantees are about what a group's members were given")
    anomalies = []
    for group, view in sorted(_views(history).items()):
        required = _required(history, group, view) if guarantee is not Guarantee.AT_MOST_ONCE else {}
        found = violations(guarantee, required, view.delivered)
        for value in sorted(found.undelivered, key=str):
            acked = ix.writes[str(value)]
            anomalies.append(Anomaly(
                name, f"group {group!r} was never given value {value!r} "
                      f"({tp_name(acked.topic, acked.partition or 0)} offset {acked.offset}), "
                      f"acknowledged and passed over",
                required[str(value)]))
        for value in sorted(found.redelivered, key=str):
            events: list[Any] = list(view.first[str(value)])
            w = ix.writes.get(str(value))
            if w is not None:
                events.append(w.invoke)
            anomalies.append(Anomaly(
                name, f"group {group!r} was given value {value!r} {view.delivered[str(value)]} times", events))
    return CheckResult(name, tuple(anomalies))


@checker
def at_least_once(history: History) -> CheckResult:
    """Every acknowledged write a group had to be given was delivered to it at least once."""
    return _check(history, Guarantee.AT_LEAST_ONCE)


@checker
def at_most_once(history: History) -> CheckResult:
    """No value was delivered to a group more than once."""
    return _check(history, Guarantee.AT_MOST_ONCE)


@checker
def exactly_once(history: History) -> CheckResult:
    """At least once and at most once."""
    return _check(history, Guarantee.EXACTLY_ONCE)
