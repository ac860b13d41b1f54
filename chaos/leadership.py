"""Each partition's leadership story, from the ``partition-state`` observations of a history.

The observer (``chaos/observer.py``) records a sample whenever a partition's leader, leader
epoch, ISR or high watermark changes. This module turns those samples into the per-partition
timeline that results.json carries and report.html draws, and into the figures a reader looks
for first: how often leadership moved, how long a partition had no leader, how often the ISR
shrank and to how few replicas, and every step back of the high watermark (a sample lower than
the one before it). Kafka allows a step back only briefly, while a newly elected leader has not
yet learnt the old one's high watermark; a lasting one means acknowledged records are gone (an
unclean election). The report shows them; no checker judges them.

Times are seconds since the first event of the history.
"""

from __future__ import annotations

from chaos.results import HighWatermarkRegression, PartitionObservation, PartitionTimeline
from harness.history.load import History


def partition_timelines(history: History) -> dict[str, PartitionTimeline]:
    """``topic-partition`` -> its states in order and the figures above (empty: not observed)."""
    t0 = history.raw[0]["time"] if history.raw else 0
    end = (history.raw[-1]["time"] - t0) / 1e9 if history.raw else 0.0
    states: dict[str, list[PartitionObservation]] = {}
    for e in history.raw:
        if e["f"] != "partition-state":
            continue
        v = e["value"]
        states.setdefault(f"{v['topic']}-{v['partition']}", []).append(
            PartitionObservation(round((e["time"] - t0) / 1e9, 3), v["leader"], v["leader_epoch"], tuple(v["isr"]),
                           v["high_watermark"]))
    return {name: _timeline(lst, end) for name, lst in sorted(states.items(), key=_order)}


def _order(item: tuple[str, list[PartitionObservation]]) -> tuple[str, int]:
    topic, _, partition = item[0].rpartition("-")
    return topic, int(partition)


def _timeline(states: list[PartitionObservation], end: float) -> PartitionTimeline:
    leader_changes = isr_shrinks = 0
    leaderless = 0.0
    regressions = []
    previous = None  # the last high watermark the leader answered
    for k, s in enumerate(states):
        until = states[k + 1].t if k + 1 < len(states) else end
        if s.leader is None:
            leaderless += max(0.0, until - s.t)
        if k == 0:
            previous = s.high_watermark
            continue
        before = states[k - 1]
        if (s.leader, s.leader_epoch) != (before.leader, before.leader_epoch) and s.leader is not None:
            leader_changes += 1
        if set(before.isr) - set(s.isr):
            isr_shrinks += 1
        hw = s.high_watermark
        if hw is not None:
            if previous is not None and hw < previous:
                regressions.append(HighWatermarkRegression(s.t, previous, hw, s.leader, s.leader_epoch))
            previous = hw
    return PartitionTimeline(tuple(states), leader_changes, round(leaderless, 3), isr_shrinks,
                             min((len(s.isr) for s in states), default=None), tuple(regressions))
