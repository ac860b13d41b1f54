"""The per-partition producer state: duplicates, sequence and epoch checks, expiry."""

from __future__ import annotations

import attrs
import pytest

from reference_broker.producers.state import (
    CACHED_BATCHES,
    SEQUENCE_MODULUS,
    Duplicate,
    InvalidProducerEpochError,
    InvalidTxnStateError,
    OutOfOrderSequenceError,
    ProducerStateManager,
    UnknownProducerIdError,
)
from reference_broker.records import BatchHeader, InvalidRecordError, Record, build_batch, parse_header

TRANSACTIONAL = 0x10
CONTROL = 0x20


def header(producer_id: int, epoch: int, sequence: int, count: int = 1, *, offset: int = 0,
           timestamp: int = 1_000, attributes: int = 0) -> BatchHeader:
    """The header of a batch of ``count`` records, stored at ``offset``."""
    data = build_batch(
        [Record(offset + i, timestamp, None, b"v") for i in range(count)],
        base_offset=offset, producer_id=producer_id, producer_epoch=epoch,
        base_sequence=sequence, attributes=attributes,
    )
    return parse_header(data)


class Partition:
    """A producer state plus a log end offset: append = check, then update at the log end."""

    def __init__(self, expiration_ms: int = 1_000_000) -> None:
        self.state = ProducerStateManager(expiration_ms)
        self.log_end = 0

    def append(self, *batches: BatchHeader) -> Duplicate | tuple[int, int]:
        duplicate = self.state.check(batches)
        if duplicate is not None:
            return duplicate
        first = self.log_end
        for batch in batches:
            stored = attrs.evolve(batch, base_offset=self.log_end)
            self.state.update(stored)
            self.log_end = stored.next_offset
        return first, self.log_end - 1


def test_a_new_producer_starting_at_sequence_zero_is_accepted() -> None:
    """The first batch of an unknown producer id is accepted when it starts at sequence 0."""
    partition = Partition()
    assert partition.append(header(1, 0, 0, 3)) == (0, 2)
    entry = partition.state.entry(1)
    assert entry is not None and (entry.epoch, entry.last_seq, entry.last_offset) == (0, 2, 2)


def test_an_unknown_producer_not_starting_at_zero_is_unknown_producer_id() -> None:
    """A continuing sequence from a producer the partition does not know is refused."""
    with pytest.raises(UnknownProducerIdError):
        Partition().append(header(1, 0, 5))


def test_the_next_sequence_is_accepted_and_a_gap_is_out_of_order() -> None:
    """Sequences must continue exactly where the producer's last batch ended."""
    partition = Partition()
    partition.append(header(1, 0, 0, 2))
    assert partition.append(header(1, 0, 2, 2)) == (2, 3)
    with pytest.raises(OutOfOrderSequenceError):
        partition.append(header(1, 0, 5))
    assert partition.log_end == 4


@pytest.mark.parametrize("back", range(1, CACHED_BATCHES + 1))
def test_each_of_the_last_five_batches_is_recognised_as_a_duplicate(back: int) -> None:
    """A retry of any of the producer's last five batches gets that batch's offsets back."""
    partition = Partition()
    for sequence in range(0, 20, 2):
        partition.append(header(1, 0, sequence, 2, timestamp=sequence))
    retried = 20 - 2 * back
    result = partition.append(header(1, 0, retried, 2))
    assert result == Duplicate(retried, retried + 1, retried)
    assert partition.log_end == 20


def test_a_retry_older_than_the_cached_batches_is_out_of_order() -> None:
    """A sequence range older than the last five batches is neither new nor a known duplicate."""
    partition = Partition()
    for sequence in range(CACHED_BATCHES + 1):
        partition.append(header(1, 0, sequence))
    with pytest.raises(OutOfOrderSequenceError):
        partition.append(header(1, 0, 0))


def test_an_overlapping_range_is_out_of_order() -> None:
    """A batch that overlaps a stored one without matching it exactly is refused."""
    partition = Partition()
    partition.append(header(1, 0, 0, 4))
    with pytest.raises(OutOfOrderSequenceError):
        partition.append(header(1, 0, 2, 4))


def test_a_stale_epoch_is_invalid_producer_epoch() -> None:
    """A batch with an epoch lower than the producer's current one is fenced."""
    partition = Partition()
    partition.append(header(1, 3, 0))
    with pytest.raises(InvalidProducerEpochError):
        partition.append(header(1, 2, 1))


def test_a_new_epoch_must_start_at_sequence_zero() -> None:
    """A higher epoch is accepted only from sequence 0, and then restarts the duplicate cache."""
    partition = Partition()
    partition.append(header(1, 0, 0))
    partition.append(header(1, 0, 1))
    with pytest.raises(OutOfOrderSequenceError):
        partition.append(header(1, 1, 2))
    assert partition.append(header(1, 1, 0)) == (2, 2)
    entry = partition.state.entry(1)
    assert entry is not None and (entry.epoch, len(entry.batches)) == (1, 1)
    with pytest.raises(InvalidProducerEpochError):
        partition.append(header(1, 0, 1))  # a retry from the old epoch is no duplicate any more


