"""The partition log model: contiguous offsets and the order of its positions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from specs.log import LogModel, LogRuleError, ModelRecord
from specs.types import Offset


def _log(n: int, hw: int) -> LogModel:
    log, _ = LogModel().append(ModelRecord(f"v{i}") for i in range(n))
    return log.advance_high_watermark(Offset(hw))


@given(st.lists(st.integers(min_value=0, max_value=5), max_size=10))
def test_appends_get_contiguous_offsets_from_the_log_end(batches: list[int]) -> None:
    """Each append starts at the previous log end offset, so offsets are contiguous."""
    log, expected = LogModel(), 0
    for size in batches:
        log, base = log.append(ModelRecord(f"{expected + i}") for i in range(size))
        assert base == expected
        expected += size
        assert log.log_end_offset == expected
    assert [r.value for _, r in log.entries()] == [str(i) for i in range(expected)]


def test_high_watermark_never_moves_back_or_past_the_log_end() -> None:
    """The leader's high watermark is monotonic and bounded by the log end offset."""
    log = _log(3, 2)
    with pytest.raises(LogRuleError, match="move back"):
        log.advance_high_watermark(Offset(1))
    with pytest.raises(LogRuleError, match="log end"):
        log.advance_high_watermark(Offset(4))


def test_truncation_below_the_high_watermark_needs_an_unclean_election() -> None:
    """Only an unclean election may remove committed records; a clean truncation keeps them."""
    log = _log(5, 3)
    assert log.truncate_to(Offset(3)).log_end_offset == 3
    with pytest.raises(LogRuleError, match="unclean"):
        log.truncate_to(Offset(2))
    unclean = log.truncate_to(Offset(1), unclean=True)
    assert (unclean.log_end_offset, unclean.high_watermark) == (1, 1)


def test_log_start_moves_forward_only_up_to_the_high_watermark() -> None:
    """Retention/DeleteRecords advance the log start offset, never past the high watermark."""
    log = _log(5, 3)
    trimmed = log.delete_before(Offset(2))
    assert trimmed.log_start_offset == 2 and trimmed.at(Offset(1)) is None
    assert trimmed.at(Offset(2)) == ModelRecord("v2")
    assert trimmed.delete_before(Offset(1)) is trimmed
    with pytest.raises(LogRuleError, match="high watermark"):
        log.delete_before(Offset(4))


def test_last_stable_offset_stops_at_the_first_open_transaction() -> None:
    """The LSO is the first open transaction's offset, capped by the high watermark (KIP-98)."""
    log = LogModel(high_watermark=Offset(4), records=tuple(ModelRecord(str(i)) for i in range(5)),
                       first_open_transaction_offset=Offset(2))
    assert log.last_stable_offset == 2
    assert LogModel(high_watermark=Offset(1), records=(ModelRecord("a"), ModelRecord("b")),
                        first_open_transaction_offset=Offset(1)).last_stable_offset == 1


def test_positions_out_of_order_are_refused() -> None:
    """A log whose high watermark passes its end cannot be built."""
    with pytest.raises(LogRuleError, match="out of order"):
        LogModel(high_watermark=Offset(2), records=(ModelRecord("a"),))
