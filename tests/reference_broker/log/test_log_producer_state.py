"""The partition log's producer state: duplicates, snapshots at roll and close, rebuilding after
reopen, crash and truncation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reference_broker.log import LogConfig, PartitionLog
from reference_broker.log.producer_snapshots import snapshot_offsets, snapshot_path
from reference_broker.log.segment import LogSegment
from reference_broker.log.testing import batch, read_records, record_set
from reference_broker.producers import OutOfOrderSequenceError, UnknownProducerIdError
from reference_broker.records import BatchHeader, EndTransactionMarker

CONFIG = LogConfig(segment_bytes=300, index_interval_bytes=0)
PRODUCER = 42
NOW = 1_000_000


def send(log: PartitionLog, sequence: int, count: int = 1, producer_id: int = PRODUCER,
         epoch: int = 0, timestamp: int = NOW) -> tuple[int, int]:
    """Append one idempotent batch of ``count`` records; returns (first, last) offset."""
    values = [b"%d-%d" % (producer_id, sequence + i) for i in range(count)]
    result = log.append(*record_set(batch(
        *values, timestamps=[timestamp] * count, producer_id=producer_id,
        producer_epoch=epoch, base_sequence=sequence)), NOW)
    return result.first_offset, result.last_offset


def filled(directory: Path, batches: int = 12, config: LogConfig = CONFIG) -> PartitionLog:
    """A log with ``batches`` two-record batches of PRODUCER (sequences 0, 2, 4, ...)."""
    log = PartitionLog.open(directory, config, NOW)
    for i in range(batches):
        send(log, 2 * i, 2)
    return log


def expect_known(log: PartitionLog, next_sequence: int) -> None:
    """PRODUCER's last five batches are recognised as duplicates (each sits at the offsets equal
    to its sequences, as in :func:`filled`) and its next sequence is accepted."""
    end = log.log_end_offset
    for back in range(1, 6):
        sequence = next_sequence - 2 * back
        assert send(log, sequence, 2) == (sequence, sequence + 1)
    assert log.log_end_offset == end
    with pytest.raises(OutOfOrderSequenceError):
        send(log, next_sequence + 1)
    assert send(log, next_sequence, 2) == (end, end + 1)


def test_a_retried_batch_is_not_written_twice(tmp_path: Path) -> None:
    """Appending the same idempotent batch again returns its offsets and stores nothing."""
    log = PartitionLog.open(tmp_path / "t-0", CONFIG, NOW)
    assert send(log, 0, 3) == (0, 2)
    assert send(log, 0, 3) == (0, 2)
    assert log.log_end_offset == 3
    assert len(read_records(log)) == 3
    log.close()


def test_a_refused_batch_writes_nothing(tmp_path: Path) -> None:
    """A batch failing the sequence check leaves the log end offset where it was."""
    log = PartitionLog.open(tmp_path / "t-0", CONFIG, NOW)
    send(log, 0)
    with pytest.raises(OutOfOrderSequenceError):
        send(log, 5)
    with pytest.raises(UnknownProducerIdError):
        send(log, 3, producer_id=7)
    assert log.log_end_offset == 1
    log.close()


def test_a_snapshot_is_written_at_every_roll(tmp_path: Path) -> None:
    """Each rolled segment gets a snapshot named after its base offset."""
    log = filled(tmp_path / "t-0")
    bases = log.segment_base_offsets
    assert len(bases) >= 3
    assert snapshot_offsets(tmp_path / "t-0") == bases[1:]
    assert snapshot_path(tmp_path / "t-0", bases[1]).name == f"{bases[1]:020d}.snapshot"
    log.close()


def test_a_clean_close_writes_a_snapshot_at_the_log_end(tmp_path: Path) -> None:
    """Closing adds a snapshot at the log end offset; an older mid-segment one is dropped."""
    log = filled(tmp_path / "t-0", batches=11)
    bases, end = log.segment_base_offsets, log.log_end_offset
    assert end not in bases
    log.close()
    assert snapshot_offsets(tmp_path / "t-0") == [*bases[1:], end]
    log = PartitionLog.open(tmp_path / "t-0", CONFIG, NOW)
    send(log, 22, 2)
    assert log.segment_base_offsets == bases
    log.close()
    assert snapshot_offsets(tmp_path / "t-0") == [*bases[1:], end + 2]


def replayed_headers(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Record (segment base offset, batch base offset) of every header replayed from now on."""
    replayed: list[tuple[int, int]] = []
    real = LogSegment.replay_from

    def spy(
        self: LogSegment, offset: int
    ) -> Iterator[tuple[BatchHeader, EndTransactionMarker | None]]:
        for header, marker in real(self, offset):
            replayed.append((self.base_offset, header.base_offset))
            yield header, marker

    monkeypatch.setattr(LogSegment, "replay_from", spy)
    return replayed


