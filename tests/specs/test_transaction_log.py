"""The transactional partition-log model (specs/transaction_log.py): markers, the LSO, the
aborted list, and what a read_committed consumer keeps from a Fetch answer."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from specs.transaction_log import (
    Appended,
    FetchedBatch,
    Marker,
    TransactionLog,
    TransactionRuleError,
    TxnState,
    read_committed_offsets,
)
from specs.types import Offset, PartitionId, TopicPartition

P0, P1 = TopicPartition("t", PartitionId(0)), TopicPartition("t", PartitionId(1))


def test_ending_a_transaction_marks_every_added_partition_written_or_not() -> None:
    model, txn = TransactionLog().begin(7, [P0, P1])
    model, _ = model.append(P0, ["a", "b"], 7, txn)
    model, markers = model.end(txn, commit=True)
    assert markers == {P0: Marker(Offset(2), 7, txn, True), P1: Marker(Offset(0), 7, txn, True)}
    assert (model.end_offset(P0), model.end_offset(P1)) == (3, 1)
    assert model.state(txn) is TxnState.COMMITTED and markers[P1].kind == "COMMIT"


def test_the_lso_is_the_first_record_of_the_oldest_open_transaction_that_wrote_there() -> None:
    model, plain = TransactionLog().append(P0, ["x"])
    model, first = model.begin(1, [P0, P1])
    model, second = model.begin(2, [P0])
    model, _ = model.append(P0, ["s"], 2, second)
    model, _ = model.append(P0, ["f"], 1, first)
    assert plain == 0 and model.last_stable_offset(P0) == 1  # the second began later but wrote first
    assert model.last_stable_offset(P1) == 0 == model.end_offset(P1)  # added, never written: no hold
    model, _ = model.end(second, commit=False)
    assert model.last_stable_offset(P0) == 2
    model, _ = model.end(first, commit=True)
    assert model.last_stable_offset(P0) == model.end_offset(P0) == 5


def test_read_committed_keeps_plain_and_committed_records_below_the_lso() -> None:
    model, aborted = TransactionLog().begin(1, [P0])
    model, _ = model.append(P0, ["a1", "a2"], 1, aborted)
    model, _ = model.append(P0, ["plain"], 9)  # an idempotent producer's
    model, _ = model.end(aborted, commit=False)
    model, committed = model.begin(1, [P0])
    model, _ = model.append(P0, ["c1"], 1, committed)
    model, _ = model.end(committed, commit=True)
    model, still_open = model.begin(3, [P0])
    model, _ = model.append(P0, ["o1"], 3, still_open)
    model, _ = model.append(P0, ["late"])
    assert [e.value for e in model.read_committed(P0, 0)] == ["plain", "c1"]
    assert [e.value for e in model.read_committed(P0, 3)] == ["c1"]
    assert model.aborted_transactions(P0) == {(1, 0)}


def test_an_aborted_transaction_without_records_in_a_partition_is_not_listed_there() -> None:
    model, txn = TransactionLog().begin(4, [P0, P1])
    model, _ = model.append(P0, ["a"], 4, txn)
    model, _ = model.end(txn, commit=False)
    assert model.aborted_transactions(P0) == {(4, 0)} and model.aborted_transactions(P1) == frozenset()


def test_the_model_refuses_what_the_protocol_does() -> None:
    model, txn = TransactionLog().begin(1, [P0])
    with pytest.raises(TransactionRuleError, match="never added"):
        model.append(P1, ["x"], 1, txn)
    model, _ = model.end(txn, commit=True)
    with pytest.raises(TransactionRuleError, match="committed, not open"):
        model.end(txn, commit=False)


def _data(first: int, last: int, producer: int = 1, transactional: bool = True) -> FetchedBatch:
    return FetchedBatch(last, producer, transactional, offsets=tuple(range(first, last + 1)))


def _marker(offset: int, producer: int = 1, abort: bool = True) -> FetchedBatch:
    return FetchedBatch(offset, producer, True, control=True, abort_marker=abort)


# Producer 1 aborts offsets 0-1 (marker 2), then commits 3-4 (marker 5); offset 6 is plain.
ABORT_THEN_COMMIT = [_data(0, 1), _marker(2), _data(3, 4), _marker(5, abort=False),
                     _data(6, 6, producer=-1, transactional=False)]


def test_the_consumer_drops_a_listed_transaction_until_its_abort_marker() -> None:
    assert read_committed_offsets(ABORT_THEN_COMMIT, [(1, 0)], 0) == (3, 4, 6)


def test_without_the_aborted_list_the_consumer_keeps_aborted_records() -> None:
    """What a broker that leaves the list out does to its read_committed readers (G1a)."""
    assert read_committed_offsets(ABORT_THEN_COMMIT, [], 0) == (0, 1, 3, 4, 6)


def test_a_wrongly_listed_transaction_hides_committed_records() -> None:
    assert read_committed_offsets(ABORT_THEN_COMMIT, [(1, 3)], 0) == (0, 1, 6)


def test_records_below_the_fetch_offset_are_not_handed_over() -> None:
    assert read_committed_offsets(ABORT_THEN_COMMIT, [(1, 0)], 4) == (4, 6)
    assert read_committed_offsets(ABORT_THEN_COMMIT, [(1, 0)], 1) == (3, 4, 6)


# --- a broker that serves the model exactly: the consumer keeps what the model says ----------

OPS = st.lists(st.tuples(st.sampled_from(["add", "write", "plain", "commit", "abort"]),
                         st.integers(0, 1), st.integers(0, 1)), max_size=25)


def _run(ops: list[tuple[str, int, int]]) -> TransactionLog:
    """Two producers (ids 0 and 1), each with at most one open transaction: ``add`` adds a
    partition to it (beginning it if needed), ``write`` adds and writes a record."""
    model = TransactionLog()
    open_txn: dict[int, int] = {}
    for n, (op, producer, partition) in enumerate(ops):
        tp = (P0, P1)[partition]
        if op in ("add", "write"):
            if producer in open_txn:
                model = model.add(open_txn[producer], [tp])
            else:
                model, open_txn[producer] = model.begin(producer, [tp])
            if op == "write":
                model, _ = model.append(tp, [f"{producer}-{n}"], producer, open_txn[producer])
        elif op == "plain":
            model, _ = model.append(tp, [f"plain-{n}"])
        elif producer in open_txn:
            model, _ = model.end(open_txn.pop(producer), commit=op == "commit")
    return model


def _served(model: TransactionLog, tp: TopicPartition,
            fetch_offset: int) -> tuple[list[FetchedBatch], list[tuple[int, Offset]]]:
    """A read_committed Fetch answer as Kafka builds it: the batches below the LSO (one per entry
    here), and the aborted transactions whose marker is at or after the fetch offset and whose
    first offset is below the end of what was read."""
    lso = model.last_stable_offset(tp)
    batches = []
    for entry in model.entries(tp, fetch_offset, lso):
        if isinstance(entry, Appended):
            batches.append(FetchedBatch(entry.offset, entry.producer_id, entry.transaction is not None,
                                        offsets=(entry.offset,)))
        else:
            batches.append(FetchedBatch(entry.offset, entry.producer_id, True, True, not entry.commit))
    markers = {m.transaction: m.offset for m in model.entries(tp) if isinstance(m, Marker)}
    listed = [(model.transactions[txn].producer_id, first) for txn, first in model.first_offsets(tp).items()
              if model.state(txn) is TxnState.ABORTED and markers[txn] >= fetch_offset and first < lso]
    return batches, listed


@given(OPS, st.integers(0, 30))
def test_a_consumer_of_a_correct_broker_keeps_exactly_the_committed_view(ops: list[tuple[str, int, int]],
                                                                        start: int) -> None:
    model = _run(ops)
    for tp in (P0, P1):
        offset = min(start, model.end_offset(tp))
        batches, listed = _served(model, tp, offset)
        expected = tuple(e.offset for e in model.read_committed(tp, offset))
        assert read_committed_offsets(batches, listed, offset) == expected
