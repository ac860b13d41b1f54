"""The leader epoch cache: Kafka's LeaderEpochFileCache rules, its checkpoint file, and the log
keeping it in step with appends, truncation and the log start offset."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference_broker.log import LogConfig, PartitionLog
from reference_broker.log.leader_epochs import (
    LEADER_EPOCH_CHECKPOINT,
    UNDEFINED_EPOCH,
    UNDEFINED_EPOCH_OFFSET,
    LeaderEpochCache,
)
from reference_broker.log.testing import batch, record_set, stored_batches

UNDEFINED = (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)


def _cache(*entries: tuple[int, int]) -> LeaderEpochCache:
    return LeaderEpochCache(None, entries)


def test_the_latest_epoch_ends_at_the_log_end() -> None:
    """Asking for the epoch still being written to answers the log end offset."""
    assert _cache((0, 0), (2, 10)).end_offset_for(2, 17) == (2, 17)


def test_an_older_epoch_ends_where_the_next_known_one_starts() -> None:
    """An epoch between known ones is answered with the largest known epoch below it."""
    cache = _cache((0, 0), (2, 10), (5, 30))
    assert cache.end_offset_for(0, 40) == (0, 10)
    assert cache.end_offset_for(1, 40) == (0, 10)
    assert cache.end_offset_for(3, 40) == (2, 30)


def test_an_epoch_older_than_every_known_one_gets_the_first_start_offset() -> None:
    """Epochs below the earliest known one answer the requested epoch and the first start."""
    assert _cache((3, 50), (4, 60)).end_offset_for(1, 70) == (1, 50)


def test_undefined_answers() -> None:
    """Nothing known, an undefined epoch, or an epoch past the latest: (-1, -1)."""
    assert _cache().end_offset_for(0, 5) == UNDEFINED
    assert _cache((0, 0)).end_offset_for(UNDEFINED_EPOCH, 5) == UNDEFINED
    assert _cache((0, 0), (1, 3)).end_offset_for(7, 5) == UNDEFINED


def test_assign_ignores_repeats_and_removes_entries_that_break_monotonicity() -> None:
    """Re-assigning the latest epoch at a later offset changes nothing; a lower start or an
    epoch below the latest replaces the entries it conflicts with."""
    cache = _cache((0, 0), (1, 5))
    assert not cache.assign(1, 9)
    assert cache.assign(1, 4)
    assert cache.entries() == [(0, 0), (1, 4)]
    assert cache.assign(3, 2)
    assert cache.entries() == [(0, 0), (3, 2)]
    assert not cache.assign(-1, 10)


def test_truncation_from_both_ends() -> None:
    """Truncating the log end drops epochs starting at or past it; moving the log start drops
    older epochs and moves the one covering the new start to it."""
    cache = _cache((0, 0), (1, 5), (2, 9))
    cache.truncate_from_end(9)
    assert cache.entries() == [(0, 0), (1, 5)]
    cache.truncate_from_start(7)
    assert cache.entries() == [(1, 7)]
    cache.truncate_from_start(3)
    assert cache.entries() == [(1, 7)]


def test_checkpoint_round_trip_and_kafka_format(tmp_path: Path) -> None:
    """The file is Kafka's leader-epoch-checkpoint: version, count, one entry per line."""
    path = tmp_path / LEADER_EPOCH_CHECKPOINT
    cache = LeaderEpochCache(path)
    cache.assign(0, 0)
    cache.assign(3, 12)
    assert path.read_text() == "0\n2\n0 0\n3 12\n"
    loaded = LeaderEpochCache.load(path)
    assert loaded is not None and loaded.entries() == [(0, 0), (3, 12)]


@pytest.mark.parametrize("text", ["", "1\n0\n", "0\n2\n0 0\n", "0\n1\nx y\n", "0\n2\n3 0\n1 5\n"])
def test_a_malformed_checkpoint_loads_as_missing(tmp_path: Path, text: str) -> None:
    """A torn or garbled file is not trusted (the log rebuilds the cache from its batches)."""
    path = tmp_path / LEADER_EPOCH_CHECKPOINT
    path.write_text(text)
    assert LeaderEpochCache.load(path) is None


@given(
    st.lists(st.tuples(st.integers(0, 6), st.integers(0, 40)), max_size=12),
    st.integers(-1, 8),
)
def test_end_offsets_are_consistent_with_the_entries(
    assignments: list[tuple[int, int]], requested: int
) -> None:
    """Whatever is assigned, entries stay strictly increasing and the answer for an epoch is the
    largest known epoch at or below it, ended by the next start (or the log end)."""
    cache = _cache()
    for epoch, start in assignments:
        cache.assign(epoch, start)
    entries = cache.entries()
    assert all(a[0] < b[0] and a[1] < b[1] for a, b in zip(entries, entries[1:]))
    log_end = 100
    answer = cache.end_offset_for(requested, log_end)
    below = [e for e in entries if e[0] <= requested]
    if requested < 0 or not entries:
        assert answer == UNDEFINED
    elif requested > entries[-1][0]:
        assert answer == UNDEFINED
    elif requested == entries[-1][0]:
        assert answer == (requested, log_end)
    elif not below:
        assert answer == (requested, entries[0][1])
    else:
        following = entries[entries.index(below[-1]) + 1]
        assert answer == (below[-1][0], following[1])


