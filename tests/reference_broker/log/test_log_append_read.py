"""Appending to and reading from a PartitionLog: offsets, fetch sizes, bounds, validation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reference_broker.log import (
    LogConfig,
    LogError,
    OffsetOutOfRangeError,
    PartitionLog,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from reference_broker.log.testing import batch, read_records, record_set, stored_batches
from reference_broker.records import InvalidRecordError, iter_records


def _append(log: PartitionLog, *batches: bytes, now_ms: int = 0) -> bytearray:
    records, headers = record_set(*batches)
    log.append(records, headers, now_ms)
    return records


def test_append_then_read_returns_the_stored_bytes(tmp_path: Path) -> None:
    """A read from offset 0 returns exactly the appended batches, base offsets patched."""
    log = PartitionLog.open(tmp_path / "t-0", LogConfig(), 0)
    first = _append(log, batch(b"a", b"b"))
    second = _append(log, batch(b"c"))
    assert log.read(0, 1 << 20).records == bytes(first + second)
    assert [r.value for r in read_records(log)] == [b"a", b"b", b"c"]
    log.close()


def test_offsets_are_contiguous_across_appends_and_batches(tmp_path: Path) -> None:
    """Each append's batches get consecutive offsets starting at the log end offset."""
    log = PartitionLog.open(tmp_path / "t-0", LogConfig(), 0)
    records, headers = record_set(batch(b"a", b"b", b"c"), batch(b"d"))
    result = log.append(records, headers, 0)
    assert (result.first_offset, result.last_offset) == (0, 3)
    assert [h.base_offset for h in stored_batches(bytes(records))] == [0, 3]
    result = log.append(*record_set(batch(b"e", b"f")), 0)
    assert (result.first_offset, result.last_offset, log.log_end_offset) == (4, 5, 6)
    assert [r.offset for r in read_records(log)] == list(range(6))
    log.close()


def test_read_from_the_middle_of_a_batch_returns_that_batch(tmp_path: Path) -> None:
    """Fetching offset 4 of a batch holding 3..5 returns the whole batch from offset 3."""
    log = PartitionLog.open(tmp_path / "t-0", LogConfig(), 0)
    _append(log, batch(b"a", b"b", b"c"))
    _append(log, batch(b"d", b"e", b"f"))
    headers = stored_batches(log.read(4, 1 << 20).records)
    assert [h.base_offset for h in headers] == [3]
    log.close()


