"""Transactional producers through kconform's client interface (``Producer.transaction``), on a
real reference broker: each library's transactions are recorded as ``txn`` operations
(docs/history-format.md), judged clean by the checkers, and a fenced producer's transaction is
never recorded as committed. The Java client speaks transaction version 2 (KIP-890 part 2) with
the reference broker, also on a cluster, where partition leaders add partitions to the
transaction at a coordinator on another broker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.checkers import check
from harness.clients import ClientError, ProducerSettings, make_producer
from harness.history import HistoryBuilder
from harness.session import TRANSACTION_KEY, WireSession
from harness.targets.reference import ReferenceTarget
from reference_broker.protocol.api_keys import ApiKey
from tests.kafka_helpers import create_topic, read_committed

pytestmark = [pytest.mark.clients, pytest.mark.timeout(300)]

CLIENTS = ("confluent-kafka", "kafka-python", "aiokafka", "java")


@pytest.fixture(scope="module")
def reference() -> Iterator[ReferenceTarget]:
    with ReferenceTarget() as target:
        yield target


def settings(transactional_id: str) -> ProducerSettings:
    return ProducerSettings(transactional_id=transactional_id, transaction_timeout_ms=60_000)


@pytest.mark.parametrize("client", CLIENTS)
def test_transactions_are_recorded_as_txn_operations_and_judged_clean(reference: ReferenceTarget,
                                                                      client: str) -> None:
    topic = f"txc-{client}"
    create_topic(reference.bootstrap, topic, partitions=2)
    history = HistoryBuilder()
    with make_producer(client, reference.bootstrap, settings(f"txc-{client}"), history, "tp0") as producer:
        producer.init_transactions()
        outcomes = [producer.transaction([(topic, p, None, producer.next_value()) for p in (0, 1)], commit)
                    for commit in (True, False, True)]
    assert outcomes == ["commit", "abort", "commit"]
    seen = read_committed(reference.bootstrap, topic, history, 4)
    assert seen == ["tp0-0", "tp0-1", "tp0-4", "tp0-5"]
    txns = [e for e in history.history().raw if e["f"] == "txn" and e["type"] == "ok"]
    assert [e["value"]["outcome"] for e in txns] == ["commit", "abort", "commit"]
    assert all(op[0] == "send" and op[5] is not None for e in txns for op in e["value"]["ops"])
    assert all(isinstance(e["value"]["end_invoked"], int) for e in txns)
    report = check(history.history())
    assert report.valid, report.anomalies


@pytest.mark.parametrize("client", ["confluent-kafka", "java"])
def test_a_fenced_producer_never_records_its_transaction_as_committed(reference: ReferenceTarget, client: str) -> None:
    """The older instance of a transactional id, fenced by a newer one in the middle of its
    transaction, records that transaction as failed or unknown (never ok), and its records stay
    invisible to read_committed readers."""
    topic = f"txc-fenced-{client}"
    create_topic(reference.bootstrap, topic, partitions=2)
    history = HistoryBuilder()
    zombie = make_producer(client, reference.bootstrap, settings(topic), history, "tp0")
    successor = make_producer(client, reference.bootstrap, settings(topic), history, "tp1")
    with zombie, successor:
        zombie.init_transactions()
        assert zombie.transaction([(topic, 0, None, "tp0-0")], True) == "commit"
        successor.init_transactions()
        with pytest.raises(Exception):  # noqa: B017, PT011 - the library's fatal error, whatever its class
            zombie.transaction([(topic, 1, None, "tp0-1")], True)
        assert successor.transaction([(topic, 1, None, "tp1-0")], True) == "commit"
    zombie_txns = [e for e in history.history().raw if e["f"] == "txn" and e["process"] == "tp0"]
    assert [e["type"] for e in zombie_txns] == ["invoke", "ok", "invoke", zombie_txns[3]["type"]]
    assert zombie_txns[3]["type"] in ("fail", "info")
    assert read_committed(reference.bootstrap, topic, history, 2) == ["tp0-0", "tp1-0"]
    report = check(history.history())
    assert report.valid, report.anomalies


def test_kafka_python_gives_up_on_a_transactional_request_that_timed_out(reference: ReferenceTarget,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """kafka-python resends a transactional request after a disconnection but not after a
    timeout: its producer is then in its fatal state, whatever the error's class. A commit whose
    EndTxn timed out (the broker is paused from just before it until it has failed) is recorded
    as unknown, with the timeout's error code, and the producer is reported dead (fatal), so
    that the chaos workload replaces it rather than failing every later transaction."""
    topic = "txc-timed-out"
    create_topic(reference.bootstrap, topic, partitions=1)
    history = HistoryBuilder()
    broker = reference.process
    assert broker is not None
    quick = ProducerSettings(transactional_id="txc-timed-out", transaction_timeout_ms=60_000,
                             request_timeout_ms=1000, delivery_timeout_ms=5000)
    with make_producer("kafka-python", reference.bootstrap, quick, history, "tp0") as producer:
        producer.init_transactions()
        end_transaction = producer._end_transaction

        def end_with_the_broker_paused(commit: bool) -> None:
            broker.pause()
            try:
                end_transaction(commit)
            finally:
                broker.resume()

        monkeypatch.setattr(producer, "_end_transaction", end_with_the_broker_paused)
        with pytest.raises(ClientError) as raised:
            producer.transaction([(topic, 0, None, "tp0-0")], True)
    assert raised.value.fatal and not raised.value.abortable
    ended = [e for e in history.history().raw if e["f"] == "txn" and e["type"] != "invoke"]
    assert [(e["type"], e["value"]["error"]) for e in ended] == [("info", "REQUEST_TIMED_OUT")]


@pytest.mark.slow
def test_the_java_client_commits_and_aborts_on_a_cluster_with_transaction_version_2() -> None:
    """Three brokers: the Java client sends Produce v12 without AddPartitionsToTxn; the leaders
    of the topic's partitions (at least one not the coordinator's broker) have the coordinator
    add each partition (AddPartitionsToTxn v5 between brokers). Commit, abort, commit: only the
    committed records are read, and each EndTxn v5 bumped the epoch (DescribeTransactions)."""
    topic = transactional_id = "txc-java-cluster"
    with ReferenceTarget(brokers=3) as cluster:
        create_topic(cluster.bootstrap, topic, partitions=2)
        history = HistoryBuilder()
        with make_producer("java", cluster.bootstrap, settings(transactional_id), history, "tp0") as producer:
            producer.init_transactions()
            outcomes = [producer.transaction([(topic, p, None, producer.next_value()) for p in (0, 1)], commit)
                        for commit in (True, False, True)]
        assert outcomes == ["commit", "abort", "commit"]
        assert read_committed(cluster.bootstrap, topic, history, 4) == ["tp0-0", "tp0-1", "tp0-4", "tp0-5"]
        with WireSession(cluster.bootstrap) as s:
            coordinator = s.coordinator(transactional_id, TRANSACTION_KEY)
            assert {s.leader(topic, p) for p in (0, 1)} - {coordinator}, "no partition led elsewhere"
            (state,) = s.call(ApiKey.DESCRIBE_TRANSACTIONS, {"transactional_ids": [transactional_id]}, version=0,
                              address=coordinator).transaction_states
        assert (state.transaction_state, state.producer_epoch) == ("CompleteCommit", 3)  # 0, then one per EndTxn
        assert check(history.history()).valid
