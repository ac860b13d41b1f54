"""The shape of KAFKA-17754, made deterministic: a late copy of a producer's EndTxn (sent here
at the wire level, with the producer's id and epoch, as the copy a timed-out connection
delivers late) lands on the producer's next transaction. Under transaction protocol version 1
(every client kconform drives transactions with: none sends EndTxn v5) the coordinator takes it
for that transaction's end, as Apache Kafka does: its first partition is committed early and
the partitions the client adds afterwards form a transaction of their own. The chaos campaign
``delayed-end-txn`` provokes the same with network delays (docs/findings.md); here it is
reproduced on purpose, with a real aiokafka producer and a real reference broker, and the
checkers must name what a reader sees."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import pytest

from harness.checkers import check
from harness.clients import ClientError, Producer, ProducerSettings, make_producer
from harness.history import HistoryBuilder
from harness.session import LATEST, TRANSACTION_KEY, WireSession
from harness.targets.reference import ReferenceTarget
from harness.wire_transactions import WireTransaction
from reference_broker.protocol.api_keys import ApiKey
from tests.harness.test_transactional_clients import read_committed
from tests.kafka_helpers import create_topic

pytestmark = [pytest.mark.clients, pytest.mark.timeout(300)]

GAP_S = 1.5  # between the transaction's sends: time to deliver the late EndTxn in between
WAIT_S = 10.0


@pytest.fixture(scope="module")
def reference() -> Iterator[ReferenceTarget]:
    with ReferenceTarget() as target:
        yield target


def _ongoing(s: WireSession, transactional_id: str) -> tuple[int, int] | None:
    """The producer id and epoch of the transactional id's open transaction, or None
    (ListTransactions, then DescribeTransactions, KIP-664: only once a transaction is open,
    because kio cannot decode the start time -1 Kafka answers for one that is not)."""
    coordinator = s.coordinator(transactional_id, TRANSACTION_KEY)
    listed = s.call(ApiKey.LIST_TRANSACTIONS, {"state_filters": ["Ongoing"], "producer_id_filters": []},
                    version=0, address=coordinator).transaction_states
    if transactional_id not in [t.transactional_id for t in listed]:
        return None
    (state,) = s.call(ApiKey.DESCRIBE_TRANSACTIONS, {"transactional_ids": [transactional_id]}, version=0,
                      address=coordinator).transaction_states
    return int(state.producer_id), int(state.producer_epoch)


def _late_end_txn(bootstrap: str, transactional_id: str, commit: bool, log_end: int) -> str:
    """Once the producer's transaction is open and its first record is in the log (partition 0
    of the topic named like the transactional id ends at ``log_end``), the late EndTxn of its
    previous transaction, with its id and epoch; the coordinator's answer."""
    with WireSession(bootstrap) as s:
        deadline = time.monotonic() + WAIT_S
        while (ongoing := _ongoing(s, transactional_id)) is None or s.list_offsets(
                transactional_id, 0, LATEST).offset < log_end:
            assert time.monotonic() < deadline, "the transaction never opened, or its first record never came"
            time.sleep(0.02)
        late = WireTransaction(s, transactional_id)
        late.producer_id, late.epoch = ongoing
        return late.end(commit)


@contextlib.contextmanager
def _producer(reference: ReferenceTarget, topic: str) -> Iterator[tuple[Producer, HistoryBuilder]]:
    """A topic of two partitions and a transactional aiokafka producer whose transactional id
    is the topic's name, recording into a history of its own."""
    create_topic(reference.bootstrap, topic, partitions=2)
    history = HistoryBuilder()
    with make_producer("aiokafka", reference.bootstrap, ProducerSettings(transactional_id=topic), history,
                       "tp0") as producer:
        producer.init_transactions()
        yield producer, history


