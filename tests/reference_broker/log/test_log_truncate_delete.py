"""Removing records: truncate_to (replication) and delete_records_before (DeleteRecords)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reference_broker.log import LogConfig, OffsetOutOfRangeError, PartitionLog
from reference_broker.log.testing import batch, read_records, record_set

CONFIG = LogConfig(segment_bytes=250)


def _log_of_batches(directory: Path, *sizes: int, config: LogConfig = CONFIG) -> PartitionLog:
    """A log whose batches hold ``sizes`` records each, every value its own offset."""
    log = PartitionLog.open(directory, config, 0)
    for size in sizes:
        first = log.log_end_offset
        values = [b"%d" % offset for offset in range(first, first + size)]
        log.append(*record_set(batch(*values, keys=values)), 0)
    return log


def _offsets(log: PartitionLog) -> list[int]:
    return [r.offset for r in read_records(log)]


def _reopen(log: PartitionLog, clean: bool, config: LogConfig = CONFIG) -> PartitionLog:
    if clean:
        log.close()
    else:
        log.abandon()
    return PartitionLog.open(log.directory, config, 0)


def test_truncate_at_a_batch_boundary(tmp_path: Path) -> None:
    """Truncating to a batch's base offset keeps everything before it."""
    log = _log_of_batches(tmp_path / "t-0", 2, 3, 2)
    log.truncate_to(5)
    assert (log.log_end_offset, _offsets(log)) == (5, [0, 1, 2, 3, 4])
    log.close()


def test_truncate_inside_a_batch_drops_the_whole_batch(tmp_path: Path) -> None:
    """An offset inside a batch removes that batch entirely; the log end is its base offset."""
    log = _log_of_batches(tmp_path / "t-0", 2, 3, 2)
    log.truncate_to(3)
    assert (log.log_end_offset, _offsets(log)) == (2, [0, 1])
    assert log.append(*record_set(batch(b"x")), 0).first_offset == 2
    log.close()


def test_truncate_removes_later_segments(tmp_path: Path) -> None:
    """Segments wholly at or above the truncation offset are deleted with their files."""
    log = _log_of_batches(tmp_path / "t-0", *[10] * 5)
    bases = log.segment_base_offsets
    assert len(bases) >= 3
    log.truncate_to(bases[1])
    assert log.segment_base_offsets == bases[:1]
    assert len(list((tmp_path / "t-0").glob("*.log"))) == 1
    assert log.log_end_offset == bases[1]
    log.close()


def test_truncate_at_or_past_the_end_changes_nothing(tmp_path: Path) -> None:
    """Truncating to the log end offset or beyond is a no-op."""
    log = _log_of_batches(tmp_path / "t-0", 2, 2)
    log.truncate_to(4)
    log.truncate_to(10)
    assert _offsets(log) == [0, 1, 2, 3]
    log.close()


def test_truncate_below_the_log_start_empties_the_log_there(tmp_path: Path) -> None:
    """Like Kafka's truncateFullyAndStartAt: below the start, the log restarts at the offset."""
    log = _log_of_batches(tmp_path / "t-0", *[10] * 5)
    log.delete_records_before(35)
    log.truncate_to(20)
    assert (log.log_start_offset, log.log_end_offset) == (20, 20)
    log = _reopen(log, clean=False)
    assert (log.log_start_offset, log.log_end_offset) == (20, 20)
    assert log.append(*record_set(batch(b"x")), 0).first_offset == 20
    log.close()


@pytest.mark.parametrize("clean", [True, False])
def test_truncation_survives_reopening(tmp_path: Path, clean: bool) -> None:
    """After truncating and reopening, the log ends where the truncation left it."""
    log = _log_of_batches(tmp_path / "t-0", *[3] * 10)
    log.truncate_to(13)
    log = _reopen(log, clean)
    assert _offsets(log) == list(range(12))
    log.close()


def test_truncate_into_a_compaction_gap_keeps_the_removed_offsets_taken(tmp_path: Path) -> None:
    """The log end never drops below the first removed batch, even where the cleaner left a gap."""
    config = LogConfig(segment_bytes=250, cleanup_policy=frozenset({"compact"}))
    log = PartitionLog.open(tmp_path / "t-0", config, 0)
    for key in (b"a", b"b", b"a", b"b", b"c"):
        log.append(*record_set(batch(b"x" * 60, keys=[key])), 0)
    log.compact(0)
    assert _offsets(log) == [2, 3, 4]
    log.truncate_to(1)
    assert log.log_end_offset == 1
    log = _reopen(log, clean=False, config=config)
    assert log.log_end_offset == 1
    log.close()


def test_delete_records_advances_the_log_start(tmp_path: Path) -> None:
    """DeleteRecords makes earlier offsets unreadable, even inside a batch it keeps."""
    log = _log_of_batches(tmp_path / "t-0", 3, 3)
    assert log.delete_records_before(4) == 4
    assert _offsets(log) == [4, 5]
    with pytest.raises(OffsetOutOfRangeError):
        log.read(3, 1 << 20)
    assert log.delete_records_before(2) == 4
    log.close()


def test_delete_records_removes_segments_wholly_below(tmp_path: Path) -> None:
    """Segments whose every offset is below the new log start are deleted, the rest kept."""
    log = _log_of_batches(tmp_path / "t-0", *[10] * 5)
    bases = log.segment_base_offsets
    log.delete_records_before(bases[2] + 1)
    assert log.segment_base_offsets == bases[2:]
    log.close()


def test_delete_records_beyond_the_end_is_out_of_range(tmp_path: Path) -> None:
    """An offset past the log end offset is refused."""
    log = _log_of_batches(tmp_path / "t-0", 2)
    with pytest.raises(OffsetOutOfRangeError):
        log.delete_records_before(3)
    log.close()


@pytest.mark.parametrize("clean", [True, False])
def test_the_log_start_offset_survives_reopening(tmp_path: Path, clean: bool) -> None:
    """The log start offset is checkpointed, so a restart does not resurrect deleted records."""
    log = _log_of_batches(tmp_path / "t-0", 3, 3)
    log.delete_records_before(4)
    log = _reopen(log, clean)
    assert log.log_start_offset == 4
    assert _offsets(log) == [4, 5]
    log.close()
