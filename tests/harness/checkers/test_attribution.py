"""Whose fault a duplicate is, read from the batch identities a precise read recorded."""

from __future__ import annotations

from harness.checkers import at_most_once, check, duplicate, inconsistent_offsets
from harness.checkers.attribution import Blame, worst
from harness.history import HistoryBuilder

LIBRDKAFKA = "confluent-kafka 2.16.1 (librdkafka 2.16.0)"


def _duplicated(first: tuple[int, int, int], second: tuple[int, int, int], *,
                clients: dict[str, str] | None = None) -> HistoryBuilder:
    """p0 sends `a` once (acknowledged at offset 3); the drain finds it at offsets 0 and 3,
    in two batches whose (producer id, epoch, base sequence) are `first` and `second`."""
    b = HistoryBuilder({"clients": clients if clients is not None else {"p0": LIBRDKAFKA}})
    b.send("p0", "t", "a", offset=3)
    b.poll("drain", [("t", 0, 0, "a"), ("t", 0, 1, "b"), ("t", 0, 3, "a")],
           batches=[("t", 0, 0, 1, *first), ("t", 0, 3, 3, *second)])
    return b


def test_one_batch_stored_twice_is_the_brokers_fault() -> None:
    """The same producer id, epoch and sequence at two offsets: the broker did not deduplicate."""
    [anomaly] = duplicate(_duplicated((7, 0, 12), (7, 0, 12)).history()).anomalies
    assert anomaly.attribution is not None
    assert anomaly.attribution.blame is Blame.BROKER and anomaly.attribution.cause == "not-deduplicated"


def test_a_resend_under_a_bumped_epoch_is_the_clients_fault_and_names_the_client() -> None:
    """The same producer id under a new epoch: the client resent it; librdkafka's is a known bug."""
    [anomaly] = duplicate(_duplicated((7, 0, 12), (7, 1, 0)).history()).anomalies
    a = anomaly.attribution
    assert a is not None and a.blame is Blame.CLIENT and a.cause == "epoch-bump-resend"
    assert LIBRDKAFKA in a.detail and "0 -> 1" in a.detail
    assert a.known is not None and "4953" in a.known


def test_a_known_bug_is_only_named_for_the_client_that_has_it() -> None:
    """The same evidence from another client is still the client's fault, with no known bug."""
    history = _duplicated((7, 0, 12), (7, 1, 0), clients={"p0": "java (Apache Kafka kafka-clients 4.4.0)"}).history()
    [anomaly] = duplicate(history).anomalies
    assert anomaly.attribution is not None and anomaly.attribution.blame is Blame.CLIENT
    assert anomaly.attribution.known is None


def test_the_record_sequence_is_the_batch_base_plus_the_offset_delta() -> None:
    """Offset 1 of a batch based at 0 with base sequence 11 has sequence 12, the same as a
    one-record batch with base sequence 12 elsewhere: one record stored twice (broker)."""
    b = HistoryBuilder()
    b.send("p0", "t", "b", offset=1)
    b.poll("drain", [("t", 0, 0, "a"), ("t", 0, 1, "b"), ("t", 0, 2, "b")],
           batches=[("t", 0, 0, 1, 7, 0, 11), ("t", 0, 2, 2, 7, 0, 12)])
    [anomaly] = duplicate(b.history()).anomalies
    assert anomaly.attribution is not None and anomaly.attribution.blame is Blame.BROKER


def test_another_producer_id_or_sequence_or_no_producer_id_is_the_clients() -> None:
    """A new producer id, a renumbered resend and a non-idempotent resend are the client's."""
    causes = {}
    for first, second in (((7, 0, 12), (8, 0, 0)), ((7, 0, 12), (7, 0, 40)), ((-1, -1, -1), (-1, -1, -1))):
        [anomaly] = duplicate(_duplicated(first, second).history()).anomalies
        assert anomaly.attribution is not None and anomaly.attribution.blame is Blame.CLIENT
        causes[anomaly.attribution.cause] = anomaly.attribution.detail
    assert set(causes) == {"new-producer-id", "resequenced", "not-idempotent"}


def test_without_batch_identities_a_duplicate_is_unattributed() -> None:
    """A duplicate seen only by reads that recorded no batches (a client library, a version 1
    history) cannot be pinned on anyone."""
    b = HistoryBuilder()
    b.send("p0", "t", "a", offset=0)
    b.poll("c0", [("t", 0, 0, "a"), ("t", 0, 1, "a")])
    [anomaly] = duplicate(b.history()).anomalies
    assert anomaly.attribution is not None and anomaly.attribution.blame is Blame.UNATTRIBUTED
    assert "t-0@1" in anomaly.attribution.detail or "t-0@0" in anomaly.attribution.detail


def test_an_offset_holding_two_records_is_the_brokers_fault() -> None:
    """inconsistent-offsets rests on the broker's own answers (it assigns offsets)."""
    b = HistoryBuilder()
    b.poll("c0", [("t", 0, 5, "x")])
    b.poll("c1", [("t", 0, 5, "y")])
    [anomaly] = inconsistent_offsets(b.history()).anomalies
    assert anomaly.attribution is not None and anomaly.attribution.blame is Blame.BROKER


def test_a_group_given_the_logs_two_copies_inherits_the_duplicates_attribution() -> None:
    """at-most-once broken because the log holds a value twice (client epoch bump) is the
    client's fault; a group reading one offset twice has no rule (unattributed)."""
    b = _duplicated((7, 0, 12), (7, 1, 0))
    b.call("c1", "subscribe", {"group": "g", "topics": ["t"], "auto_offset_reset": "earliest"})
    b.poll("c1", [("t", 0, 0, "a"), ("t", 0, 1, "b"), ("t", 0, 3, "a")])
    b.poll("c1", [("t", 0, 1, "b")])
    result = at_most_once(b.history())
    blames = {a.explanation.split("value ")[1].split(" ")[0]: a.attribution for a in result.anomalies}
    assert blames["'a'"] is not None and blames["'a'"].blame is Blame.CLIENT
    assert blames["'b'"] is not None and blames["'b'"].blame is Blame.UNATTRIBUTED


def test_a_history_without_anomalies_attributes_nothing() -> None:
    """No anomaly, no attribution (the check of a clean history is untouched)."""
    b = HistoryBuilder()
    b.send("p0", "t", "a", offset=0)
    b.poll("drain", [("t", 0, 0, "a")], batches=[("t", 0, 0, 0, 7, 0, 0)])
    assert check(b.history()).valid


def test_the_worst_blame_decides_a_property() -> None:
    """Broker before unattributed before client; nothing found is no verdict."""
    assert worst([Blame.CLIENT, Blame.BROKER]) is Blame.BROKER
    assert worst([Blame.CLIENT, Blame.UNATTRIBUTED]) is Blame.UNATTRIBUTED
    assert worst([Blame.CLIENT]) is Blame.CLIENT
    assert worst([]) is None
