"""inconsistent-offsets, duplicate, lost-write, unseen and aborted-read on tiny literal histories."""

from __future__ import annotations

from harness.checkers import aborted_read, duplicate, inconsistent_offsets, lost_write, unseen
from harness.history import HistoryBuilder


def _three_acked() -> HistoryBuilder:
    b = HistoryBuilder()
    for i, v in enumerate("abc"):
        b.send("p0", "t", v, offset=i)
    return b


def test_inconsistent_offsets_passes_when_reads_agree_with_acks() -> None:
    """Reads that find each acked value at its acked offset are consistent."""
    b = _three_acked()
    b.poll("c0", [("t", 0, 0, "a"), ("t", 0, 1, "b")])
    assert inconsistent_offsets(b.history()).valid


def test_inconsistent_offsets_fails_when_an_offset_holds_two_values() -> None:
    """An acked offset read holding another value is witnessed by the ack and the read."""
    b = _three_acked()
    b.send("p1", "t", "x", outcome="info")
    poll = b.poll("c0", [("t", 0, 1, "x")])
    result = inconsistent_offsets(b.history())
    assert result.count == 1
    assert result.anomalies[0].events == (2, 3, poll)  # send b invoke + ok, the poll completion
    assert "'b', 'x'" in result.anomalies[0].explanation


def test_inconsistent_offsets_between_two_reads_only() -> None:
    """Two consumers reading different values at one offset is inconsistent without any ack."""
    b = HistoryBuilder()
    b.poll("c0", [("t", 0, 5, "x")])
    b.poll("c1", [("t", 0, 5, "y")])
    assert inconsistent_offsets(b.history()).count == 1


def test_duplicate_passes_when_rereading_the_same_offset() -> None:
    """Reading a value twice at the same offset is not a duplicate."""
    b = _three_acked()
    b.poll("c0", [("t", 0, 0, "a")])
    b.poll("c1", [("t", 0, 0, "a")])
    assert duplicate(b.history()).valid


def test_duplicate_fails_when_a_value_is_at_two_offsets() -> None:
    """A value acked at 0 and read at 3 is a duplicate (e.g. a retried non-idempotent send)."""
    b = _three_acked()
    poll = b.poll("c0", [("t", 0, 3, "a")])
    result = duplicate(b.history())
    assert result.count == 1 and result.anomalies[0].events == (0, 1, poll)


def test_duplicate_of_an_info_send_is_still_a_duplicate() -> None:
    """An indeterminate send read at two offsets was written twice."""
    b = HistoryBuilder()
    b.send("p0", "t", "a", outcome="info")
    b.poll("c0", [("t", 0, 0, "a"), ("t", 0, 1, "a")])
    assert duplicate(b.history()).count == 1


def test_lost_write_passes_when_every_passed_offset_was_read() -> None:
    """Contiguous reads through every acked offset lose nothing."""
    b = _three_acked()
    b.poll("c0", [("t", 0, 0, "a"), ("t", 0, 1, "b")])
    b.poll("c0", [("t", 0, 2, "c")])
    assert lost_write(b.history()).valid


def test_lost_write_fails_when_a_consumer_reads_past_an_acked_write() -> None:
    """An acked write never read, with reads on both sides of it, is lost."""
    b = _three_acked()
    first = b.poll("c0", [("t", 0, 0, "a")])
    second = b.poll("c0", [("t", 0, 2, "c")])
    result = lost_write(b.history())
    assert result.count == 1
    assert result.anomalies[0].events == (2, 3, first, second)


def test_lost_write_ignores_info_and_failed_sends() -> None:
    """A write whose outcome is unknown or failed is never lost."""
    b = HistoryBuilder()
    b.send("p0", "t", "a", offset=0)
    b.send("p0", "t", "b", outcome="info")
    b.send("p0", "t", "c", outcome="fail", error="NOT_ENOUGH_REPLICAS")
    b.send("p0", "t", "d", outcome="")  # never completed
    b.send("p0", "t", "e", offset=1)
    b.poll("c0", [("t", 0, 0, "a"), ("t", 0, 1, "e")])
    assert lost_write(b.history()).valid


def test_lost_write_is_not_claimed_across_a_seek() -> None:
    """A consumer that seeks past an acked write did not read through it: not lost."""
    b = _three_acked()
    b.poll("c0", [("t", 0, 0, "a")])
    b.call("c0", "seek", {"topic": "t", "partition": 0, "offset": 2})
    b.poll("c0", [("t", 0, 2, "c")])
    assert lost_write(b.history()).valid


def test_lost_write_is_not_claimed_when_reading_starts_past_it() -> None:
    """Reading a later offset first (e.g. from a committed offset) says nothing about earlier ones."""
    b = _three_acked()
    b.poll("c0", [("t", 0, 2, "c")])
    assert lost_write(b.history()).valid


def test_unseen_is_skipped_without_a_drain() -> None:
    """Without a final drain, an unread write may just be unread yet: skipped with a reason."""
    b = _three_acked()
    result = unseen(b.history())
    assert result.valid and result.skipped is not None and "drain" in result.skipped


