"""The delivery guarantees per consumer group on tiny literal histories."""

from __future__ import annotations

from harness.checkers import at_least_once, at_most_once, exactly_once
from harness.history import HistoryBuilder


def _group(reset: str = "earliest") -> HistoryBuilder:
    b = HistoryBuilder()
    for i in range(3):
        b.send("p0", "t", f"v{i}", offset=i)
    for c in ("c0", "c1"):
        b.call(c, "subscribe", {"group": "g", "topics": ["t"], "auto_offset_reset": reset})
    return b


def test_guarantees_are_skipped_without_a_group() -> None:
    """With no subscribe, delivery guarantees cannot be evaluated and say so."""
    b = HistoryBuilder()
    b.send("p0", "t", "a", offset=0)
    b.poll("c0", [("t", 0, 0, "a")])
    result = at_least_once(b.history())
    assert result.valid and result.skipped is not None and "group" in result.skipped


def test_exactly_once_passes_when_each_write_is_delivered_once() -> None:
    """Members sharing the partitions deliver every write once: all three guarantees hold."""
    b = _group()
    b.poll("c0", [("t", 0, 0, "v0"), ("t", 0, 1, "v1")])
    b.poll("c1", [("t", 0, 2, "v2")])
    h = b.history()
    assert exactly_once(h).valid and at_least_once(h).valid and at_most_once(h).valid


def test_at_least_once_fails_when_the_group_passes_over_a_write() -> None:
    """A write skipped by the group (e.g. committed before processing, then a crash) breaks it."""
    b = _group()
    b.poll("c0", [("t", 0, 0, "v0")])
    b.poll("c1", [("t", 0, 2, "v2")])
    h = b.history()
    result = at_least_once(h)
    assert result.count == 1 and "'v1'" in result.anomalies[0].explanation
    assert result.anomalies[0].group == "g" and result.anomalies[0].to_json()["group"] == "g"  # judged per group
    assert at_most_once(h).valid and not exactly_once(h).valid


def test_at_least_once_uses_a_group_drain_for_the_tail() -> None:
    """Writes after the last delivered offset are due only once a member drained the partition."""
    b = _group()
    b.poll("c0", [("t", 0, 0, "v0")])
    assert at_least_once(b.history()).valid
    d = b.invoke("c0", "drain", topics=["t"])
    b.ok(d)
    assert at_least_once(b.history()).count == 2


def test_at_least_once_with_latest_reset_starts_at_the_first_delivered_offset() -> None:
    """With auto_offset_reset=latest, offsets before the group's first read are not due."""
    b = _group(reset="latest")
    b.poll("c0", [("t", 0, 1, "v1"), ("t", 0, 2, "v2")])
    assert at_least_once(b.history()).valid


def test_at_most_once_fails_on_redelivery_to_another_member() -> None:
    """A record delivered to two members of the group (rebalance after processing) breaks it."""
    b = _group()
    first = b.poll("c0", [("t", 0, 0, "v0")])
    second = b.poll("c1", [("t", 0, 0, "v0")])
    h = b.history()
    result = at_most_once(h)
    assert result.count == 1 and {first, second} <= set(result.anomalies[0].events)
    assert result.anomalies[0].group == "g"
    assert at_least_once(h).valid


def test_reads_outside_the_group_are_not_deliveries() -> None:
    """A checking consumer outside the group reading everything again breaks nothing."""
    b = _group()
    b.poll("c0", [("t", 0, 0, "v0"), ("t", 0, 1, "v1"), ("t", 0, 2, "v2")])
    b.poll("checker", [("t", 0, 0, "v0"), ("t", 0, 1, "v1"), ("t", 0, 2, "v2")])
    assert exactly_once(b.history()).valid


def test_separate_groups_each_get_all_data() -> None:
    """Two groups reading the same records are each delivered once (the seed's diagram)."""
    b = _group()
    b.call("d0", "subscribe", {"group": "other", "topics": ["t"], "auto_offset_reset": "earliest"})
    rows = [("t", 0, 0, "v0"), ("t", 0, 1, "v1"), ("t", 0, 2, "v2")]
    b.poll("c0", rows)
    b.poll("d0", rows)
    assert exactly_once(b.history()).valid


def test_an_unknown_poll_may_have_delivered_what_the_member_skipped() -> None:
    """After an info poll, offsets between the member's reads before and after are not required."""
    b = _group()
    b.poll("c0", [("t", 0, 0, "v0")])
    b.call("c0", "poll", outcome="info")
    b.poll("c0", [("t", 0, 2, "v2")])
    assert at_least_once(b.history()).valid
    b.poll("c1", [("t", 0, 0, "v0")])  # another member's reads do not change that
    assert at_least_once(b.history()).valid
