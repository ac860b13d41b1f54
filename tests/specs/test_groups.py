"""Consumer group model: assignors, generations, fencing of stale commits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from specs.groups import (
    ILLEGAL_GENERATION,
    UNKNOWN_MEMBER_ID,
    GroupModel,
    range_assign,
    round_robin_assign,
    split_brain,
)
from specs.types import GenerationId, MemberId, Offset, PartitionId, TopicPartition

A, B, C = MemberId("a"), MemberId("b"), MemberId("c")


def tp(topic: str, p: int) -> TopicPartition:
    return TopicPartition(topic, PartitionId(p))


def test_range_gives_contiguous_ranges_and_extras_to_the_first_members() -> None:
    """Three partitions over two members: a gets 0-1, b gets 2 (RangeAssignor javadoc)."""
    assert range_assign([B, A], {"t": 3}) == {A: {tp("t", 0), tp("t", 1)}, B: {tp("t", 2)}}


def test_round_robin_deals_partitions_in_turn() -> None:
    """Round-robin over all topics' partitions alternates members."""
    got = round_robin_assign([A, B], {"t": 2, "u": 1})
    assert got == {A: {tp("t", 0), tp("u", 0)}, B: {tp("t", 1)}}


def test_an_extra_consumer_sits_idle() -> None:
    """With more members than partitions the extra member gets nothing."""
    for assign in (range_assign, round_robin_assign):
        got = assign([A, B, C], {"t": 2})
        assert sorted(len(v) for v in got.values()) == [0, 1, 1]


@given(st.lists(st.sampled_from([A, B, C]), min_size=1), st.dictionaries(st.sampled_from("tuv"), st.integers(0, 7)))
def test_assignors_give_every_partition_to_exactly_one_member(members: list[MemberId], topics: dict[str, int]) -> None:
    """Both assignors cover every partition once: no split brain, nothing left out."""
    for assign in (range_assign, round_robin_assign):
        got = assign(members, topics)
        assert not split_brain(got)
        assert sum(len(v) for v in got.values()) == sum(topics.values())


def test_stale_generation_and_unknown_member_commits_are_fenced() -> None:
    """Only the current generation's members can commit."""
    group = GroupModel().rebalance({A: frozenset({tp("t", 0)})})
    assert group.generation == 1
    answer = group.commit(GenerationId(1), A, {tp("t", 0): Offset(5)})
    assert answer.error is None and answer.group.committed == {tp("t", 0): 5}
    newer = answer.group.rebalance({B: frozenset({tp("t", 0)})})
    assert newer.commit(GenerationId(1), A, {tp("t", 0): Offset(9)}).error == UNKNOWN_MEMBER_ID
    assert newer.commit(GenerationId(1), B, {tp("t", 0): Offset(9)}).error == ILLEGAL_GENERATION
    assert newer.committed == {tp("t", 0): 5}


def test_a_rebalance_refuses_a_split_brain_assignment() -> None:
    """The model coordinator never gives one partition to two members."""
    with pytest.raises(ValueError, match="one member"):
        GroupModel().rebalance({A: frozenset({tp("t", 0)}), B: frozenset({tp("t", 0)})})
