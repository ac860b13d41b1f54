"""Fetch and ListOffsets answers of the model."""

from __future__ import annotations

from specs.log import LogModel, ModelRecord
from specs.offsets import (
    OFFSET_OUT_OF_RANGE,
    IsolationLevel,
    OffsetSpec,
    StoredLog,
    fetch,
    list_offsets,
    max_timestamp,
    offset_to_commit,
)
from specs.types import Offset

LOG = LogModel(
    log_start_offset=Offset(2),
    high_watermark=Offset(5),
    records=tuple(ModelRecord(f"v{i}", timestamp=100 * i) for i in range(2, 8)),
    first_open_transaction_offset=Offset(4),
)


def test_fetch_returns_records_below_the_high_watermark_only() -> None:
    """read_uncommitted stops at the HW, read_committed at the LSO; both report both."""
    answer = fetch(LOG, Offset(3))
    assert [o for o, _ in answer.records] == [3, 4]
    assert (answer.high_watermark, answer.last_stable_offset, answer.log_start_offset) == (5, 4, 2)
    assert [o for o, _ in fetch(LOG, Offset(3), IsolationLevel.READ_COMMITTED).records] == [3]


def test_fetch_out_of_range_below_start_or_past_end_but_not_between_hw_and_end() -> None:
    """Offsets in [HW, LEO] are in range with no records; outside the log they are out of range."""
    assert fetch(LOG, Offset(1)).error == OFFSET_OUT_OF_RANGE
    assert fetch(LOG, Offset(9)).error == OFFSET_OUT_OF_RANGE
    # Kafka (measured, 4.4.0) reports no positions with the error
    out = fetch(LOG, Offset(9))
    assert (out.high_watermark, out.last_stable_offset, out.log_start_offset, out.records) == (-1, -1, -1, ())
    between = fetch(LOG, Offset(6))
    assert between.error is None and between.records == ()


def test_list_offsets_earliest_latest_and_by_timestamp() -> None:
    """earliest is the log start, latest the HW or LSO, a timestamp the first record at/after it."""
    assert list_offsets(LOG, OffsetSpec.EARLIEST) == 2
    assert list_offsets(LOG, OffsetSpec.LATEST) == 5
    assert list_offsets(LOG, OffsetSpec.LATEST, IsolationLevel.READ_COMMITTED) == 4
    assert list_offsets(LOG, 250) == 3
    assert list_offsets(LOG, 600) == -1  # offset 6 has that timestamp but is past the HW


def test_the_committed_offset_is_the_next_one_to_read() -> None:
    """After processing offset 9 a consumer commits 10."""
    assert offset_to_commit(Offset(9)) == 10


def _log(*timestamps: int, start: int = 0) -> tuple[LogModel, StoredLog]:
    """A committed log of records with these timestamps from offset 0, DeleteRecords before
    ``start``, and what a broker stores then (one segment, the deleted records included)."""
    full = LogModel(records=tuple(ModelRecord(f"v{i}", timestamp=t) for i, t in enumerate(timestamps)))
    full = full.advance_high_watermark(full.log_end_offset)
    log = full.delete_before(Offset(start))
    return log, StoredLog.of(log, full.entries(end=Offset(start)))


def test_max_timestamp_is_the_first_record_with_the_largest_timestamp() -> None:
    """KIP-734 as Kafka answers it: the record, not its batch, and the earliest one on a tie."""
    log, stored = _log(10, 50, 20, 50)
    assert max_timestamp(log, stored=stored) == (50, 1)
    assert list_offsets(log, OffsetSpec.MAX_TIMESTAMP, stored=stored) == 1


def test_max_timestamp_may_be_below_the_log_start() -> None:
    """The seed 1828024342 case, measured on Kafka 3.9.2 and 4.4.0: three records with one
    timestamp, DeleteRecords before 1; Kafka names offset 0, which its segment still holds."""
    log, stored = _log(7, 7, 7, start=1)
    assert max_timestamp(log, stored=stored) == (7, 0)
    emptied, stored_emptied = _log(3, 7, start=2)
    assert emptied.log_start_offset == emptied.log_end_offset == 2
    assert max_timestamp(emptied, stored=stored_emptied) == (7, 1)


def test_max_timestamp_of_what_is_not_stored_or_not_readable_is_minus_one() -> None:
    """Nothing stored (a new partition, or retention removed every segment): -1 / -1. A record
    at or past the high watermark (or the LSO) is not answered either."""
    assert max_timestamp(LogModel()) == (-1, -1)
    after_retention = LogModel(log_start_offset=Offset(3), high_watermark=Offset(3))
    assert max_timestamp(after_retention, stored=StoredLog()) == (-1, -1)
    assert max_timestamp(LOG) == (-1, -1)  # the largest timestamp, at offset 7, is past the HW 5
    assert max_timestamp(LOG, IsolationLevel.READ_COMMITTED) == (-1, -1)
    readable = LogModel(high_watermark=Offset(2), records=(ModelRecord("a", timestamp=9), ModelRecord("b", timestamp=4)))
    assert max_timestamp(readable, IsolationLevel.READ_COMMITTED) == (9, 0)


def test_max_timestamp_ties_across_segments_name_the_first_segment() -> None:
    """Kafka picks the segment with the largest maxTimestampSoFar, the first on a tie."""
    log = LogModel(high_watermark=Offset(3), records=tuple(ModelRecord(f"v{i}", timestamp=5) for i in range(3)))
    stored = StoredLog((tuple(log.entries(end=Offset(1))), tuple(log.entries(start=Offset(1)))))
    assert max_timestamp(log, stored=stored) == (5, 0)


def test_timestamp_lookup_commits_to_the_first_segment_reaching_the_target() -> None:
    """Measured on Kafka: segments [5, 1] and [7], DeleteRecords before 1. Timestamp 4: the
    first segment's largest timestamp (5, below the log start) reaches it, so Kafka searches
    only there, from the log start, and answers -1; timestamp 6 goes to the second segment."""
    full = LogModel(high_watermark=Offset(3), records=(
        ModelRecord("a", timestamp=5), ModelRecord("b", timestamp=1), ModelRecord("c", timestamp=7)))
    log = full.delete_before(Offset(1))
    stored = StoredLog((tuple(full.entries(end=Offset(2))), tuple(full.entries(start=Offset(2)))))
    assert list_offsets(log, 4, stored=stored) == -1
    assert list_offsets(log, 6, stored=stored) == 2
    assert list_offsets(log, 0, stored=stored) == 1
    assert list_offsets(log, 4) == 2  # one segment holding only the log: the first match
