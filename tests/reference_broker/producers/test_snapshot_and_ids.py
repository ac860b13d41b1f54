"""Producer-state snapshot bytes and the producer id allocator."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference_broker.producers.id_allocator import FILE_NAME, ProducerIdAllocator
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


def test_ids_increase_and_a_block_is_reserved_before_it_is_used() -> None:
    """The allocator persists the end of a block before handing out its first id."""
    reserved: list[int] = []
    allocator = ProducerIdAllocator(0, reserved.append, block_size=3)
    ids = []
    for _ in range(4):
        ids.append(allocator.allocate())
        assert reserved[-1] > ids[-1]
    assert ids == [0, 1, 2, 3]
    assert reserved == [3, 6]


def test_ids_are_never_reused_across_restarts(tmp_path: Path) -> None:
    """A restarted allocator starts after the last reserved block, even if it was not used up."""
    first = ProducerIdAllocator.in_directory(tmp_path, block_size=10)
    used = [first.allocate() for _ in range(3)]
    assert (tmp_path / FILE_NAME).exists()
    second = ProducerIdAllocator.in_directory(tmp_path, block_size=10)
    assert second.allocate() == 10
    third = ProducerIdAllocator.in_directory(tmp_path, block_size=10)
    assert third.allocate() == 20
    assert used == [0, 1, 2]
