"""The shape of KAFKA-17754, made deterministic: the EndTxn of a producer's transaction, held
back and delivered late (sent here at the wire level, with the producer id and epoch that
transaction had), reaches the coordinator while the producer's next transaction is open.

Under transaction protocol version 1 (an EndTxn below v5) a producer keeps its epoch from one
transaction to the next, so the coordinator takes the late copy for the open transaction's end:
its first partition is committed or aborted early, and the partitions the client adds afterwards
form a transaction of their own. That is what Apache Kafka 3.9.2 does with any client, and
Apache Kafka 4.4.0 and the reference broker with a client that does not speak version 2
(aiokafka) or with ``transaction.version`` 1. Under version 2 (KIP-890 part 2: the Java client
4.x against Kafka 4.x or the reference broker at its default level) every transaction has an
epoch of its own and the late copy is fenced. The chaos campaign
``delayed-end-txn`` provokes the same with network delays (docs/findings.md); here it is
reproduced on purpose with real clients and real brokers, and the checkers must name what a
reader sees.
"""

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
from harness.targets import KafkaTarget, ReferenceTarget, Target
from harness.wire_transactions import FENCED, WireTransaction
from reference_broker.protocol.api_keys import ApiKey
from tests.kafka_helpers import create_topic, kafka_missing, read_committed

pytestmark = [pytest.mark.clients, pytest.mark.timeout(300)]

GAP_S = 1.5  # between a transaction's sends: time for the late EndTxn to be taken, or delivered
WAIT_S = 20.0


@pytest.fixture(scope="module")
def reference() -> Iterator[ReferenceTarget]:
    with ReferenceTarget() as target:
        yield target


@pytest.fixture(scope="module")
def reference_tv1() -> Iterator[ReferenceTarget]:
    """The reference broker at transaction version 1: no client is offered version 2's requests."""
    with ReferenceTarget(overrides={"kconform.transaction.version": "1"}) as target:
        yield target


@pytest.fixture(scope="module", params=["4.4.0", "3.9.2"])
def kafka(request: pytest.FixtureRequest) -> Iterator[KafkaTarget]:
    reason = kafka_missing(request.param)
    if reason is not None:
        pytest.skip(reason)
    with KafkaTarget(request.param, brokers=1) as target:
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


def _wait_open(s: WireSession, topic: str, log_end: int) -> tuple[int, int]:
    """The producer id and epoch once a transaction of ``topic`` (also the transactional id) is
    open and partition 0 of the topic ends at ``log_end`` or later."""
    deadline = time.monotonic() + WAIT_S
    while (ongoing := _ongoing(s, topic)) is None or s.list_offsets(topic, 0, LATEST).offset < log_end:
        assert time.monotonic() < deadline, f"no open transaction with partition 0 at {log_end}"
        time.sleep(0.02)
    return ongoing


def _late_end_txn(bootstrap: str, topic: str, late_commit: bool, bumps: list[int]) -> str:
    """The late copy: the first transaction's EndTxn(``late_commit``), with the epoch it had
    (its first record at offset 0), delivered once the next transaction is open with its first
    record in partition 0 (offset 2, after the first transaction's marker); the coordinator's
    answer. ``bumps`` gets how far the epoch moved from one transaction to the next
    (DescribeTransactions: 1 under transaction version 2, 0 under version 1)."""
    with WireSession(bootstrap) as s:
        first = _wait_open(s, topic, 1)
        second = _wait_open(s, topic, 3)
        bumps.append(second[1] - first[1])
        late = WireTransaction(s, topic)
        late.producer_id, late.epoch = first
        return late.end(late_commit)


@contextlib.contextmanager
def _producer(target: Target, client: str, topic: str) -> Iterator[tuple[Producer, HistoryBuilder]]:
    """A topic of two partitions and a transactional producer whose transactional id is the
    topic's name, recording into a history of its own."""
    create_topic(target.bootstrap, topic, partitions=2)
    history = HistoryBuilder()
    with make_producer(client, target.bootstrap, ProducerSettings(transactional_id=topic), history,
                       "tp0") as producer:
        producer.init_transactions()
        yield producer, history


def _with_late_end(producer: Producer, bootstrap: str, topic: str, sends: list[tuple[int, str]], commit: bool,
                   late_commit: bool, bumps: list[int] | None = None) -> tuple[str, list[str]]:
    """A first transaction (commit, 'tp0-a' to partition 0 then 'tp0-b' to partition 1), then
    the transaction of ``sends`` ((partition, value), GAP_S apart; the first to partition 0),
    during which the first one's late EndTxn(``late_commit``) arrives. How the second ended for
    the client, and the coordinator's answer to the late copy (or the error that kept it from
    being sent); ``bumps`` gets the epoch's move between the two."""
    answers: list[str] = []

    def deliver() -> None:
        try:
            answers.append(_late_end_txn(bootstrap, topic, late_commit, [] if bumps is None else bumps))
        except BaseException as exc:  # noqa: BLE001 - the test reads it from answers
            answers.append(f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=deliver)
    thread.start()
    try:
        first = producer.transaction([(topic, 0, None, "tp0-a"), (topic, 1, None, "tp0-b")], True, GAP_S)
        assert first == "commit"
        return producer.transaction([(topic, p, None, value) for p, value in sends], commit, GAP_S), answers
    finally:
        thread.join(WAIT_S)


