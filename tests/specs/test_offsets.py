"""Fetch and ListOffsets answers of the model."""

from __future__ import annotations

from specs.log import PartitionLog, Record
from specs.offsets import (
    OFFSET_OUT_OF_RANGE,
    IsolationLevel,
    OffsetSpec,
    fetch,
    fetch_allows,
    list_offsets,
    offset_to_commit,
)
from specs.types import Offset

LOG = PartitionLog(
    log_start_offset=Offset(2),
    high_watermark=Offset(5),
    records=tuple(Record(f"v{i}", timestamp=100 * i) for i in range(2, 8)),
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
    between = fetch(LOG, Offset(6))
    assert between.error is None and between.records == ()


def test_fetch_allows_any_prefix_of_the_readable_records() -> None:
    """A shorter answer is fine; a gap or a record past the HW is not."""
    full = fetch(LOG, Offset(2)).records
    assert fetch_allows(LOG, Offset(2), full[:1])
    assert not fetch_allows(LOG, Offset(2), full[1:])
    assert not fetch_allows(LOG, Offset(4), ((Offset(5), Record("v5", timestamp=500)),))


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
