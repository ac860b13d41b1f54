"""Checkers of consumer groups: committed offsets and partition ownership.

- committed-offset-regression: a group's committed offset for a partition moved backwards
  without a reset. Two rules: (1) successive acknowledged commits, ordered by generation then by
  completion, must not decrease; (2) an OffsetFetch must not answer less than the last commit
  acknowledged before it started. A reset (a `reset` operation, or a seek by a member of the
  group) whose time overlaps the two events excuses the step back; a commit that may still have
  been in flight excuses an OffsetFetch answer equal to its offset.
- group-split-brain: two members owned one partition in the same (group, generation), as
  reported by `rebalance` or `assignment` observations that carry the generation and member.
"""

from __future__ import annotations

from bisect import bisect_left

from harness.checkers._common import Intervals, checker, tp_name
from harness.checkers.result import Anomaly, CheckResult
from harness.history.index import NEVER, Commit
from harness.history.load import History
from specs.groups import commit_regresses, split_brain
from specs.types import MemberId, Offset, PartitionId, TopicPartition

_NO_RESETS: Intervals[None] = Intervals([])


def _resets(history: History) -> dict[tuple[str, str, int], Intervals[None]]:
    """Per (group, topic, partition), the event intervals during which a reset may apply."""
    return {key: Intervals((start, end, None) for start, end in value)
            for key, value in history.index.resets.items()}


def _in_flight(commits: list[Commit], key: tuple[str, str, int], offset: int, start: int, end: int) -> bool:
    """Whether a commit of `offset` that may have applied was in flight between `start` and `end`.

    Linear, but only called for an OffsetFetch answer that looks like a regression.
    """
    group, topic, partition = key
    for c in commits:
        if c.group != group or c.status == "fail" or c.invoke >= end:
            continue
        done = NEVER if c.completion is None or c.status != "ok" else c.completion
        if done > start and [topic, partition, offset] in c.offsets:
            return True
    return False


@checker
def committed_offset_regression(history: History) -> CheckResult:
    """A group's committed offset for a partition went backwards without a reset."""
    ix = history.index
    # (group, topic, partition) -> [(generation, completion, offset, invoke)] of ok commits
    ordered: dict[tuple[str, str, int], list[tuple[int, int, int, int]]] = {}
    for c in ix.commits:
        if c.status == "ok":
            assert c.completion is not None
            gen = -1 if c.generation is None else c.generation
            for t, p, o in c.offsets:
                key = (c.group, t, p)
                entry = (gen, c.completion, o, c.invoke)
                found = ordered.get(key)
                if found is None:
                    ordered[key] = [entry]
                else:
                    found.append(entry)
    resets = _resets(history)
    anomalies = []
    for key, commits in ordered.items():
        commits.sort()
        excuses = resets.get(key, _NO_RESETS)
        for (g1, d1, o1, i1), (g2, d2, o2, i2) in zip(commits, commits[1:]):
            if commit_regresses(Offset(o1), Offset(o2)) and not excuses.overlaps(min(i1, i2), max(d1, d2)):
                anomalies.append(Anomaly(
                    "committed-offset-regression",
                    f"group {key[0]!r} committed {tp_name(key[1], key[2])} offset {o1} (generation {g1}) "
                    f"then {o2} (generation {g2}) with no reset between",
                    (i1, d1, i2, d2)))
    by_completion = {key: sorted((d, o, i) for _g, d, o, i in commits) for key, commits in ordered.items()}
    for group, t, p, x, fi, fd in ix.committed_reads:
        key = (group, t, p)
        history_of_key = by_completion.get(key)
        if not history_of_key:
            continue
        k = bisect_left(history_of_key, (fi,)) - 1
        if k < 0:
            continue
        d, o, i = history_of_key[k]
        if not commit_regresses(Offset(o), Offset(x)):
            continue
        if resets.get(key, _NO_RESETS).overlaps(i, fd):
            continue
        if _in_flight(ix.commits, key, x, fi, fd):
            continue
        shown = "no committed offset" if x < 0 else f"offset {x}"
        anomalies.append(Anomaly(
            "committed-offset-regression",
            f"group {group!r} committed {tp_name(t, p)} offset {o}, then an OffsetFetch answered {shown}",
            (i, d, fi, fd)))
    anomalies.sort(key=lambda a: a.events)
    return CheckResult("committed-offset-regression", tuple(anomalies))


@checker
def group_split_brain(history: History) -> CheckResult:
    """Two members owning the same partition in the same group generation."""
    owners = history.index.owners  # (group, generation, topic, partition) -> member -> event
    assignments: dict[tuple[str, int], dict[MemberId, set[TopicPartition]]] = {}
    for (group, generation, t, p), members in owners.items():
        for member in members:
            assignments.setdefault((group, generation), {}).setdefault(MemberId(member), set()).add(
                TopicPartition(t, PartitionId(p)))
    anomalies = []
    for (group, generation), assignment in sorted(assignments.items()):
        for tp, owning in sorted(split_brain({m: frozenset(tps) for m, tps in assignment.items()}).items()):
            anomalies.append(Anomaly(
                "group-split-brain",
                f"group {group!r} generation {generation}: {tp_name(tp.topic, tp.partition)} owned by "
                f"{', '.join(sorted(owning))}",
                tuple(owners[(group, generation, tp.topic, tp.partition)].values())))
    return CheckResult("group-split-brain", tuple(anomalies))
