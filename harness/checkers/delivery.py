"""The seed's delivery guarantees, checked per consumer group (specs.delivery has the predicates).

A record is *delivered* to a group when a poll by one of its members (a process that
subscribed with that `group`) returned it. A member's `info` poll may have delivered records
nobody recorded: the offsets between what that member read of a partition before and after
it count as maybe delivered (never required). For each group:

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

import functools

from harness.checkers._common import Intervals, checker, tp_name, write_events
from harness.checkers.attribution import NO_EVIDENCE, Attribution, duplicate_attribution
from harness.checkers.log import duplicate_identities
from harness.checkers.result import Anomaly, CheckResult
from harness.history.index import DerivedView
from harness.history.load import History
from specs.delivery import Guarantee, violations


class _GroupView:
    __slots__ = ("delivered", "stats", "unknown")

    def __init__(self) -> None:
        # value -> [times delivered, first delivery event, second delivery event]
        self.delivered: dict[str, list[int]] = {}
        # partition -> [highest offset delivered, its event, lowest offset delivered]
        self.stats: dict[tuple[str, int], list[int]] = {}
        # Per partition, offset windows (after, before) that an `info` poll may have delivered.
        self.unknown: dict[tuple[str, int], list[tuple[int, int]]] = {}

    def counts(self) -> dict[str, int]:
        return {value: d[0] for value, d in self.delivered.items()}

    def maybe_delivered(self) -> dict[tuple[str, int], Intervals[None]]:
        return {tp: Intervals((a, b, None) for a, b in windows) for tp, windows in self.unknown.items()}


GROUP_VIEWS: DerivedView[dict[str, _GroupView]] = DerivedView("group-views")


def _views(history: History) -> dict[str, _GroupView]:
    """Per group, what its members were given (derived once: three checks use it)."""
    return history.index.derived(GROUP_VIEWS, lambda: _compute_views(history))


def _compute_views(history: History) -> dict[str, _GroupView]:
    views: dict[str, _GroupView] = {g: _GroupView() for g in history.index.group_topics}
    raw = history.raw
    # (process, topic, partition) -> [last offset read]
    last: dict[tuple[str, str, int], list[int]] = {}
    # process -> partitions read since its last unknown poll (the others may hide deliveries)
    tainted: dict[str, set[tuple[str, int]]] = {}
    for group, idx, process, known in history.index.group_polls:
        view = views.get(group)
        if view is None:
            view = views[group] = _GroupView()
        if not known:
            tainted[process] = set()
            continue
        delivered, stats = view.delivered, view.stats
        closed = tainted.get(process)
        cur_t: str | None = None
        cur_p = -1
        st: list[int] = []
        mine: list[int] = []
        for t, p, o, _k, val in raw[idx]["value"]["records"]:
            d = delivered.get(val)
            if d is None:
                delivered[val] = [1, idx]
            else:
                if d[0] == 1:
                    d.append(idx)
                d[0] += 1
            if p != cur_p or t != cur_t:
                cur_t, cur_p = t, p
                tp = (t, p)
                found = stats.get(tp)
                if found is None:
                    found = stats[tp] = [o, idx, o]
                st = found
                lkey = (process, t, p)
                mine_found = last.get(lkey)
                if mine_found is None:
                    mine_found = last[lkey] = [-1]
                mine = mine_found
                if closed is not None and tp not in closed:
                    closed.add(tp)
                    view.unknown.setdefault(tp, []).append((mine[0], o))
            mine[0] = o
            if o > st[0]:
                st[0] = o
                st[1] = idx
            elif o < st[2]:
                st[2] = o
    # A member whose last poll was unknown may have been given anything after what it read.
    if tainted:
        partitions = history.index.partitions()
        member_group = {process: group for group, _i, process, _k in history.index.group_polls}
        for process, closed in tainted.items():
            view = views[member_group[process]]
            for t, p in partitions - closed:
                after = last.get((process, t, p), [-1])[0]
                view.unknown.setdefault((t, p), []).append((after, 1 << 62))
    return views


def _required(history: History, group: str, view: _GroupView) -> dict[str, tuple[int, ...]]:
    """The acknowledged writes `group` had to be given but was not, with the events that show why.

    (Only the undelivered ones: delivered writes satisfy the predicate whether required or not.)
    """
    ix = history.index
    topics = ix.group_topics.get(group, set())
    latest = ix.group_reset_policy.get(group, "latest") == "latest"
    drains = [d for d in ix.drains if d.group == group]
    required: dict[str, tuple[int, ...]] = {}
    maybe = view.maybe_delivered()
    for value in sorted(ix.acked.difference(view.delivered)):
        w = ix.write(value)
        if w is None or w.topic not in topics:
            continue
        assert w.partition is not None and w.offset is not None and w.completion is not None
        tp = (w.topic, w.partition)
        st = view.stats.get(tp)
        if latest and (st is None or w.offset < st[2]):
            continue
        if maybe:
            windows = maybe.get(tp)
            if windows is not None and windows.overlaps(w.offset, w.offset):
                continue
        if st is not None and st[0] > w.offset:
            required[w.value] = (*write_events(w), st[1])
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
        required: dict[str, tuple[int, ...]] = {}
        if guarantee is not Guarantee.AT_MOST_ONCE:
            required = ix.derived(DerivedView[dict[str, tuple[int, ...]]](f"required:{group}"),
                                  functools.partial(_required, history, group, view))
        counts = ix.derived(DerivedView[dict[str, int]](f"counts:{group}"), view.counts)
        found = violations(guarantee, required, counts)
        for value in sorted(found.undelivered, key=str):
            acked = ix.write(str(value))
            assert acked is not None
            anomalies.append(Anomaly(
                name, f"group {group!r} was never given value {value!r} "
                      f"({tp_name(acked.topic, acked.partition or 0)} offset {acked.offset}), "
                      f"acknowledged and passed over",
                required[str(value)], group=group))
        blames = _redelivery_attributions(history, group, {str(v) for v in found.redelivered})
        for value in sorted(found.redelivered, key=str):
            times, *events = view.delivered[str(value)]
            w = ix.write(str(value))
            if w is not None:
                events.append(w.invoke)
            anomalies.append(Anomaly(name, f"group {group!r} was given value {value!r} {times} times", events,
                                     blames.get(str(value), NO_EVIDENCE), group=group))
    return CheckResult(name, tuple(anomalies))


def _redelivery_attributions(history: History, group: str, values: set[str]) -> dict[str, Attribution]:
    """For values the group was given more than once that also sit at several offsets of the
    log (duplicates): when every delivery was of another offset, the group read the log's
    copies and the redelivery is the duplicate's fault (its attribution). A value given twice at
    one offset is the group's own re-reading: no rule (unattributed)."""
    ix = history.index
    doubled = values & ix.value_conflicts.keys()
    if not doubled:
        return {}
    seen: dict[str, list[tuple[str, int, int]]] = {}
    raw = history.raw
    for g, idx, _process, known in ix.group_polls:
        if g != group or not known:
            continue
        for t, p, o, _k, val in raw[idx]["value"]["records"]:
            if val in doubled:
                seen.setdefault(val, []).append((t, p, o))
    identities = duplicate_identities(history)
    out: dict[str, Attribution] = {}
    for value, positions in seen.items():
        if len(set(positions)) == len(positions):
            out[value] = duplicate_attribution(history, value, ix.value_conflicts[value], identities)
    return out


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
