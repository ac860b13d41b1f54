"""Consume-transform-produce transactions (KIP-447) through kconform's client interface
(``Producer.transaction`` with ``consumed``), on a real reference broker, with each library that
implements them: a committed one makes its output and its input positions visible together, an
aborted one neither, and the history records each as one ``txn`` with its ``poll``, sends and
``offsets`` (docs/history-format.md), judged clean by exactly-once-processing."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from harness.checkers import check
from harness.clients import (
    Consumed,
    ConsumedRecord,
    Consumer,
    ConsumerSettings,
    ProducerSettings,
    make_consumer,
    make_producer,
)
from harness.history import HistoryBuilder
from harness.targets.reference import ReferenceTarget
from tests.kafka_helpers import create_topic, produce, read_committed

pytestmark = [pytest.mark.clients, pytest.mark.timeout(300)]

CTP_CLIENTS = ("confluent-kafka", "kafka-python", "aiokafka", "java")


@pytest.fixture(scope="module")
def reference() -> Iterator[ReferenceTarget]:
    with ReferenceTarget() as target:
        yield target


def take(consumer: Consumer, expected: int) -> list[ConsumedRecord]:
    """What the group consumer takes (unrecorded, as a processor does) until ``expected`` records
    came, or 30 s (joining the group takes a few seconds)."""
    records: list[ConsumedRecord] = []
    deadline = time.monotonic() + 30
    while len(records) < expected and time.monotonic() < deadline:
        records += consumer.take(0.5)
    return records


@pytest.mark.parametrize("client", CTP_CLIENTS)
def test_a_consume_transform_produce_transaction_commits_output_and_offsets_together(
        reference: ReferenceTarget, client: str) -> None:
    source, sink, group = f"ctp-in-{client}", f"ctp-out-{client}", f"ctp-group-{client}"
    create_topic(reference.bootstrap, source, partitions=1)
    create_topic(reference.bootstrap, sink, partitions=2)
    produce(reference.bootstrap, source, [(None, f"in-{i}".encode()) for i in range(4)])
    history = HistoryBuilder()
    consumer = make_consumer(client, reference.bootstrap, group, ConsumerSettings(isolation_level="read_committed"),
                             history, "x0")
    producer = make_producer(client, reference.bootstrap, ProducerSettings(transactional_id=f"ctp-{client}"),
                             history, "x0")
    with consumer, producer:
        producer.init_transactions()
        consumer.subscribe([source])
        first = take(consumer, 2)[:2]
        assert [r.offset for r in first] == [0, 1]
        sends = [(sink, 0, None, producer.next_value()) for _ in first]
        assert producer.transaction(sends, False, consumed=Consumed(consumer, first)) == "abort"
        assert consumer.committed([(source, 0)]) == {(source, 0): -1}  # the aborted one committed nothing
        consumer.seek(source, 0, 0)  # back to the committed position, as KIP-447 applications do
        again = take(consumer, 4)
        assert [r.offset for r in again] == [0, 1, 2, 3]
        sends = [(sink, 1, None, producer.next_value()) for _ in again]
        assert producer.transaction(sends, True, consumed=Consumed(consumer, again)) == "commit"
        assert consumer.committed([(source, 0)]) == {(source, 0): 4}
    # Only the committed transaction's output is visible (the aborted one's x0-0, x0-1 are not).
    assert read_committed(reference.bootstrap, sink, history, 4) == ["x0-2", "x0-3", "x0-4", "x0-5"]
    txns = [e for e in history.history().raw if e["f"] == "txn"]
    assert txns[0]["value"]["ops"] == [["poll"], *[["send", sink, 0, None, f"x0-{i}"] for i in (0, 1)],
                                       ["offsets", group]]
    assert txns[0]["value"]["isolation_level"] == "read_committed"
    committed = txns[3]["value"]
    assert committed["outcome"] == "commit"
    assert committed["ops"][0] == ["poll", [[source, 0, o, None, f"in-{o}"] for o in range(4)]]
    assert committed["ops"][-1] == ["offsets", group, [[source, 0, 4]]]
    assert [op[0] for op in committed["ops"][1:-1]] == ["send"] * 4
    report = check(history.history())
    assert report.valid, report.anomalies
    assert "exactly-once-processing" not in report.skipped


class Crash(Exception):
    """The processor dies here."""


def crash() -> None:
    raise Crash


@pytest.mark.parametrize("client", CTP_CLIENTS)
def test_a_processor_that_crashes_in_its_transaction_is_fenced_and_its_successor_processes_the_input_once(
        reference: ReferenceTarget, client: str) -> None:
    """x0 crashes after its sends and its offsets, before the commit (the Java client's JVMs are
    SIGKILLed); x0.2, with the same transactional id, fences it (the coordinator aborts its open
    transaction) and processes the same input again from the group's committed position: only
    x0.2's output is visible, and each input was processed by exactly one committed transaction."""
    source, sink, group = f"ctp-crash-in-{client}", f"ctp-crash-out-{client}", f"ctp-crash-group-{client}"
    create_topic(reference.bootstrap, source, partitions=1)
    create_topic(reference.bootstrap, sink, partitions=1)
    produce(reference.bootstrap, source, [(None, f"in-{i}".encode()) for i in range(3)])
    history = HistoryBuilder()
    consumer_settings = ConsumerSettings(isolation_level="read_committed", session_timeout_ms=6000)
    producer_settings = ProducerSettings(transactional_id=f"ctp-crash-{client}")
    incarnations = []
    for process in ("x0", "x0.2"):
        producer = make_producer(client, reference.bootstrap, producer_settings, history, process)
        consumer = make_consumer(client, reference.bootstrap, group, consumer_settings, history, process)
        incarnations.append((consumer, producer))
        producer.init_transactions()
        consumer.subscribe([source])
        records = take(consumer, 3)
        assert [r.offset for r in records] == [0, 1, 2]
        sends = [(sink, 0, None, producer.next_value()) for _ in records]
        if process == "x0":
            with pytest.raises(Crash):
                producer.transaction(sends, True, consumed=Consumed(consumer, records), before_end=crash)
            consumer.crash()
            producer.crash()
        else:
            with consumer, producer:
                assert producer.transaction(sends, True, consumed=Consumed(consumer, records)) == "commit"
    if client == "java":
        assert all(not c._bridge.running for c in incarnations[0])  # type: ignore[attr-defined]
    assert read_committed(reference.bootstrap, sink, history, 3) == ["x0.2-0", "x0.2-1", "x0.2-2"]
    txns = [e for e in history.history().raw if e["f"] == "txn"]
    assert [(e["process"], e["type"]) for e in txns] == [("x0", "invoke"), ("x0.2", "invoke"), ("x0.2", "ok")]
    report = check(history.history())
    assert report.valid, report.anomalies