def test_sequences_wrap_around_after_int32_max() -> None:
    """After sequence 2**31-1 the next batch starts at 0 (Kafka's int32 wraparound)."""
    partition = Partition()
    partition.state.update(header(1, 0, SEQUENCE_MODULUS - 3, 3))
    partition.log_end = 3
    with pytest.raises(OutOfOrderSequenceError):
        partition.append(header(1, 0, 1))
    assert partition.append(header(1, 0, 0, 2)) == (3, 4)
    assert partition.append(header(1, 0, 2)) == (5, 5)


def test_a_batch_straddling_the_wrap_is_recognised_as_a_duplicate() -> None:
    """A batch whose sequences wrap past 2**31-1 is matched by first and last sequence."""
    partition = Partition()
    partition.state.update(header(1, 0, SEQUENCE_MODULUS - 4, 2))
    assert partition.append(header(1, 0, SEQUENCE_MODULUS - 2, 4)) == (0, 3)
    assert partition.append(header(1, 0, SEQUENCE_MODULUS - 2, 4)) == Duplicate(0, 3, 1_000)


def test_batches_without_a_producer_id_bypass_every_check() -> None:
    """Non-idempotent batches (producer id -1) are always appended and leave no state."""
    partition = Partition()
    plain = header(-1, -1, -1)
    assert partition.append(plain) == (0, 0)
    assert partition.append(plain) == (1, 1)
    assert len(partition.state) == 0


def test_a_transactional_batch_is_accepted_and_begins_a_transaction() -> None:
    """A transactional batch passes the idempotence rules and opens a transaction at its base
    offset; a plain batch of the same producer while it is open is INVALID_TXN_STATE."""
    partition = Partition()
    partition.append(header(2, 0, 0))
    assert partition.append(header(1, 0, 0, 2, attributes=TRANSACTIONAL)) == (1, 2)
    entry = partition.state.entry(1)
    assert entry is not None and entry.current_txn_first_offset == 1
    with pytest.raises(InvalidTxnStateError):
        partition.append(header(1, 0, 2))


@pytest.mark.parametrize(
    "bad",
    [header(1, 0, 0, attributes=TRANSACTIONAL | CONTROL), header(-1, -1, -1, attributes=CONTROL),
     header(1, 0, -1)],
    ids=["control", "control-without-producer", "no-sequence"],
)
def test_control_batches_and_missing_sequences_are_invalid_record(bad: BatchHeader) -> None:
    """Clients may not write control batches, nor a producer id without a sequence number."""
    with pytest.raises(InvalidRecordError):
        Partition().append(bad)


def test_later_batches_of_a_request_are_checked_against_earlier_ones() -> None:
    """Two batches of one producer in one request must continue each other."""
    partition = Partition()
    assert partition.append(header(1, 0, 0, 2), header(1, 0, 2, 1)) == (0, 2)
    with pytest.raises(OutOfOrderSequenceError):
        partition.append(header(1, 0, 3), header(1, 0, 5))
    assert partition.log_end == 3


def test_a_request_repeating_only_stored_batches_is_a_duplicate() -> None:
    """A retried multi-batch request is answered with the offsets of its first and last batch."""
    partition = Partition()
    partition.append(header(1, 0, 0, 2), header(1, 0, 2, 3))
    assert partition.append(header(1, 0, 0, 2), header(1, 0, 2, 3)) == Duplicate(0, 4, 1_000)


def test_a_request_mixing_repeated_and_new_batches_is_invalid_record() -> None:
    """Half a retry plus new data is refused rather than half-written."""
    partition = Partition()
    partition.append(header(1, 0, 0))
    with pytest.raises(InvalidRecordError):
        partition.append(header(1, 0, 0), header(1, 0, 1))
    assert partition.log_end == 1


def test_check_changes_nothing() -> None:
    """Checking a request, accepted or refused, leaves the state as it was."""
    partition = Partition()
    partition.append(header(1, 0, 0))
    before = list(partition.state.entries())
    assert partition.state.check([header(1, 0, 1), header(2, 0, 0)]) is None
    with pytest.raises(OutOfOrderSequenceError):
        partition.state.check([header(1, 0, 1), header(1, 0, 9)])
    assert list(partition.state.entries()) == before


def test_producers_expire_after_the_expiration_time() -> None:
    """A producer idle for producer.id.expiration.ms (from its last batch's timestamp) is
    forgotten; its continuing sequence is then UNKNOWN_PRODUCER_ID."""
    partition = Partition(expiration_ms=100)
    partition.append(header(1, 0, 0, timestamp=1_000))
    partition.append(header(2, 0, 0, timestamp=1_050))
    assert partition.state.remove_expired(1_099) == []
    assert partition.state.remove_expired(1_100) == [1]
    with pytest.raises(UnknownProducerIdError):
        partition.append(header(1, 0, 1))
    assert partition.append(header(2, 0, 1)) == (2, 2)
    assert partition.append(header(1, 0, 0)) == (3, 3)


def test_update_replays_what_the_cleaner_left_without_checking() -> None:
    """Replaying stored batches accepts gaps and lower epochs (a compacted or copied log)."""
    state = ProducerStateManager()
    state.update(header(1, 2, 0))
    state.update(header(1, 2, 7, offset=5))
    state.update(header(1, 1, 0, offset=6))
    entry = state.entry(1)
    assert entry is not None and (entry.epoch, entry.last_seq, entry.last_offset) == (1, 0, 6)