# --- the log keeps the cache ---------------------------------------------------------------


def _leader_append(log: PartitionLog, epoch: int, *values: bytes) -> None:
    log.append(*record_set(batch(*values)), 0, leader_epoch=epoch)


def test_leader_appends_stamp_the_epoch_into_batches(tmp_path: Path) -> None:
    """Each stored batch carries the appending leader's epoch; the cache records its start."""
    log = PartitionLog.open(tmp_path / "t-0", LogConfig(), 0)
    _leader_append(log, 0, b"a", b"b")
    _leader_append(log, 4, b"c")
    headers = stored_batches(log.read(0, 1 << 20).records)
    assert [h.partition_leader_epoch for h in headers] == [0, 4]
    assert log.leader_epochs.entries() == [(0, 0), (4, 2)]
    log.close()


def test_follower_appends_learn_the_epochs_and_truncation_forgets_them(tmp_path: Path) -> None:
    """A follower's cache follows the epochs in the batches it copies, and loses those above a
    truncation point; the cache survives a restart."""
    leader = PartitionLog.open(tmp_path / "l", LogConfig(), 0)
    _leader_append(leader, 1, b"a")
    _leader_append(leader, 2, b"b", b"c")
    _leader_append(leader, 5, b"d")
    follower = PartitionLog.open(tmp_path / "f", LogConfig(), 0)
    data = leader.read(0, 1 << 20).records
    follower.append_as_follower(data, stored_batches(data), 0)
    assert follower.leader_epochs.entries() == [(1, 0), (2, 1), (5, 3)]
    follower.truncate_to(2)
    assert follower.log_end_offset == 1
    assert follower.leader_epochs.entries() == [(1, 0)]
    follower.close()
    reopened = PartitionLog.open(tmp_path / "f", LogConfig(), 0)
    assert reopened.leader_epochs.entries() == [(1, 0)]
    reopened.close()
    leader.close()


def test_a_lost_checkpoint_is_rebuilt_from_the_batches(tmp_path: Path) -> None:
    """Without leader-epoch-checkpoint the cache is rebuilt from the stored batch headers."""
    log = PartitionLog.open(tmp_path / "t-0", LogConfig(), 0)
    _leader_append(log, 0, b"a")
    _leader_append(log, 3, b"b")
    log.close()
    (tmp_path / "t-0" / LEADER_EPOCH_CHECKPOINT).unlink()
    reopened = PartitionLog.open(tmp_path / "t-0", LogConfig(), 0)
    assert reopened.leader_epochs.entries() == [(0, 0), (3, 1)]
    reopened.close()


def test_a_checkpoint_ahead_of_a_crashed_log_is_trimmed(tmp_path: Path) -> None:
    """An epoch recorded for offsets a crash lost is dropped when the log opens."""
    log = PartitionLog.open(tmp_path / "t-0", LogConfig(), 0)
    _leader_append(log, 0, b"a")
    log.leader_epochs.assign(7, 1)  # assigned, but the batch never reached the file
    log.abandon()
    reopened = PartitionLog.open(tmp_path / "t-0", LogConfig(), 0)
    assert reopened.leader_epochs.entries() == [(0, 0)]
    reopened.close()


def test_delete_records_moves_the_first_epoch_start(tmp_path: Path) -> None:
    """DeleteRecords past an epoch's start drops older epochs and moves its start."""
    log = PartitionLog.open(tmp_path / "t-0", LogConfig(), 0)
    _leader_append(log, 0, b"a", b"b")
    _leader_append(log, 1, b"c", b"d")
    log.delete_records_before(3)
    assert log.leader_epochs.entries() == [(1, 3)]
    log.close()


def test_truncate_fully_and_start_at(tmp_path: Path) -> None:
    """A follower behind its leader's log start restarts its log empty at that offset."""
    log = PartitionLog.open(tmp_path / "t-0", LogConfig(), 0)
    _leader_append(log, 0, b"a", b"b")
    log.truncate_fully_and_start_at(40, 0)
    assert (log.log_start_offset, log.log_end_offset) == (40, 40)
    assert log.leader_epochs.entries() == []
    log.close()
    reopened = PartitionLog.open(tmp_path / "t-0", LogConfig(), 0)
    assert (reopened.log_start_offset, reopened.log_end_offset) == (40, 40)
    reopened.close()
