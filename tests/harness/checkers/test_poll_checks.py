"""poll-skip, nonmonotonic-poll and read-uncommitted on tiny literal histories."""

from __future__ import annotations

import pytest

from harness.checkers import nonmonotonic_poll, poll_skip, read_uncommitted
from harness.history import HistoryBuilder


def _acked(n: int) -> HistoryBuilder:
    b = HistoryBuilder()
    for i in range(n):
        b.send("p0", "t", f"v{i}", offset=i)
    return b


def test_poll_skip_passes_on_contiguous_reads() -> None:
    """Successive polls continuing at the next offset skip nothing."""
    b = _acked(4)
    b.poll("c0", [("t", 0, 0, "v0"), ("t", 0, 1, "v1")])
    b.poll("c0", [("t", 0, 2, "v2"), ("t", 0, 3, "v3")])
    assert poll_skip(b.history()).valid


def test_poll_skip_fails_when_a_consumer_jumps_over_a_record_someone_read() -> None:
    """c0 reads 0 then 2 while c1 read offset 1: c0 skipped a record."""
    b = _acked(3)
    b.poll("c1", [("t", 0, 1, "v1")])
    first = b.poll("c0", [("t", 0, 0, "v0")])
    second = b.poll("c0", [("t", 0, 2, "v2")])
    result = poll_skip(b.history())
    assert result.count == 1
    assert {first, second} <= set(result.anomalies[0].events)


def test_poll_skip_ignores_offsets_nobody_knows_to_hold_a_record() -> None:
    """A gap over offsets never acked nor read (markers, unknown writes) is not a skip."""
    b = HistoryBuilder()
    b.send("p0", "t", "a", offset=0)
    b.send("p0", "t", "b", outcome="info")
    b.send("p0", "t", "c", offset=5)
    b.poll("c0", [("t", 0, 0, "a"), ("t", 0, 5, "c")])
    assert poll_skip(b.history()).valid


@pytest.mark.parametrize("between", ["seek", "assign", "subscribe", "rebalance", "poll-info"])
def test_poll_skip_and_nonmonotonic_allow_a_jump_after_a_reposition(between: str) -> None:
    """A seek, assign, subscribe, rebalance or unknown poll between reads legitimises any jump."""
    b = _acked(3)
    b.poll("c0", [("t", 0, 2, "v2")])
    if between == "seek":
        b.call("c0", "seek", {"topic": "t", "partition": 0, "offset": "earliest"})
    elif between == "assign":
        b.call("c0", "assign", {"partitions": [["t", 0]]})
    elif between == "subscribe":
        b.call("c0", "subscribe", {"group": "g", "topics": ["t"]})
    elif between == "rebalance":
        b.observe("c0", "rebalance", group="g", partitions=[["t", 0]])
    else:
        b.call("c0", "poll", outcome="info")
    b.poll("c0", [("t", 0, 0, "v0")])
    b.poll("c0", [("t", 0, 2, "v2")])
    h = b.history()
    # Going back from 2 to 0 was explained; going 0 -> 2 afterwards skips offset 1.
    assert nonmonotonic_poll(h).valid
    assert poll_skip(h).count == 1


def test_a_seek_of_another_partition_does_not_excuse_a_jump() -> None:
    """Only a seek of the same partition resets that partition's run."""
    b = _acked(3)
    b.poll("c0", [("t", 0, 0, "v0")])
    b.call("c0", "seek", {"topic": "t", "partition": 1, "offset": 0})
    b.poll("c0", [("t", 0, 2, "v2")])
    assert poll_skip(b.history()).count == 1


def test_nonmonotonic_poll_passes_across_partitions_and_consumers() -> None:
    """Offsets only have to increase per consumer and partition."""
    b = _acked(2)
    b.poll("c0", [("t", 0, 1, "v1"), ("t", 1, 0, "w0")])
    b.poll("c1", [("t", 0, 0, "v0")])
    assert nonmonotonic_poll(b.history()).valid


def test_nonmonotonic_poll_fails_on_a_step_back_or_repeat() -> None:
    """Reading offset 1 again, or 0 after 1, without a seek is nonmonotonic."""
    b = _acked(2)
    first = b.poll("c0", [("t", 0, 0, "v0"), ("t", 0, 1, "v1")])
    second = b.poll("c0", [("t", 0, 1, "v1")])
    result = nonmonotonic_poll(b.history())
    assert result.count == 1 and result.anomalies[0].events == (first, second)
    b.poll("c0", [("t", 0, 0, "v0")])
    assert nonmonotonic_poll(b.history()).count == 2


def test_read_uncommitted_passes_below_the_high_watermark() -> None:
    """Records below the high watermark reported in the same response are fine."""
    b = _acked(2)
    b.poll("c0", [("t", 0, 0, "v0"), ("t", 0, 1, "v1")], high_watermarks=[("t", 0, 2)])
    assert read_uncommitted(b.history()).valid


def test_read_uncommitted_fails_at_the_high_watermark() -> None:
    """A record at offset == high watermark was not yet committed."""
    b = _acked(2)
    poll = b.poll("c0", [("t", 0, 0, "v0"), ("t", 0, 1, "v1")], high_watermarks=[("t", 0, 1)])
    result = read_uncommitted(b.history())
    assert result.count == 1 and result.anomalies[0].events == (poll,)


def test_read_uncommitted_checks_the_lso_for_read_committed_consumers() -> None:
    """A read_committed consumer must stay below the last stable offset."""
    b = _acked(2)
    b.poll("c0", [("t", 0, 1, "v1")], high_watermarks=[("t", 0, 2)], last_stable_offsets=[("t", 0, 1)])
    result = read_uncommitted(b.history())
    assert result.count == 1 and "last stable offset" in result.anomalies[0].explanation