def _late_commit_then_abort(target: Target, client: str,
                            bumps: list[int] | None = None) -> tuple[list[str], str, list[str], set[str]]:
    """The late EndTxn(commit) during a transaction the client aborts: the coordinator's answer
    to it, the transaction's outcome, what a read_committed reader reads, the anomalies."""
    topic = f"late-commit-{client}"
    with _producer(target, client, topic) as (producer, history):
        outcome, answers = _with_late_end(producer, target.bootstrap, topic, [(0, "tp0-0"), (1, "tp0-1")],
                                          commit=False, late_commit=True, bumps=bumps)
    return answers, outcome, read_committed(target.bootstrap, topic, history, 3), set(check(history.history()).anomalies)


@pytest.mark.parametrize(("client", "level"), [("aiokafka", 2), ("java", 1)])
def test_on_the_reference_a_late_commit_commits_the_next_transaction_early(
        request: pytest.FixtureRequest, client: str, level: int) -> None:
    """Transaction protocol version 1 (aiokafka speaks no other; the Java client is not offered
    version 2 by a broker at ``transaction.version`` 1): the late EndTxn(commit) ends the next
    transaction, which the client then aborts: a read_committed reader sees its first record
    (aborted-read); the record sent after it, to another partition, is aborted with what the
    client believes is its transaction. The epoch stays the same from one transaction to the
    next."""
    bumps: list[int] = []
    target = request.getfixturevalue("reference" if level == 2 else "reference_tv1")
    answers, outcome, read, anomalies = _late_commit_then_abort(target, client, bumps)
    assert answers == ["NONE"]  # taken as the open transaction's end
    assert bumps == [0]
    assert outcome == "abort"  # the client's abort ended the transaction tp0-1 started
    assert read == ["tp0-0", "tp0-a", "tp0-b"]
    assert "aborted-read" in anomalies, anomalies


def test_on_the_reference_transaction_version_2_fences_the_late_commit(reference: ReferenceTarget) -> None:
    """The Java client 4.4.0 reads the reference broker's finalized ``transaction.version`` 2
    and speaks version 2 (Produce v12 without AddPartitionsToTxn, EndTxn v5), as against Kafka
    4.4.0: EndTxn bumps the epoch (DescribeTransactions shows the next transaction one epoch
    up), the late copy is fenced, the first transaction is committed and the second aborted,
    and nothing is read that should not be."""
    bumps: list[int] = []
    answers, outcome, read, anomalies = _late_commit_then_abort(reference, "java", bumps)
    assert len(answers) == 1 and answers[0] in FENCED, answers
    assert bumps == [1]
    assert outcome == "abort" and read == ["tp0-a", "tp0-b"] and not anomalies, (outcome, read, anomalies)


@pytest.mark.slow
@pytest.mark.parametrize("client", ["aiokafka", "java"])
def test_on_apache_kafka_only_transaction_version_2_fences_the_late_commit(kafka: KafkaTarget, client: str) -> None:
    """Apache Kafka does the same with transaction protocol version 1: 3.9.2 with any client,
    4.4.0 with aiokafka (EndTxn below v5). The Java client 4.4.0 against Kafka 4.4.0 speaks
    version 2 (KIP-890 part 2): the next transaction has an epoch of its own, the late copy is
    fenced, and nothing is read that should not be."""
    answers, outcome, read, anomalies = _late_commit_then_abort(kafka, client)
    if client == "java" and kafka.version == "4.4.0":
        assert len(answers) == 1 and answers[0] in FENCED, answers
        assert outcome == "abort" and read == ["tp0-a", "tp0-b"] and not anomalies, (outcome, read, anomalies)
    else:
        assert answers == ["NONE"] and outcome == "abort"
        assert read == ["tp0-0", "tp0-a", "tp0-b"] and "aborted-read" in anomalies, (read, anomalies)


def test_a_late_abort_tears_the_next_transaction(reference: ReferenceTarget) -> None:
    """The late EndTxn(abort) ends a transaction the client then commits: its first record
    is aborted, the one sent after it committed alone. The reader passes over the aborted
    record between two committed ones of partition 0 (torn-transaction)."""
    topic = "late-abort"
    with _producer(reference, "aiokafka", topic) as (producer, history):
        outcome, answers = _with_late_end(producer, reference.bootstrap, topic, [(0, "tp0-0"), (1, "tp0-1")],
                                          commit=True, late_commit=False)
        assert producer.transaction([(topic, 0, None, "tp0-2")], True) == "commit"
    assert answers == ["NONE"] and outcome == "commit"
    assert read_committed(reference.bootstrap, topic, history, 4) == ["tp0-1", "tp0-2", "tp0-a", "tp0-b"]
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
    with _producer(reference, "aiokafka", topic) as (producer, history):
        refused, answers = _with_late_end(producer, reference.bootstrap, topic,
                                          [(0, "tp0-0"), (1, "tp0-1"), (0, "tp0-2")], commit=True, late_commit=True)
        with pytest.raises(ClientError) as raised:
            producer.transaction([(topic, 0, None, "tp0-3")], True)
    assert answers == ["NONE"] and refused == "fail"
    assert raised.value.fatal and raised.value.error == "OUT_OF_ORDER_SEQUENCE_NUMBER"
    ended = [(e["type"], e["value"]["error"]) for e in history.history().raw if e["f"] == "txn" and e["type"] == "fail"]
    assert ended == [("fail", "INVALID_TXN_STATE"), ("fail", "OUT_OF_ORDER_SEQUENCE_NUMBER")]
