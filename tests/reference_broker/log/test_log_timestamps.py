"""ListOffsets support: the first offset at or after a timestamp, and the largest timestamp."""

from __future__ import annotations

from pathlib import Path

import pytest

from reference_broker.log import LogConfig, PartitionLog
from reference_broker.log.testing import batch, record_set


def _log_with(
    tmp_path: Path, *timestamp_batches: list[int], config: LogConfig | None = None
) -> PartitionLog:
    log = PartitionLog.open(tmp_path / "t-0", config or LogConfig(), 0)
    for timestamps in timestamp_batches:
        values = [b"v" * 40 for _ in timestamps]
        log.append(*record_set(batch(*values, timestamps=timestamps)), 0)
    return log


@pytest.mark.parametrize(
    ("target", "expected"),
    [(0, (0, 10)), (10, (0, 10)), (11, (1, 20)), (25, (4, 30)), (31, (5, 35)), (36, None)],
)
def test_offset_for_timestamp_finds_the_first_record_at_or_after_it(
    tmp_path: Path, target: int, expected: tuple[int, int] | None
) -> None:
    """The answer is a record offset inside a multi-record batch, not the batch's base offset."""
    log = _log_with(tmp_path, [10, 20, 15], [5, 30, 35], config=LogConfig(index_interval_bytes=0))
    assert log.offset_for_timestamp(target) == expected
    log.close()


def test_offset_for_timestamp_handles_timestamps_going_backwards(tmp_path: Path) -> None:
    """Records with non-monotonic timestamps: the earliest offset whose timestamp qualifies wins."""
    config = LogConfig(segment_bytes=250, index_interval_bytes=0)
    log = _log_with(tmp_path, *[[t] for t in (100, 50, 300, 200, 250, 400)], config=config)
    assert len(log.segment_base_offsets) > 1
    assert log.offset_for_timestamp(60) == (0, 100)
    assert log.offset_for_timestamp(150) == (2, 300)
    assert log.offset_for_timestamp(301) == (5, 400)
    log.close()


def test_offset_for_timestamp_skips_records_below_the_log_start(tmp_path: Path) -> None:
    """Records DeleteRecords made unreadable are never returned."""
    log = _log_with(tmp_path, [10, 20, 30])
    log.delete_records_before(2)
    assert log.offset_for_timestamp(0) == (2, 30)
    log.close()


def test_max_timestamp_names_the_record_not_the_batch(tmp_path: Path) -> None:
    """KIP-734: the offset of the record with the largest timestamp, the first one on a tie."""
    log = _log_with(tmp_path, [10, 20], [5, 90, 40, 90], [80], config=LogConfig(segment_bytes=300))
    assert len(log.segment_base_offsets) > 1
    assert log.max_timestamp() == (3, 90)
    log.close()


def test_max_timestamp_of_an_empty_log_is_none(tmp_path: Path) -> None:
    """A log without records has no largest timestamp."""
    log = PartitionLog.open(tmp_path / "t-0", LogConfig(), 0)
    assert log.max_timestamp() is None
    assert log.offset_for_timestamp(0) is None
    log.close()


@pytest.mark.parametrize("clean", [True, False])
def test_timestamp_lookups_survive_reopening(tmp_path: Path, clean: bool) -> None:
    """Time indexes reloaded (or rebuilt after a crash) answer as before."""
    config = LogConfig(segment_bytes=300)
    log = _log_with(tmp_path, [10, 20], [5, 90, 40], [80], [95, 1], config=config)
    before = [log.offset_for_timestamp(t) for t in (0, 15, 41, 85, 91, 96)], log.max_timestamp()
    if clean:
        log.close()
    else:
        log.abandon()
    log = PartitionLog.open(tmp_path / "t-0", config, 0)
    after = [log.offset_for_timestamp(t) for t in (0, 15, 41, 85, 91, 96)], log.max_timestamp()
    assert after == before
    assert before[1] == (6, 95)
    log.close()


@pytest.mark.parametrize("reopen", [False, True])
def test_max_timestamp_tie_names_the_earliest_record(tmp_path: Path, reopen: bool) -> None:
    """When two batches share the largest timestamp, the earlier one's record is named."""
    log = _log_with(tmp_path, [50], [90], [10], [90], config=LogConfig(index_interval_bytes=0))
    if reopen:
        log.close()
        log = PartitionLog.open(tmp_path / "t-0", LogConfig(index_interval_bytes=0), 0)
    assert log.max_timestamp() == (1, 90)
    log.close()


def test_max_timestamp_counts_records_below_the_log_start(tmp_path: Path) -> None:
    """Kafka's answer (measured on 3.9.2 and 4.4.0): DeleteRecords only moves the log start, the
    records stay in their segment, and MAX_TIMESTAMP still names the first of them with the
    largest timestamp, below the log start."""
    log = _log_with(tmp_path, [7, 7, 7])
    log.delete_records_before(1)
    assert log.max_timestamp() == (0, 7)
    log.delete_records_before(3)
    assert log.max_timestamp() == (0, 7)
    log.close()


def test_max_timestamp_after_retention_removed_every_segment_is_none(tmp_path: Path) -> None:
    """Retention deletes whole segments: with all of them gone nothing is stored, so there is
    no largest timestamp until a record arrives (Kafka answers -1, then the new record)."""
    log = _log_with(tmp_path, [1, 2], [3], config=LogConfig(retention_ms=1000))
    assert log.apply_retention(now_ms=10_000) >= 1
    assert log.log_start_offset == log.log_end_offset == 3
    assert log.max_timestamp() is None
    assert log.offset_for_timestamp(0) is None
    log.append(*record_set(batch(b"v", timestamps=[0])), 0)
    assert log.max_timestamp() == (3, 0)
    log.close()


def test_offset_for_timestamp_commits_to_the_first_segment_reaching_it(tmp_path: Path) -> None:
    """Kafka's searchOffsetInLocalLog (measured): segments [5, 1] and [7], DeleteRecords before
    1. The first segment's largest timestamp (5, of a record below the log start) reaches 4, so
    only that segment is searched, from the log start: no record, although offset 2 has 7."""
    log = _log_with(tmp_path, [5, 1], [7], config=LogConfig(segment_ms=1))
    assert log.segment_base_offsets[:2] == [0, 2]
    log.delete_records_before(1)
    assert log.offset_for_timestamp(4) is None
    assert log.offset_for_timestamp(6) == (2, 7)
    assert log.offset_for_timestamp(0) == (1, 1)
    log.close()
