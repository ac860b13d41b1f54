"""Consumer groups: generations, assignments, committed offsets.

Theory of operation. A group coordinator runs rebalances; each completed rebalance starts a new
*generation* (an increasing integer) with an assignment of partitions to members (Kafka
protocol guide, JoinGroup/SyncGroup). Within one generation each partition is owned by at most
one member, so each record is processed by one member of the group (Kafka documentation 1.1,
"Consumers": "each record published to a topic is delivered to one consumer instance within
each subscribing consumer group"). A member that loses a rebalance is fenced: its offset
commits carry a stale generation and are rejected with `ILLEGAL_GENERATION` (or
`UNKNOWN_MEMBER_ID` once it was removed), so commits cannot come from two owners.

The committed offset of a partition is the position the group resumes from. It moves with the
commits of the owning member and only moves backwards when someone resets it on purpose (a
consumer seeking back and committing, or `kafka-consumer-groups --reset-offsets`).

Two assignors from the seed are modelled exactly (their javadoc): `range_assign` (per topic,
contiguous ranges, the first members get one extra when partitions do not divide evenly) and
`round_robin_assign` (all partitions of all topics dealt to members in turn). With more members
than partitions, the extra members get nothing and sit idle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs

from specs.types import GenerationId, MemberId, Offset, PartitionId, TopicPartition

ILLEGAL_GENERATION = "ILLEGAL_GENERATION"
UNKNOWN_MEMBER_ID = "UNKNOWN_MEMBER_ID"

Assignment = Mapping[MemberId, frozenset[TopicPartition]]


def range_assign(members: Iterable[MemberId], partitions: Mapping[str, int]) -> dict[MemberId, frozenset[TopicPartition]]:
    """Kafka's RangeAssignor for members that all subscribe to the topics in `partitions`.

    Per topic, members sorted by id get contiguous ranges of the partitions sorted by number;
    the first `count % len(members)` members get one more.
    """
    ordered = sorted(set(members))
    result: dict[MemberId, set[TopicPartition]] = {m: set() for m in ordered}
    if not ordered:
        return {}
    for topic, count in sorted(partitions.items()):
        per_member, extra = divmod(count, len(ordered))
        start = 0
        for i, member in enumerate(ordered):
            length = per_member + (1 if i < extra else 0)
            result[member].update(TopicPartition(topic, PartitionId(p)) for p in range(start, start + length))
            start += length
    return {m: frozenset(tps) for m, tps in result.items()}


def round_robin_assign(members: Iterable[MemberId], partitions: Mapping[str, int]) -> dict[MemberId, frozenset[TopicPartition]]:
    """Kafka's RoundRobinAssignor for members that all subscribe to the topics in `partitions`.

    All topic partitions, sorted by topic then partition, are dealt to the members sorted by id,
    one at a time.
    """
    ordered = sorted(set(members))
    result: dict[MemberId, set[TopicPartition]] = {m: set() for m in ordered}
    if not ordered:
        return {}
    all_tps = [TopicPartition(t, PartitionId(p)) for t, n in sorted(partitions.items()) for p in range(n)]
    for i, tp in enumerate(all_tps):
        result[ordered[i % len(ordered)]].add(tp)
    return {m: frozenset(tps) for m, tps in result.items()}


def split_brain(assignment: Assignment) -> dict[TopicPartition, frozenset[MemberId]]:
    """The partitions owned by more than one member in one generation's assignment."""
    owners: dict[TopicPartition, set[MemberId]] = {}
    for member, tps in assignment.items():
        for tp in tps:
            owners.setdefault(tp, set()).add(member)
    return {tp: frozenset(ms) for tp, ms in owners.items() if len(ms) > 1}


@attrs.frozen
class CommitAnswer:
    """The coordinator's answer to an OffsetCommit: the new group state and an error or None."""

    group: GroupModel
    error: str | None


@attrs.frozen
class GroupModel:
    """One group as the coordinator sees it."""

    generation: GenerationId = GenerationId(0)
    assignment: Mapping[MemberId, frozenset[TopicPartition]] = attrs.field(factory=dict)
    committed: Mapping[TopicPartition, Offset] = attrs.field(factory=dict)

    def rebalance(self, assignment: Assignment) -> GroupModel:
        """Complete a rebalance: the next generation with `assignment` (committed offsets stay)."""
        conflicts = split_brain(assignment)
        if conflicts:
            raise ValueError(f"an assignment must give each partition to one member: {conflicts}")
        return attrs.evolve(self, generation=GenerationId(self.generation + 1), assignment=dict(assignment))

    def commit(self, generation: GenerationId, member: MemberId, offsets: Mapping[TopicPartition, Offset]) -> CommitAnswer:
        """An OffsetCommit from `member` in `generation`: fenced unless it is current."""
        if member not in self.assignment:
            return CommitAnswer(self, UNKNOWN_MEMBER_ID)
        if generation != self.generation:
            return CommitAnswer(self, ILLEGAL_GENERATION)
        return CommitAnswer(attrs.evolve(self, committed={**self.committed, **offsets}), None)

    def reset(self, offsets: Mapping[TopicPartition, Offset]) -> GroupModel:
        """An administrative reset of committed offsets (may move them backwards)."""
        return attrs.evolve(self, committed={**self.committed, **offsets})


def commit_regresses(previous: Offset, new: Offset) -> bool:
    """Whether a commit moves a partition's committed offset backwards."""
    return new < previous
