"""nonmonotonic-send on tiny literal histories."""

from __future__ import annotations

from harness.checkers import nonmonotonic_send
from harness.history import HistoryBuilder


def test_nonmonotonic_send_passes_with_increasing_offsets_even_if_acked_out_of_order() -> None:
    """Pipelined sends acked out of order are fine when the offsets follow the invoke order."""
    b = HistoryBuilder()
    s1 = b.invoke("p0", "send", topic="t", partition=0, key=None, value="a")
    s2 = b.invoke("p0", "send", topic="t", partition=0, key=None, value="b")
    b.ok(s2, topic="t", partition=0, offset=1)
    b.ok(s1, topic="t", partition=0, offset=0)
    b.send("p1", "t", "c", offset=0, partition=1)  # another producer, another partition
    assert nonmonotonic_send(b.history()).valid


def test_nonmonotonic_send_fails_when_a_later_send_lands_lower() -> None:
    """The second send of one producer at a lower offset is reordering."""
    b = HistoryBuilder()
    b.send("p0", "t", "a", offset=5)
    b.send("p0", "t", "b", offset=4)
    result = nonmonotonic_send(b.history())
    assert result.count == 1 and result.anomalies[0].events == (0, 1, 2, 3)


def test_nonmonotonic_send_ignores_other_producers_and_unknown_outcomes() -> None:
    """Offsets are compared per producer and partition, among ok sends only."""
    b = HistoryBuilder()
    b.send("p0", "t", "a", offset=5)
    b.send("p1", "t", "b", offset=4)
    b.send("p0", "t", "c", outcome="info")
    b.send("p0", "t", "d", offset=6)
    b.send("p0", "t", "e", partition=None, offset=None, outcome="fail")
    assert nonmonotonic_send(b.history()).valid