def test_max_bytes_returns_only_whole_batches(tmp_path: Path) -> None:
    """A fetch stops at the last batch that fits in max_bytes, never splitting one."""
    log = PartitionLog.open(tmp_path / "t-0", LogConfig(), 0)
    sizes = [len(_append(log, batch(b"x" * 50))) for _ in range(4)]
    data = log.read(0, sizes[0] + sizes[1] + sizes[2] // 2).records
    assert [h.base_offset for h in stored_batches(data)] == [0, 1]
    log.close()


def test_first_batch_comes_whole_even_above_max_bytes(tmp_path: Path) -> None:
    """KIP-74: a batch larger than max_bytes is returned whole, unless min_one_batch is off."""
    log = PartitionLog.open(tmp_path / "t-0", LogConfig(), 0)
    big = _append(log, batch(b"x" * 500))
    _append(log, batch(b"y"))
    assert log.read(0, 10).records == bytes(big)
    assert log.read(0, 10, min_one_batch=False).records == b""
    log.close()


def test_upper_bound_excludes_batches_at_or_above_it(tmp_path: Path) -> None:
    """No batch whose base offset is at or beyond the high watermark is returned."""
    log = PartitionLog.open(tmp_path / "t-0", LogConfig(), 0)
    for value in (b"a", b"b", b"c"):
        _append(log, batch(value))
    assert [h.base_offset for h in stored_batches(log.read(0, 1 << 20, upper_bound=2).records)] == [
        0,
        1,
    ]
    assert log.read(2, 1 << 20, upper_bound=2).records == b""
    log.close()


def test_read_at_the_log_end_is_empty(tmp_path: Path) -> None:
    """Fetching at the log end offset returns no records and no error."""
    log = PartitionLog.open(tmp_path / "t-0", LogConfig(), 0)
    _append(log, batch(b"a"))
    result = log.read(1, 1 << 20)
    assert (result.records, result.log_end_offset) == (b"", 1)
    log.close()


@pytest.mark.parametrize("offset", [-1, 2])
def test_read_outside_the_log_raises_with_both_bounds(tmp_path: Path, offset: int) -> None:
    """Offsets below the start or above the end raise OffsetOutOfRangeError carrying the range."""
    log = PartitionLog.open(tmp_path / "t-0", LogConfig(), 0)
    _append(log, batch(b"a"))
    with pytest.raises(OffsetOutOfRangeError) as raised:
        log.read(offset, 1 << 20)
    assert (raised.value.offset, raised.value.log_start_offset, raised.value.log_end_offset) == (
        offset,
        0,
        1,
    )
    log.close()


@pytest.mark.parametrize(
    ("config", "size", "error"),
    [
        # RECORD_LIST_TOO_LARGE: a record set bigger than segment.bytes
        pytest.param(LogConfig(segment_bytes=200), 300, RecordListTooLargeError, id="larger-than-a-segment"),
        # MESSAGE_TOO_LARGE: a batch above max.message.bytes
        pytest.param(LogConfig(max_message_bytes=100), 100, RecordTooLargeError, id="above-max-message-bytes"),
    ],
)
def test_an_oversized_append_is_rejected_and_the_log_unchanged(
    tmp_path: Path, config: LogConfig, size: int, error: type[Exception]
) -> None:
    """A record set over one of the log's size limits is refused with that limit's error."""
    log = PartitionLog.open(tmp_path / "t-0", config, 0)
    with pytest.raises(error):
        _append(log, batch(b"x" * size))
    assert log.log_end_offset == 0
    log.close()


def test_compacted_topic_rejects_records_without_a_key(tmp_path: Path) -> None:
    """A keyless record cannot be appended to a compacted topic; keyed ones can."""
    log = PartitionLog.open(tmp_path / "t-0", LogConfig(cleanup_policy=frozenset({"compact"})), 0)
    with pytest.raises(InvalidRecordError):
        _append(log, batch(b"a", b"b", keys=[b"k", None]))
    _append(log, batch(b"a", keys=[b"k"]))
    assert log.log_end_offset == 1
    log.close()


def test_log_append_time_replaces_record_timestamps(tmp_path: Path) -> None:
    """With LogAppendTime the broker's clock becomes every record's timestamp."""
    config = LogConfig(message_timestamp_type="LogAppendTime")
    log = PartitionLog.open(tmp_path / "t-0", config, 0)
    records, headers = record_set(batch(b"a", b"b", timestamps=[5, 6]))
    result = log.append(records, headers, 1234)
    assert result.log_append_time_ms == 1234
    assert [r.timestamp for r in read_records(log)] == [1234, 1234]
    assert stored_batches(log.read(0, 1 << 20).records)[0].is_log_append_time
    log.close()


def test_follower_append_keeps_the_leaders_offsets(tmp_path: Path) -> None:
    """append_as_follower stores batches at their own offsets and refuses to go backwards."""
    leader = PartitionLog.open(tmp_path / "leader", LogConfig(), 0)
    _append(leader, batch(b"a", b"b"))
    _append(leader, batch(b"c"))
    follower = PartitionLog.open(tmp_path / "follower", LogConfig(), 0)
    data = leader.read(0, 1 << 20).records
    follower.append_as_follower(data, stored_batches(data), 0)
    assert follower.log_end_offset == 3
    assert follower.read(0, 1 << 20).records == data
    with pytest.raises(LogError):
        follower.append_as_follower(data, stored_batches(data), 0)
    leader.close()
    follower.close()


def test_fetch_at_the_tail_reads_little_of_a_large_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fetch near the end of a large segment reads about one index interval, not the log."""
    log = PartitionLog.open(tmp_path / "t-0", LogConfig(index_interval_bytes=1024), 0)
    for _ in range(40):
        _append(log, *[batch(b"x" * 200) for _ in range(100)])
    assert log.size_bytes > 1_000_000
    bytes_read = 0
    real_pread = os.pread

    def counting_pread(fd: int, size: int, position: int) -> bytes:
        nonlocal bytes_read
        data = real_pread(fd, size, position)
        bytes_read += len(data)
        return data

    monkeypatch.setattr(os, "pread", counting_pread)
    data = log.read(log.log_end_offset - 2, 1 << 20).records
    assert len(stored_batches(data)) == 2
    assert bytes_read < 150_000
    log.close()


def test_records_survive_a_clean_reopen(tmp_path: Path) -> None:
    """After close and open the log holds the same records and continues its offsets."""
    log = PartitionLog.open(tmp_path / "t-0", LogConfig(segment_bytes=300), 0)
    for value in (b"a", b"b", b"c", b"d", b"e"):
        _append(log, batch(value * 60))
    log.close()
    log = PartitionLog.open(tmp_path / "t-0", LogConfig(segment_bytes=300), 0)
    assert [r.value for r in read_records(log)] == [v * 60 for v in (b"a", b"b", b"c", b"d", b"e")]
    assert log.append(*record_set(batch(b"f")), 0).first_offset == 5
    log.close()


def test_delete_removes_the_partition_directory(tmp_path: Path) -> None:
    """delete() closes the log and removes its directory (DeleteTopics)."""
    log = PartitionLog.open(tmp_path / "t-0", LogConfig(), 0)
    _append(log, batch(b"a"))
    log.delete()
    assert not (tmp_path / "t-0").exists()


def test_records_read_back_decode_to_what_was_produced(tmp_path: Path) -> None:
    """Keys, values and timestamps round-trip through the log."""
    log = PartitionLog.open(tmp_path / "t-0", LogConfig(), 0)
    _append(log, batch(b"v1", None, keys=[b"k1", b"k2"], timestamps=[10, 11]))
    data = log.read(0, 1 << 20).records
    records = list(iter_records(data, stored_batches(data)[0]))
    assert [(r.offset, r.key, r.value, r.timestamp) for r in records] == [
        (0, b"k1", b"v1", 10),
        (1, b"k2", None, 11),
    ]
    log.close()
