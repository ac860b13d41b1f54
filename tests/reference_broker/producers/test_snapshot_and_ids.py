"""Producer-state snapshot bytes and the producer id allocator."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference_broker.producers.id_allocator import ProducerIdBlocks
from reference_broker.producers.snapshot import SnapshotError, decode, encode
from reference_broker.producers.state import BatchMetadata, ProducerEntry

INT32 = st.integers(0, 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
batches = st.builds(BatchMetadata, INT32, INT32, INT64, INT64, INT64)
entries = st.builds(
    ProducerEntry,
    st.integers(0, 2**63 - 1),
    st.integers(-(2**15), 2**15 - 1),
    st.lists(batches, min_size=1, max_size=5).map(tuple),
)
states = st.lists(entries, unique_by=lambda entry: entry.producer_id, max_size=20)


@given(states)
def test_a_snapshot_round_trips(state: list[ProducerEntry]) -> None:
    """Every entry, with all of its cached batches, comes back from the snapshot bytes."""
    assert sorted(decode(encode(state)), key=lambda e: e.producer_id) == sorted(
        state, key=lambda e: e.producer_id)


@given(states.filter(bool), st.data())
def test_a_damaged_snapshot_is_refused(state: list[ProducerEntry], data: st.DataObject) -> None:
    """A torn or bit-flipped snapshot raises SnapshotError instead of loading wrong state."""
    raw = bytearray(encode(state))
    if data.draw(st.booleans()):
        del raw[data.draw(st.integers(0, len(raw) - 1)):]
    else:
        raw[data.draw(st.integers(0, len(raw) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(SnapshotError):
        decode(bytes(raw))


def test_ids_come_from_the_current_block_and_waiters_get_the_next_one() -> None:
    """Ids are handed out in block order; callers waiting for a block get its first ids, and
    the unused rest of an old block is skipped."""
    blocks = ProducerIdBlocks()
    assert blocks.allocate() is None
    got: list[int | None] = []
    blocks.waiting += [got.append, got.append]
    blocks.add_block(0, 3)
    assert got == [0, 1]
    assert blocks.allocate() == 2 and blocks.allocate() is None
    blocks.add_block(10, 2)
    assert [blocks.allocate(), blocks.allocate(), blocks.allocate()] == [10, 11, None]
    with pytest.raises(ValueError):
        blocks.add_block(5, 2)  # a block below ids already used would repeat them
    blocks.waiting.append(got.append)
    blocks.fail_waiting()
    assert got == [0, 1, None]
