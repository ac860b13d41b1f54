"""The positions a consume-transform-produce transaction commits (``harness.clients.next_offsets``)
and how its polled records are recorded (``rows``): pure functions of the records taken."""

from __future__ import annotations

from harness.clients import ConsumedRecord, next_offsets, rows


def test_the_positions_are_one_past_the_last_record_taken_of_each_partition() -> None:
    records = [ConsumedRecord("in", 0, 7, None, b"a"), ConsumedRecord("in", 1, 3, None, b"b"),
               ConsumedRecord("in", 0, 9, None, b"c"), ConsumedRecord("in", 0, 8, None, b"d")]
    assert next_offsets(records) == {("in", 0): 10, ("in", 1): 4}
    assert next_offsets([]) == {}


def test_polled_records_are_recorded_as_a_polls_records() -> None:
    records = [ConsumedRecord("in", 0, 7, b"k", b"v"), ConsumedRecord("in", 1, 3, None, b"\xff")]
    assert rows(records) == [["in", 0, 7, "k", "v"], ["in", 1, 3, None, "hex:ff"]]