def test_unseen_passes_when_the_drain_reads_everything() -> None:
    """A drain that reads every acked write leaves nothing unseen."""
    b = _three_acked()
    d = b.invoke("c9", "drain", topics=["t"])
    b.poll("c9", [("t", 0, 0, "a"), ("t", 0, 1, "b"), ("t", 0, 2, "c")])
    b.ok(d)
    assert unseen(b.history()).valid


def test_unseen_fails_when_the_drain_misses_an_acked_write() -> None:
    """An acked write at the end of the log that the drain never returned is unseen."""
    b = _three_acked()
    d = b.invoke("c9", "drain", topics=["t"])
    b.poll("c9", [("t", 0, 0, "a"), ("t", 0, 1, "b")])
    done = b.ok(d)
    result = unseen(b.history())
    assert result.count == 1 and result.anomalies[0].events == (4, 5, d, done)


def test_unseen_ignores_writes_acked_after_the_drain_started_or_outside_its_scope() -> None:
    """Only writes acked before the drain began, in partitions it covers, are due."""
    b = HistoryBuilder()
    b.send("p0", "u", "other-topic", offset=0)
    b.send("p0", "t", "p1-write", partition=1, offset=0)
    d = b.invoke("c9", "drain", partitions=[["t", 0]])
    b.send("p0", "t", "late", offset=0)
    b.ok(d)
    assert unseen(b.history()).valid


def test_unseen_does_not_double_count_a_lost_write() -> None:
    """A write already reported as lost-write is not also unseen."""
    b = _three_acked()
    d = b.invoke("c9", "drain")
    b.poll("c9", [("t", 0, 0, "a"), ("t", 0, 2, "c")])
    b.ok(d)
    h = b.history()
    assert lost_write(h).count == 1 and unseen(h).valid


def test_aborted_read_passes_when_failed_writes_stay_unread() -> None:
    """A definitely failed send that nobody reads is fine; reading an info send is fine."""
    b = HistoryBuilder()
    b.send("p0", "t", "a", outcome="fail", error="MESSAGE_TOO_LARGE")
    b.send("p0", "t", "b", outcome="info")
    b.poll("c0", [("t", 0, 0, "b")])
    assert aborted_read(b.history()).valid


def test_aborted_read_fails_when_a_failed_write_is_read() -> None:
    """Reading a value whose send definitely failed is G1a."""
    b = HistoryBuilder()
    b.send("p0", "t", "a", outcome="fail", error="MESSAGE_TOO_LARGE")
    poll = b.poll("c0", [("t", 0, 0, "a")])
    result = aborted_read(b.history())
    assert result.count == 1 and result.anomalies[0].events == (0, 1, poll)
    assert "MESSAGE_TOO_LARGE" in result.anomalies[0].explanation


def test_duplicate_when_a_read_comes_before_the_acknowledgement() -> None:
    """A value read at one offset and acknowledged later at another is a duplicate; same offset is not."""
    b = HistoryBuilder()
    i = b.invoke("p0", "send", topic="t", partition=0, key=None, value="a")
    b.poll("c0", [("t", 0, 0, "a")])
    b.poll("c1", [("t", 0, 0, "a")])
    b.ok(i, topic="t", partition=0, offset=0)
    assert duplicate(b.history()).valid
    b = HistoryBuilder()
    i = b.invoke("p0", "send", topic="t", partition=0, key=None, value="a")
    read = b.poll("c0", [("t", 0, 3, "a")])
    ack = b.ok(i, topic="t", partition=0, offset=0)
    result = duplicate(b.history())
    assert result.count == 1 and {read, ack} <= set(result.anomalies[0].events)


def test_lost_write_fails_when_a_later_reader_finds_another_value_at_its_offset() -> None:
    """An acked write whose offset a reader that started after the ack finds holding another
    value was replaced (a failover reused its offset): lost, even if someone read it before."""
    b = HistoryBuilder()
    b.send("p0", "t", "a", offset=0)
    b.send("p0", "t", "b", offset=1)
    b.poll("c0", [("t", 0, 0, "a"), ("t", 0, 1, "b")])
    b.send("p1", "t", "z", offset=1)  # the new leader reused offset 1
    later = b.poll("c1", [("t", 0, 0, "a"), ("t", 0, 1, "z")])
    result = lost_write(b.history())
    assert result.count == 1 and "'b'" in result.anomalies[0].explanation
    assert result.anomalies[0].events == (2, 3, later)
    assert inconsistent_offsets(b.history()).count == 1


def test_lost_write_is_not_claimed_from_a_read_that_started_before_the_ack() -> None:
    """A read invoked before a write was acknowledged cannot show that write missing: the
    conflict is inconsistent-offsets only."""
    b = HistoryBuilder()
    b.send("p0", "t", "a", offset=0)
    poll = b.invoke("c0", "poll")
    b.send("p1", "t", "b", offset=1)
    b.ok(poll, records=[["t", 0, 0, None, "a"], ["t", 0, 1, None, "z"]])
    h = b.history()
    assert lost_write(h).valid and inconsistent_offsets(h).count == 1
