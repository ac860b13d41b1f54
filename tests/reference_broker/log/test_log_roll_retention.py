"""Rolling segments by size, age and index size; deleting old segments by retention."""

from __future__ import annotations

from pathlib import Path

from reference_broker.log import LogConfig, PartitionLog
from reference_broker.log.retention import SegmentSummary, segments_to_delete
from reference_broker.log.testing import batch, read_records, record_set


def _append(log: PartitionLog, value: bytes, timestamp: int = 0, now_ms: int = 0) -> int:
    records, headers = record_set(batch(value, timestamps=[timestamp]))
    log.append(records, headers, now_ms)
    return len(records)


def test_segment_rolls_when_the_next_append_would_exceed_segment_bytes(tmp_path: Path) -> None:
    """A new segment starts at the log end offset once segment.bytes would be exceeded."""
    log = PartitionLog.open(tmp_path / "t-0", LogConfig(segment_bytes=300), 0)
    size = _append(log, b"x" * 60)
    assert 2 * size <= 300 < 3 * size
    _append(log, b"x" * 60)
    assert log.segment_base_offsets == [0]
    _append(log, b"x" * 60)
    assert log.segment_base_offsets == [0, 2]
    assert sorted(p.name for p in (tmp_path / "t-0").glob("*.log")) == [
        "00000000000000000000.log",
        "00000000000000000002.log",
    ]
    log.close()


def test_an_empty_active_segment_never_rolls(tmp_path: Path) -> None:
    """However old, an empty active segment takes the next append instead of rolling."""
    log = PartitionLog.open(tmp_path / "t-0", LogConfig(segment_ms=1000), 0)
    _append(log, b"a", timestamp=-1, now_ms=1_000_000)
    assert log.segment_base_offsets == [0]
    log.close()


def test_segment_rolls_when_record_time_passes_segment_ms(tmp_path: Path) -> None:
    """Kafka measures segment.ms from the first batch's timestamp to the incoming batch's."""
    log = PartitionLog.open(tmp_path / "t-0", LogConfig(segment_ms=1000), 0)
    _append(log, b"a", timestamp=5000)
    _append(log, b"b", timestamp=6000)
    assert log.segment_base_offsets == [0]
    _append(log, b"c", timestamp=6001)
    assert log.segment_base_offsets == [0, 2]
    log.close()


def test_segment_without_timestamps_rolls_by_creation_time(tmp_path: Path) -> None:
    """Without record timestamps segment.ms counts from the segment's creation on the log clock."""
    log = PartitionLog.open(tmp_path / "t-0", LogConfig(segment_ms=1000), 100)
    _append(log, b"a", timestamp=-1, now_ms=500)
    _append(log, b"b", timestamp=-1, now_ms=1100)
    assert log.segment_base_offsets == [0]
    _append(log, b"c", timestamp=-1, now_ms=1101)
    assert log.segment_base_offsets == [0, 2]
    log.close()


def test_segment_rolls_when_its_index_is_full(tmp_path: Path) -> None:
    """segment.index.bytes caps the index entries of a segment; reaching it rolls."""
    config = LogConfig(index_interval_bytes=0, segment_index_bytes=24)  # 2 time entries
    log = PartitionLog.open(tmp_path / "t-0", config, 0)
    for timestamp in range(4):
        _append(log, b"a", timestamp=timestamp)
    assert log.segment_base_offsets == [0, 3]
    log.close()


def test_retention_bytes_deletes_oldest_segments_beyond_the_limit(tmp_path: Path) -> None:
    """Oldest segments go while the log stays at least retention.bytes without them."""
    log = PartitionLog.open(tmp_path / "t-0", LogConfig(segment_bytes=150), 0)
    size = _append(log, b"x" * 60)
    for _ in range(4):
        _append(log, b"x" * 60)
    assert log.segment_base_offsets == [0, 1, 2, 3, 4]
    log.update_config(LogConfig(segment_bytes=150, retention_bytes=2 * size))
    assert log.apply_retention(0) == 3
    assert log.segment_base_offsets == [3, 4]
    assert log.log_start_offset == 3
    assert [r.offset for r in read_records(log)] == [3, 4]
    log.close()