def _with_late_end(producer: Producer, bootstrap: str, topic: str, sends: list[tuple[int, str]], commit: bool,
                   late_commit: bool, log_end: int = 1) -> tuple[str, list[str]]:
    """A transaction of ``sends`` ((partition, value), GAP_S apart) during which the late
    EndTxn(``late_commit``) arrives; how it ended for the client, and the coordinator's answer
    to the late EndTxn (or the error that kept it from being sent)."""
    answers: list[str] = []

    def deliver() -> None:
        try:
            answers.append(_late_end_txn(bootstrap, topic, late_commit, log_end))
        except BaseException as exc:  # noqa: BLE001 - the test reads it from answers
            answers.append(f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=deliver)
    thread.start()
    try:
        return producer.transaction([(topic, p, None, value) for p, value in sends], commit, GAP_S), answers
    finally:
        thread.join(WAIT_S)


def test_a_late_commit_commits_the_next_transaction_early(reference: ReferenceTarget) -> None:
    """The late EndTxn(commit) ends a transaction the client then aborts: a read_committed
    reader sees its first record (aborted-read); the record sent after it, to another
    partition, is aborted with what the client believes is its transaction."""
    with _producer(reference, "late-commit") as (producer, history):
        outcome, answers = _with_late_end(producer, reference.bootstrap, "late-commit", [(0, "tp0-0"), (1, "tp0-1")],
                                          commit=False, late_commit=True)
    assert answers == ["NONE"]  # taken as the open transaction's end
    assert outcome == "abort"  # the client's abort ended the transaction tp0-1 started
    assert read_committed(reference.bootstrap, "late-commit", history, 1) == ["tp0-0"]
    report = check(history.history())
    assert set(report.anomalies) == {"aborted-read"}, report.anomalies


def test_a_late_abort_tears_the_next_transaction(reference: ReferenceTarget) -> None:
    """The late EndTxn(abort) ends a transaction the client then commits: its first record
    is aborted, the one sent after it committed alone. The reader passes over the aborted
    record between two committed ones of partition 0 (torn-transaction)."""
    topic = "late-abort"
    with _producer(reference, topic) as (producer, history):
        assert producer.transaction([(topic, 0, None, "tp0-0")], True) == "commit"  # offsets 0 and 1 (marker)
        outcome, answers = _with_late_end(producer, reference.bootstrap, topic, [(0, "tp0-1"), (1, "tp0-2")],
                                          commit=True, late_commit=False, log_end=3)
        assert producer.transaction([(topic, 0, None, "tp0-3")], True) == "commit"
    assert answers == ["NONE"] and outcome == "commit"
    assert read_committed(reference.bootstrap, topic, history, 3) == ["tp0-0", "tp0-2", "tp0-3"]
    report = check(history.history())
    assert "torn-transaction" in report.anomalies, report.anomalies


def test_aiokafka_is_dead_after_a_batch_refused_outright(reference: ReferenceTarget) -> None:
    """After the late commit the client adds another partition (a new transaction at the
    coordinator), then sends to the first partition again: transaction verification (KIP-890
    part 1) refuses that batch, the client aborts. aiokafka keeps the refused batch's sequence
    numbers used and never bumps its epoch, so every later batch there is refused with
    OUT_OF_ORDER_SEQUENCE_NUMBER: kconform reports the producer as dead (fatal), so that a
    workload replaces it."""
    topic = "late-then-gap"
    with _producer(reference, topic) as (producer, history):
        refused, answers = _with_late_end(producer, reference.bootstrap, topic,
                                          [(0, "tp0-0"), (1, "tp0-1"), (0, "tp0-2")], commit=True, late_commit=True)
        with pytest.raises(ClientError) as raised:
            producer.transaction([(topic, 0, None, "tp0-3")], True)
    assert answers == ["NONE"] and refused == "fail"
    assert raised.value.fatal and raised.value.error == "OUT_OF_ORDER_SEQUENCE_NUMBER"
    ended = [(e["type"], e["value"]["error"]) for e in history.history().raw if e["f"] == "txn" and e["type"] != "invoke"]
    assert ended == [("fail", "INVALID_TXN_STATE"), ("fail", "OUT_OF_ORDER_SEQUENCE_NUMBER")]
