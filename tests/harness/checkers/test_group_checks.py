"""committed-offset-regression and group-split-brain on tiny literal histories."""

from __future__ import annotations

from harness.checkers import committed_offset_regression, group_split_brain
from harness.history import HistoryBuilder


def _commit(b: HistoryBuilder, process: str, offset: int, generation: int | None = 1, outcome: str = "ok") -> int:
    return b.call(process, "commit", {"group": "g", "generation": generation, "member": process,
                                      "offsets": [["t", 0, offset]]}, outcome=outcome)


def test_regression_passes_on_increasing_commits_across_generations() -> None:
    """Commits that only move forward, generation after generation, are fine."""
    b = HistoryBuilder()
    _commit(b, "c0", 5)
    _commit(b, "c0", 9)
    _commit(b, "c1", 9, generation=2)
    _commit(b, "c1", 12, generation=2)
    assert committed_offset_regression(b.history()).valid


def test_regression_fails_when_a_commit_moves_back() -> None:
    """A later commit of a lower offset with no reset is a regression."""
    b = HistoryBuilder()
    first = _commit(b, "c0", 9)
    second = _commit(b, "c1", 5, generation=2)
    result = committed_offset_regression(b.history())
    assert result.count == 1 and result.anomalies[0].events == (first, first + 1, second, second + 1)


def test_regression_orders_by_generation_before_completion() -> None:
    """A stale generation's commit completing later is compared in generation order."""
    b = HistoryBuilder()
    _commit(b, "c1", 9, generation=2)
    _commit(b, "c0", 5, generation=1)
    assert committed_offset_regression(b.history()).valid


def test_regression_is_excused_by_a_reset_or_a_members_seek() -> None:
    """An explicit reset, or a seek by a group member, between two commits allows going back."""
    b = HistoryBuilder()
    _commit(b, "c0", 9)
    b.call("admin", "reset", {"group": "g", "offsets": [["t", 0, 0]]})
    _commit(b, "c0", 3)
    assert committed_offset_regression(b.history()).valid
    b = HistoryBuilder()
    b.call("c0", "subscribe", {"group": "g", "topics": ["t"]})
    _commit(b, "c0", 9)
    b.call("c0", "seek", {"topic": "t", "partition": 0, "offset": 2})
    _commit(b, "c0", 3)
    assert committed_offset_regression(b.history()).valid


def test_regression_ignores_failed_and_unknown_commits() -> None:
    """Only acknowledged commits are known to have applied."""
    b = HistoryBuilder()
    _commit(b, "c0", 9, outcome="fail")
    _commit(b, "c0", 12, outcome="info")
    _commit(b, "c0", 5)
    assert committed_offset_regression(b.history()).valid


def test_regression_fails_when_offset_fetch_answers_less_than_the_last_commit() -> None:
    """An OffsetFetch answering below the last acknowledged commit lost that commit."""
    b = HistoryBuilder()
    _commit(b, "c0", 9)
    fetch = b.call("c0", "committed", {"group": "g", "partitions": [["t", 0]]},
                   result={"offsets": [["t", 0, 4]]})
    result = committed_offset_regression(b.history())
    assert result.count == 1 and fetch in result.anomalies[0].events


def test_offset_fetch_may_see_a_commit_still_in_flight() -> None:
    """An answer equal to a concurrent (unknown) commit's offset is allowed."""
    b = HistoryBuilder()
    _commit(b, "c0", 9)
    pending = b.invoke("c0", "commit", group="g", generation=1, member="c0", offsets=[["t", 0, 4]])
    b.call("c1", "committed", {"group": "g", "partitions": [["t", 0]]}, result={"offsets": [["t", 0, 4]]})
    b.info(pending, "TIMEOUT")
    h = b.history()
    assert committed_offset_regression(h).valid


def test_split_brain_passes_when_generations_differ() -> None:
    """One partition moving between members across generations is a normal rebalance."""
    b = HistoryBuilder()
    b.observe("c0", "rebalance", group="g", generation=1, member="m0", partitions=[["t", 0]])
    b.observe("c1", "rebalance", group="g", generation=2, member="m1", partitions=[["t", 0]])
    b.observe("c0", "rebalance", group="g", generation=1, member="m0", partitions=[["t", 0]])
    assert group_split_brain(b.history()).valid


def test_split_brain_fails_when_two_members_own_a_partition_in_one_generation() -> None:
    """Two members reporting the same partition in one generation is split brain."""
    b = HistoryBuilder()
    first = b.observe("c0", "rebalance", group="g", generation=3, member="m0", partitions=[["t", 0], ["t", 1]])
    second = b.observe("observer", "assignment", group="g", generation=3, member="m1", partitions=[["t", 0]])
    b.observe("c2", "rebalance", group="g", partitions=[["t", 0]])  # no generation: not evidence
    result = group_split_brain(b.history())
    assert result.count == 1 and result.anomalies[0].events == (first, second)