def test_retention_ms_deletes_segments_whose_newest_record_is_too_old(tmp_path: Path) -> None:
    """A segment goes once its largest timestamp is more than retention.ms before now."""
    config = LogConfig(segment_bytes=150, retention_ms=1000)
    log = PartitionLog.open(tmp_path / "t-0", config, 0)
    for timestamp in (100, 200, 5000):
        _append(log, b"x" * 60, timestamp=timestamp)
    assert log.apply_retention(now_ms=1200) == 1
    assert log.segment_base_offsets == [1, 2]
    assert log.apply_retention(now_ms=1200) == 0
    log.close()


def test_when_every_segment_expires_a_new_active_segment_keeps_the_end_offset(
    tmp_path: Path,
) -> None:
    """Like Kafka, expiring the active segment rolls an empty one at the log end offset first."""
    config = LogConfig(segment_bytes=150, retention_ms=1000)
    log = PartitionLog.open(tmp_path / "t-0", config, 0)
    for _ in range(3):
        _append(log, b"x" * 60, timestamp=100)
    assert log.apply_retention(now_ms=10_000) == 3
    assert log.segment_base_offsets == [3]
    assert (log.log_start_offset, log.log_end_offset) == (3, 3)
    assert log.append(*record_set(batch(b"y")), 0).first_offset == 3
    log.close()


def test_retention_keeps_segments_above_the_high_watermark(tmp_path: Path) -> None:
    """Segments holding uncommitted offsets are not deleted, however old."""
    config = LogConfig(segment_bytes=150, retention_ms=1000)
    log = PartitionLog.open(tmp_path / "t-0", config, 0)
    for _ in range(3):
        _append(log, b"x" * 60, timestamp=100)
    assert log.apply_retention(now_ms=10_000, high_watermark=1) == 1
    assert log.segment_base_offsets == [1, 2]
    log.close()


def test_retention_does_nothing_on_a_compact_only_topic(tmp_path: Path) -> None:
    """cleanup.policy=compact alone never deletes segments by age or size."""
    config = LogConfig(segment_bytes=150, retention_ms=1, cleanup_policy=frozenset({"compact"}))
    log = PartitionLog.open(tmp_path / "t-0", config, 0)
    for key in (b"a", b"b"):
        log.append(*record_set(batch(b"x" * 60, keys=[key])), 0)
    assert log.apply_retention(now_ms=10_000) == 0
    assert log.segment_base_offsets == [0, 1]
    log.close()


def test_retention_rules_delete_the_longer_prefix() -> None:
    """Each rule deletes a prefix of segments; together they delete the longest of them."""
    segments = [
        SegmentSummary(size_bytes=100, largest_timestamp=0, next_offset=1),
        SegmentSummary(size_bytes=100, largest_timestamp=5000, next_offset=2),
        SegmentSummary(size_bytes=100, largest_timestamp=0, next_offset=3),
        SegmentSummary(size_bytes=100, largest_timestamp=5000, next_offset=4),
    ]
    by_time = LogConfig(retention_ms=1000)
    assert segments_to_delete(segments, by_time, now_ms=5500) == 1
    by_both = LogConfig(retention_ms=1000, retention_bytes=150)
    assert segments_to_delete(segments, by_both, now_ms=5500) == 2


def test_retention_never_counts_an_empty_active_segment() -> None:
    """An empty active segment is not expired, whatever its creation time."""
    segments = [
        SegmentSummary(size_bytes=100, largest_timestamp=0, next_offset=1),
        SegmentSummary(size_bytes=0, largest_timestamp=0, next_offset=1),
    ]
    assert segments_to_delete(segments, LogConfig(retention_ms=10), now_ms=1000) == 1