def test_a_clean_reopen_loads_the_snapshot_without_reading_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a clean shutdown the state comes from the snapshot alone: no batch is replayed."""
    filled(tmp_path / "t-0").close()
    replayed = replayed_headers(monkeypatch)
    log = PartitionLog.open(tmp_path / "t-0", CONFIG, NOW)
    assert replayed == []
    expect_known(log, 24)
    log.close()


def test_the_state_is_rebuilt_after_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a crash the newest roll snapshot is loaded and only the later batches replayed."""
    log = filled(tmp_path / "t-0")
    active_base = log.segment_base_offsets[-1]
    log.abandon()
    replayed = replayed_headers(monkeypatch)
    log = PartitionLog.open(tmp_path / "t-0", CONFIG, NOW)
    assert replayed and {segment for segment, _ in replayed} == {active_base}
    expect_known(log, 24)
    log.close()


def test_the_state_is_rebuilt_from_the_log_when_no_snapshot_is_left(tmp_path: Path) -> None:
    """Without any snapshot, the batch headers of the whole log are replayed."""
    log = filled(tmp_path / "t-0")
    log.abandon()
    for offset in snapshot_offsets(tmp_path / "t-0"):
        snapshot_path(tmp_path / "t-0", offset).unlink()
    log = PartitionLog.open(tmp_path / "t-0", CONFIG, NOW)
    expect_known(log, 24)
    log.close()


def test_a_corrupt_snapshot_is_deleted_and_an_older_one_used(tmp_path: Path) -> None:
    """A snapshot that fails its CRC is removed; the previous one plus replay gives the state."""
    log = filled(tmp_path / "t-0")
    log.close()
    newest = snapshot_offsets(tmp_path / "t-0")[-1]
    path = snapshot_path(tmp_path / "t-0", newest)
    path.write_bytes(path.read_bytes()[:-3])
    log = PartitionLog.open(tmp_path / "t-0", CONFIG, NOW)
    assert not path.exists()
    expect_known(log, 24)
    log.close()


def test_truncation_rebuilds_the_state_and_deletes_later_snapshots(tmp_path: Path) -> None:
    """truncate_to forgets the removed batches: snapshots past the new end go, and the first
    removed batch's sequence is the next one accepted."""
    log = filled(tmp_path / "t-0")
    cut = log.segment_base_offsets[2] + 2
    log.truncate_to(cut)
    assert log.log_end_offset == cut
    assert all(offset <= cut for offset in snapshot_offsets(tmp_path / "t-0"))
    expect_known(log, cut)
    log.abandon()
    log = PartitionLog.open(tmp_path / "t-0", CONFIG, NOW)
    expect_known(log, cut + 2)
    log.close()


def test_retention_keeps_producer_state(tmp_path: Path) -> None:
    """Deleting old segments (retention, DeleteRecords) forgets no producer, even after a
    restart; snapshots below the new first segment are removed."""
    log = filled(tmp_path / "t-0")
    send(log, 0, 2, producer_id=7)
    for i in range(6):
        send(log, i, producer_id=8)
    log.delete_records_before(log.segment_base_offsets[-1])
    first = log.segment_base_offsets[0]
    assert all(offset >= first for offset in snapshot_offsets(tmp_path / "t-0"))
    log.abandon()
    log = PartitionLog.open(tmp_path / "t-0", CONFIG, NOW)
    expect_known(log, 24)
    assert send(log, 2, producer_id=7)[0] == log.log_end_offset - 1
    log.close()


def test_expired_producers_are_dropped_when_the_log_opens(tmp_path: Path) -> None:
    """A producer idle for producer.id.expiration.ms is forgotten on open, and by the check."""
    log = PartitionLog.open(tmp_path / "t-0", CONFIG, NOW, producer_id_expiration_ms=500)
    send(log, 0, producer_id=1, timestamp=NOW)
    send(log, 0, producer_id=2, timestamp=NOW + 400)
    assert log.remove_expired_producers(NOW + 499) == []
    log.close()
    log = PartitionLog.open(tmp_path / "t-0", CONFIG, NOW + 500, producer_id_expiration_ms=500)
    with pytest.raises(UnknownProducerIdError):
        send(log, 1, producer_id=1)
    assert log.remove_expired_producers(NOW + 900) == [2]
    log.close()


def test_follower_appends_update_the_state(tmp_path: Path) -> None:
    """Batches copied from a leader count: a retry of one of them is then a duplicate."""
    leader = filled(tmp_path / "leader", batches=3)
    data = leader.read(0, 1 << 20).records
    follower = PartitionLog.open(tmp_path / "follower", CONFIG, NOW)
    records, headers = record_set(data)
    follower.append_as_follower(records, headers, NOW)
    assert send(follower, 2, 2) == (2, 3)
    assert send(follower, 6, 2) == (6, 7)
    leader.close()
    follower.close()
