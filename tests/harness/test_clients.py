"""Each client library, through the one interface, round-trips records against a reference broker
and records a history the checkers accept."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.checkers import check
from harness.clients import CLIENTS, ConsumerSettings, ProducerSettings, make_consumer, make_producer
from harness.history import HistoryBuilder
from harness.session import LATEST, WireSession
from harness.targets import ReferenceTarget
from specs.produce import Outcome

pytestmark = pytest.mark.clients


@pytest.fixture(scope="module")
def target() -> Iterator[ReferenceTarget]:
    with ReferenceTarget() as t:
        yield t


@pytest.mark.parametrize("client", CLIENTS)
def test_round_trip_records_a_valid_history(target: ReferenceTarget, client: str) -> None:
    """Sends are acknowledged with offsets, a drain reads them all back, and the history is valid."""
    topic = f"rt-{client}"
    with WireSession(target.bootstrap) as s:
        assert s.create_topic(topic, 2) == "NONE"
        history = HistoryBuilder({"client": client})
        producer = make_producer(client, target.bootstrap, ProducerSettings(), history, "p0")
        try:
            first = producer.send(topic, None, producer.next_value(), partition=1).result(30)
            handles = [producer.send(topic, f"k{i}", producer.next_value()) for i in range(60)]
            assert producer.flush(30) == 0
        finally:
            producer.close()
        assert (first.outcome, first.partition, first.offset) == (Outcome.SUCCESS, 1, 0)
        assert all(h.result(1).outcome is Outcome.SUCCESS for h in handles)
        ends = {tp: r.offset for tp, r in s.list_offsets_many([(topic, 0), (topic, 1)], LATEST).items()}
    assert sum(ends.values()) == 61
    consumer = make_consumer(client, target.bootstrap, None, ConsumerSettings(), history, "c0")
    try:
        consumer.assign(sorted(ends), {tp: 0 for tp in ends})
        assert consumer.drain(ends, 30)
    finally:
        consumer.close()
    h = history.history()
    report = check(h)
    assert report.valid, report.anomalies
    assert "unseen" not in report.skipped  # the drain completed, so unseen writes were checked
    reads = [r for e in h.raw if e["f"] == "poll" and e["type"] == "ok" for r in e["value"]["records"]]
    assert len(reads) == 61 and len({r[4] for r in reads}) == 61


@pytest.mark.parametrize("client", CLIENTS)
def test_group_commit_and_committed(target: ReferenceTarget, client: str) -> None:
    """A subscribed consumer reports its assignment as a rebalance, commits, and reads the
    commit back."""
    topic, group = f"grp-{client}", f"g-{client}"
    with WireSession(target.bootstrap) as s:
        assert s.create_topic(topic, 1) == "NONE"
    history = HistoryBuilder()
    producer = make_producer(client, target.bootstrap, ProducerSettings(), history, "p0")
    try:
        for _ in range(5):
            producer.send(topic, None, producer.next_value())
        assert producer.flush(30) == 0
    finally:
        producer.close()
    consumer = make_consumer(client, target.bootstrap, group, ConsumerSettings(), history, "c0")
    try:
        consumer.subscribe([topic])
        got = []
        for _ in range(60):
            got += consumer.poll(0.5)
            if len(got) >= 5:
                break
        assert [r.offset for r in got] == [0, 1, 2, 3, 4]
        consumer.commit({(topic, 0): 5})
        assert consumer.committed([(topic, 0)]) == {(topic, 0): 5}
    finally:
        consumer.close()
    h = history.history()
    rebalances = [e for e in h.raw if e["f"] == "rebalance"]
    assert rebalances and rebalances[-1]["value"]["partitions"] == [[topic, 0]]  # the final assignment
    assert check(h).valid


@pytest.mark.parametrize("client", CLIENTS)
def test_a_record_too_large_is_a_definite_failure(target: ReferenceTarget, client: str) -> None:
    """A record over the producer's size limit is never sent: the history records fail, not info."""
    history = HistoryBuilder()
    producer = make_producer(client, target.bootstrap, ProducerSettings(), history, "p0")
    try:
        delivery = producer.send("too-large", None, "x" * (3 << 20)).result(30)
    finally:
        producer.close()
    assert delivery.outcome is Outcome.FAILURE, delivery
    completions = [e for e in history.history().raw if e["f"] == "send" and e["type"] != "invoke"]
    assert [e["type"] for e in completions] == ["fail"]
