"""Ongoing and completed transactions in the producer state (Kafka's ProducerStateManager,
currentTxnFirstOffset, appendEndTxnMarker), and their snapshot round trip."""

from __future__ import annotations

import attrs
import pytest

from reference_broker.producers.snapshot import decode, encode
from reference_broker.producers.state import (
    CompletedTxn,
    CoordinatorFencedError,
    InvalidProducerEpochError,
    OutOfOrderSequenceError,
    ProducerEntry,
    ProducerStateManager,
)
from reference_broker.records import (
    BatchHeader,
    ControlType,
    EndTransactionMarker,
    Record,
    build_batch,
    build_control_batch,
    parse_header,
)

TRANSACTIONAL = 0x10
ABORT = EndTransactionMarker(ControlType.ABORT, 3)
COMMIT = EndTransactionMarker(ControlType.COMMIT, 3)


def data(producer_id: int, sequence: int, offset: int, count: int = 1,
         transactional: bool = True, epoch: int = 0) -> BatchHeader:
    return parse_header(build_batch(
        [Record(offset + i, 1_000, None, b"v") for i in range(count)], base_offset=offset,
        producer_id=producer_id, producer_epoch=epoch, base_sequence=sequence,
        attributes=TRANSACTIONAL if transactional else 0,
    ))


def marker(producer_id: int, offset: int, epoch: int = 0) -> BatchHeader:
    return parse_header(build_control_batch(producer_id, epoch, ABORT, 1_000, offset))


def test_a_transaction_runs_from_its_first_batch_to_its_marker() -> None:
    state = ProducerStateManager()
    assert state.update(data(1, 0, 10, 2)) is None
    assert state.update(data(1, 2, 12)) is None  # a later batch keeps the first offset
    assert state.update(data(2, 0, 13, transactional=False)) is None
    assert state.ongoing_transactions() == [(10, 1)]
    assert state.first_ongoing_offset() == 10
    completed = state.update(marker(1, 14), ABORT)
    assert completed == CompletedTxn(1, 10, 14, is_aborted=True)
    assert state.first_ongoing_offset() is None
    entry = state.entry(1)
    assert entry is not None and entry.coordinator_epoch == 3
    # The next transactional batch opens a new transaction; a COMMIT completes it, not aborted.
    state.update(data(1, 3, 15))
    assert state.update(marker(1, 16), COMMIT) == CompletedTxn(1, 15, 16, is_aborted=False)


def test_ongoing_transactions_are_ordered_by_first_offset() -> None:
    state = ProducerStateManager()
    state.update(data(7, 0, 5))
    state.update(data(3, 0, 6))
    assert state.ongoing_transactions() == [(5, 7), (6, 3)]
    state.update(marker(7, 7), COMMIT)
    assert state.first_ongoing_offset() == 6


def test_a_marker_without_an_ongoing_transaction_completes_nothing() -> None:
    """As Kafka ("Only emit the CompletedTxn for non-empty transactions"): a transaction that
    wrote nothing to the partition is not indexed as aborted there (the transaction machine
    found it listed in a read_committed Fetch's aborted_transactions), and the producer gets an
    entry at the marker's epoch (its first batch there starts at sequence 0)."""
    state = ProducerStateManager()
    assert state.update(marker(9, 4, epoch=2), ABORT) is None
    assert state.update(marker(9, 5, epoch=2), COMMIT) is None
    entry = state.entry(9)
    assert entry is not None and (entry.epoch, entry.last_seq, entry.coordinator_epoch) == (2, -1, 3)
    with pytest.raises(InvalidProducerEpochError):
        state.check([data(9, 0, 6, epoch=1)])
    assert state.check([data(9, 0, 6, epoch=2)]) is None
    state.update(data(9, 0, 6, epoch=2))
    assert state.update(marker(9, 7, epoch=2), ABORT) == CompletedTxn(9, 6, 7, is_aborted=True)
    assert state.update(marker(9, 8, epoch=2), ABORT) is None  # a second marker


def test_marker_epochs_are_checked() -> None:
    state = ProducerStateManager()
    state.update(data(1, 0, 0, epoch=2))
    state.check_marker(1, 2, 3)
    state.check_marker(1, 5, 3)  # a newer epoch is the coordinator's to bump
    state.check_marker(8, 0, 0)  # unknown producer: nothing to compare with
    with pytest.raises(InvalidProducerEpochError):
        state.check_marker(1, 1, 3)
    state.update(marker(1, 1, epoch=2), EndTransactionMarker(ControlType.ABORT, 4))
    with pytest.raises(CoordinatorFencedError):
        state.check_marker(1, 2, 3)


def test_a_marker_with_a_newer_epoch_fences_the_older_one_and_restarts_the_sequence() -> None:
    """Kafka's maybeUpdateProducerEpoch on a marker: after the coordinator's abort at epoch 1 (a
    fence), a zombie's batch at epoch 0 is INVALID_PRODUCER_EPOCH, and epoch 1's first batch
    starts at sequence 0, also after a snapshot round trip."""
    state = ProducerStateManager()
    state.update(data(1, 0, 0, 3))
    state.update(marker(1, 3, epoch=1), ABORT)
    for restored in (state, _round_trip(state)):
        with pytest.raises(InvalidProducerEpochError):
            restored.check([data(1, 3, 4)])
        assert restored.check([data(1, 0, 4, epoch=1)]) is None
        with pytest.raises(OutOfOrderSequenceError):
            restored.check([data(1, 1, 4, epoch=1)])
    # A marker of the same epoch keeps the cached batches (duplicates are still recognised).
    same = ProducerStateManager()
    same.update(data(1, 0, 0, 2))
    same.update(marker(1, 2), ABORT)
    assert same.check([data(1, 0, 0, 2)]) is not None


def _round_trip(state: ProducerStateManager) -> ProducerStateManager:
    restored = ProducerStateManager()
    restored.restore(decode(encode(state.entries())))
    return restored


def test_an_open_transaction_keeps_its_producer_from_expiring() -> None:
    state = ProducerStateManager(producer_id_expiration_ms=100)
    state.update(data(1, 0, 0))
    state.update(data(2, 0, 1, transactional=False))
    assert state.remove_expired(now_ms=10_000) == [2]
    assert state.first_ongoing_offset() == 0
    state.update(marker(1, 2), COMMIT)
    assert state.remove_expired(now_ms=10_000) == [1]


def test_snapshots_keep_ongoing_transactions_and_coordinator_epochs() -> None:
    state = ProducerStateManager()
    state.update(data(1, 0, 0, 3))
    state.update(data(2, 0, 3))
    state.update(marker(2, 4), ABORT)
    entries = list(state.entries())
    assert decode(encode(entries)) == sorted(entries, key=lambda e: e.producer_id)
    restored = ProducerStateManager()
    restored.restore(decode(encode(entries)))
    assert restored.first_ongoing_offset() == 0
    second = restored.entry(2)
    assert second is not None and second.coordinator_epoch == 3


def test_version_1_snapshots_still_load_without_transactions() -> None:
    """A snapshot written before transactions (version 1) loads as no transaction ongoing."""
    import struct

    from crc32c import crc32c

    body = struct.pack(">i", 1) + struct.pack(">qhb", 5, 1, 1) + struct.pack(">iiqqq", 0, 0, 0, 0, 9)
    entries = decode(struct.pack(">hI", 1, crc32c(body)) + body)
    assert len(entries) == 1
    assert attrs.evolve(entries[0]) == ProducerEntry(5, 1, entries[0].batches)
    assert entries[0].current_txn_first_offset is None
