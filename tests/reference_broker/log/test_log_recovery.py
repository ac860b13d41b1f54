"""Reopening after a crash: torn writes, corrupt batches, broken indexes, leftover files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reference_broker.log import LogConfig, PartitionLog
from reference_broker.log.checkpoint import read_offset
from reference_broker.log.testing import batch, read_records, record_set

CONFIG = LogConfig(segment_bytes=250, index_interval_bytes=0)


def _filled_log(directory: Path, batches: int = 8) -> tuple[PartitionLog, list[int]]:
    """A log of single-record batches holding their offset as the value; returns batch sizes."""
    log = PartitionLog.open(directory, CONFIG, 0)
    sizes = []
    for offset in range(batches):
        records, headers = record_set(batch(b"%d" % offset * 30, timestamps=[offset]))
        log.append(records, headers, 0)
        sizes.append(len(records))
    return log, sizes


def _values(log: PartitionLog) -> list[bytes | None]:
    return [r.value for r in read_records(log)]


def _expected(count: int) -> list[bytes | None]:
    return [b"%d" % offset * 30 for offset in range(count)]


def _crash_and_reopen(log: PartitionLog) -> PartitionLog:
    log.abandon()
    return PartitionLog.open(log.directory, CONFIG, 0)


def _active_segment(directory: Path) -> Path:
    return sorted(directory.glob("*.log"))[-1]


def test_a_crash_loses_nothing_that_reached_the_file(tmp_path: Path) -> None:
    """Without close or flush, every appended batch is there after reopening."""
    log, _ = _filled_log(tmp_path / "t-0")
    assert len(log.segment_base_offsets) > 2
    log = _crash_and_reopen(log)
    assert _values(log) == _expected(8)
    log.close()


def test_a_torn_last_batch_is_cut_off(tmp_path: Path) -> None:
    """A batch only partly written is removed; the offsets it would have had are reused."""
    log, sizes = _filled_log(tmp_path / "t-0")
    active = _active_segment(tmp_path / "t-0")
    os.truncate(active, active.stat().st_size - sizes[-1] // 2)
    log = _crash_and_reopen(log)
    assert _values(log) == _expected(7)
    assert log.append(*record_set(batch(b"next")), 0).first_offset == 7
    log.close()


def test_garbage_after_the_last_batch_is_removed(tmp_path: Path) -> None:
    """Bytes that do not form a valid batch at the tail are truncated, nothing else."""
    log, _ = _filled_log(tmp_path / "t-0")
    active = _active_segment(tmp_path / "t-0")
    size = active.stat().st_size
    with open(active, "ab") as file:
        file.write(b"\x00\x00\x00\x00\x00\x00\x00\x08\x00\x00\x01\x00garbage" * 10)
    log = _crash_and_reopen(log)
    assert _values(log) == _expected(8)
    assert active.stat().st_size == size
    log.close()


def test_a_corrupt_batch_and_everything_after_it_are_cut_off(tmp_path: Path) -> None:
    """A CRC mismatch in the active segment truncates from that batch on."""
    log, sizes = _filled_log(tmp_path / "t-0")
    active = _active_segment(tmp_path / "t-0")
    data = bytearray(active.read_bytes())
    assert len(data) == sizes[-2] + sizes[-1]
    data[sizes[-2] - 1] ^= 0xFF  # the last byte of the active segment's first batch
    active.write_bytes(data)
    log = _crash_and_reopen(log)
    assert _values(log) == _expected(6)
    log.close()


def test_without_a_recovery_point_corruption_in_an_old_segment_drops_later_ones(
    tmp_path: Path,
) -> None:
    """Every unflushed segment is checked; later segments after a corrupt batch are deleted."""
    directory = tmp_path / "t-0"
    log, _ = _filled_log(directory)
    segments = sorted(directory.glob("*.log"))
    assert len(segments) == 4
    (directory / "recovery-point-offset-checkpoint").unlink()
    data = bytearray(segments[1].read_bytes())
    data[-1] ^= 0xFF  # the second batch of the second segment
    segments[1].write_bytes(data)
    log = _crash_and_reopen(log)
    assert _values(log) == _expected(3)
    assert sorted(p.name for p in directory.glob("*.log")) == [p.name for p in segments[:2]]
    log.close()


@pytest.mark.parametrize("clean", [True, False])
def test_deleted_index_files_are_rebuilt_identically(tmp_path: Path, clean: bool) -> None:
    """Missing .index and .timeindex files are rebuilt from the log, entry for entry."""
    directory = tmp_path / "t-0"
    log, _ = _filled_log(directory)
    log.close()
    indexes = sorted([*directory.glob("*.index"), *directory.glob("*.timeindex")])
    originals = {path: path.read_bytes() for path in indexes}
    assert any(originals.values())
    for path in indexes:
        path.unlink()
    if not clean:
        (directory / ".kafka_cleanshutdown").unlink()
    log = PartitionLog.open(directory, CONFIG, 0)
    assert {path: path.read_bytes() for path in indexes} == originals
    assert _values(log) == _expected(8)
    assert log.offset_for_timestamp(5) == (5, 5)
    log.close()


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[:-3], id="torn entry"),
        pytest.param(lambda data: data + b"\x00\x00\x00\x09\x00\x10\x00\x00", id="past the end"),
        pytest.param(lambda data: b"\x00\x00\x00\x01\x00\x00\x00\x05" + data, id="unsorted"),
        pytest.param(lambda data: data[:-8] + b"\x00\x00\x00\x01\x00\x00\x00\x05", id="mid-batch"),
    ],
)
def test_a_corrupt_offset_index_is_rebuilt(tmp_path: Path, damage: object) -> None:
    """An offset index that is malformed or disagrees with its log is rebuilt on open."""
    directory = tmp_path / "t-0"
    log, _ = _filled_log(directory)
    log.close()
    index = sorted(directory.glob("*.index"))[0]
    original = index.read_bytes()
    assert len(original) == 8  # one entry: the segment's second batch
    index.write_bytes(damage(original))  # type: ignore[operator]
    log = PartitionLog.open(directory, CONFIG, 0)
    assert index.read_bytes() == original
    assert [r.offset for r in read_records(log, max_bytes=1)] == list(range(8))
    log.close()


def test_a_corrupt_time_index_is_rebuilt(tmp_path: Path) -> None:
    """A time index naming an offset outside its segment is rebuilt."""
    directory = tmp_path / "t-0"
    log, _ = _filled_log(directory)
    log.close()
    time_index = sorted(directory.glob("*.timeindex"))[0]
    original = time_index.read_bytes()
    time_index.write_bytes(original + b"\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x63")
    log = PartitionLog.open(directory, CONFIG, 0)
    assert time_index.read_bytes() == original
    assert log.max_timestamp() == (7, 7)
    log.close()


def test_clean_shutdown_is_marked_on_close_and_consumed_on_open(tmp_path: Path) -> None:
    """close() leaves the marker that lets the next open skip recovery; open removes it."""
    directory = tmp_path / "t-0"
    log, _ = _filled_log(directory)
    log.close()
    assert (directory / ".kafka_cleanshutdown").exists()
    log = PartitionLog.open(directory, CONFIG, 0)
    assert not (directory / ".kafka_cleanshutdown").exists()
    log.close()


def test_leftover_temporary_files_are_removed(tmp_path: Path) -> None:
    """Interrupted compactions, deletions and checkpoint writes leave nothing behind."""
    directory = tmp_path / "t-0"
    log, _ = _filled_log(directory)
    log.abandon()
    leftovers = [
        "00000000000000000000.log.cleaned",
        "00000000000000000003.log.deleted",
        "log-start-offset-checkpoint.tmp",
        "00000000000000000099.index",
        "00000000000000000099.timeindex",
    ]
    for name in leftovers:
        (directory / name).write_bytes(b"junk")
    log = PartitionLog.open(directory, CONFIG, 0)
    assert not [name for name in leftovers if (directory / name).exists()]
    assert _values(log) == _expected(8)
    log.close()


def test_lost_records_below_the_log_start_restart_the_log_there(tmp_path: Path) -> None:
    """If a crash loses records DeleteRecords had passed, the log restarts empty at its start."""
    directory = tmp_path / "t-0"
    log, _ = _filled_log(directory)
    log.delete_records_before(8)
    log.abandon()
    for segment in directory.glob("*.log"):
        os.truncate(segment, 0)  # a power loss took every unflushed byte
    log = PartitionLog.open(directory, CONFIG, 0)
    assert (log.log_start_offset, log.log_end_offset) == (8, 8)
    assert log.append(*record_set(batch(b"x")), 0).first_offset == 8
    log.close()


def test_flush_messages_fsyncs_and_advances_the_recovery_point(tmp_path: Path) -> None:
    """With flush.messages=3 the recovery point moves to the log end every third record."""
    directory = tmp_path / "t-0"
    log = PartitionLog.open(directory, LogConfig(flush_messages=3), 0)
    for _ in range(2):
        log.append(*record_set(batch(b"a")), 0)
    assert read_offset(directory / "recovery-point-offset-checkpoint") in (None, 0)
    log.append(*record_set(batch(b"a")), 0)
    assert read_offset(directory / "recovery-point-offset-checkpoint") == 3
    log.close()


def test_flush_ms_flushes_when_the_log_is_next_touched(tmp_path: Path) -> None:
    """flush.ms is checked on append and on the broker's periodic maybe_flush call."""
    directory = tmp_path / "t-0"
    log = PartitionLog.open(directory, LogConfig(flush_ms=1000), 0)
    log.append(*record_set(batch(b"a")), 500)
    assert not log.maybe_flush(999)
    assert log.maybe_flush(1000)
    assert read_offset(directory / "recovery-point-offset-checkpoint") == 1
    log.close()
