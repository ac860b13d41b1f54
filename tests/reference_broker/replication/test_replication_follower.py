"""A partition follower: truncation by leader epochs (OffsetForLeaderEpoch and diverging
epochs), applying fetched data, its HW and log start, and producer state across a leader change."""

from __future__ import annotations

from pathlib import Path

import pytest
from kio.schema.errors import ErrorCode

from reference_broker.log import LogConfig, PartitionLog
from reference_broker.log.testing import batch, read_records, record_set, stored_batches
from reference_broker.producers.state import OutOfOrderSequenceError
from reference_broker.records import Record, build_batch, scan_valid_prefix
from reference_broker.replication import (
    EpochQuery,
    FetchPosition,
    FollowerFetchState,
    Partition,
    ReplicationConfig,
)

T0 = 1_000_000


def _partition(directory: Path, node_id: int) -> Partition:
    plog = PartitionLog.open(directory, LogConfig(), T0)
    return Partition("t", 0, plog, node_id=node_id, config=ReplicationConfig(), now_ms=T0)


def _write_epochs(p: Partition, epochs: list[tuple[int, int]]) -> None:
    """Give ``p`` a log of ``count`` one-record batches per (epoch, count), as leader."""
    for epoch, count in epochs:
        p.become_leader(p.node_id, epoch, epoch, (1, 2), (p.node_id,), T0)
        for _ in range(count):
            p.append_as_leader(*record_set(batch(b"%d" % p.log_end_offset)), T0)


def _values(p: Partition) -> list[bytes]:
    return [r.value or b"" for r in read_records(p.log)]


def _epoch_2(leader: Partition, follower: Partition) -> None:
    """Leader epoch 2 of the pair: node 1 leads, node 2 follows, both in the ISR."""
    leader.become_leader(1, 2, 2, (1, 2), (1, 2), T0)
    follower.become_follower(1, 2, 2, (1, 2), (1, 2), T0)


def _fetch_request(follower: Partition) -> FetchPosition:
    """The follower's next request, which must be a fetch (not a query of a leader epoch's end)."""
    request = follower.follower_request()
    assert isinstance(request, FetchPosition)
    return request


def _fetching(follower: Partition, epoch: int) -> FetchPosition:
    """Make ``follower`` follow node 1 at leader (and partition) epoch ``epoch``, past the
    truncation step (FETCHING); its first fetch request."""
    follower.become_follower(1, epoch, epoch, (1, 2), (1, 2), T0)
    follower.fetch_state = FollowerFetchState.FETCHING
    return _fetch_request(follower)


def _sync(follower: Partition, leader: Partition, rounds: int = 20) -> None:
    """Run the follower's fetcher against ``leader`` until it has nothing left to do."""
    for _ in range(rounds):
        request = follower.follower_request()
        if isinstance(request, EpochQuery):
            epoch, end = leader.end_offset_for_epoch(request.epoch)
            follower.on_epoch_end_offset(request, ErrorCode.none, epoch, end, T0)
            continue
        assert isinstance(request, FetchPosition)
        read = leader.read_for_follower(
            follower.node_id, request.fetch_offset, request.last_fetched_epoch,
            request.current_leader_epoch, 1 << 20, T0,
        )
        follower.on_fetch_response(request, ErrorCode.none, read.high_watermark, read.log_start_offset,
                                   read.records, read.diverging_epoch, T0)
        if not read.records and read.diverging_epoch is None and (
            follower.log_end_offset == leader.log_end_offset
            and follower.high_watermark == leader.high_watermark
        ):
            return


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Partition, Partition]:
    return _partition(tmp_path / "a", 1), _partition(tmp_path / "b", 2)


def test_a_follower_copies_the_leader_and_learns_the_hw(pair: tuple[Partition, Partition]) -> None:
    """A fetched log is byte-identical to the leader's; the HW comes on the next fetch."""
    leader, follower = pair
    _write_epochs(leader, [(1, 3)])
    _epoch_2(leader, follower)
    _sync(follower, leader)
    assert _values(follower) == _values(leader) == [b"0", b"1", b"2"]
    assert follower.log.read(0, 1 << 20).records == leader.log.read(0, 1 << 20).records
    assert leader.high_watermark == 3 and follower.high_watermark == 3
    assert follower.log.leader_epochs.entries() == [(1, 0)]


def test_truncation_to_the_end_of_the_shared_epoch(pair: tuple[Partition, Partition]) -> None:
    """A follower with records of an epoch the new leader never saw truncates to where the last
    shared epoch ends in the leader's log (KIP-101), not to its HW."""
    leader, follower = pair
    _write_epochs(leader, [(1, 2), (3, 2)])  # epochs 1: 0-1, 3: 2-3
    _write_epochs(follower, [(1, 2), (2, 3)])  # epochs 1: 0-1, 2: 2-4 (never replicated)
    leader.become_leader(1, 4, 4, (1, 2), (1, 2), T0)
    follower.become_follower(1, 4, 4, (1, 2), (1, 2), T0)
    assert follower.fetch_state is FollowerFetchState.TRUNCATING
    request = follower.follower_request()
    assert request == EpochQuery(1, 4, 2)
    epoch, end = leader.end_offset_for_epoch(2)
    assert (epoch, end) == (1, 2)
    follower.on_epoch_end_offset(request, ErrorCode.none, epoch, end, T0)
    assert follower.log_end_offset == 2
    assert follower.follower_request() == FetchPosition(1, 4, 2, 1, 0)
    _sync(follower, leader)
    assert _values(follower) == _values(leader)


def test_a_follower_ahead_in_the_same_epoch_truncates_to_the_leaders_end(
    pair: tuple[Partition, Partition],
) -> None:
    """Both have epoch 1; the follower holds more of it than the (new) leader: it drops the
    excess, which no leader committed."""
    leader, follower = pair
    _write_epochs(follower, [(1, 5)])
    data = follower.log.read(0, 1 << 20).records
    headers = stored_batches(data)
    cut = headers[3].position
    leader.log.append_as_follower(data[:cut], headers[:3], T0)  # the leader has 0-2
    _epoch_2(leader, follower)
    _sync(follower, leader)
    assert follower.log_end_offset == 3
    assert follower.log.leader_epochs.entries() == [(1, 0)]


def test_unknown_epoch_answer_takes_two_rounds(pair: tuple[Partition, Partition]) -> None:
    """When the leader answers with an epoch the follower does not have, the follower cuts to
    the end of its largest epoch below it and asks again (Kafka's intermediate truncation)."""
    leader, follower = pair
    _write_epochs(leader, [(1, 2), (2, 2), (5, 1)])  # 1: 0-1, 2: 2-3, 5: 4
    _write_epochs(follower, [(1, 3), (3, 2)])  # 1: 0-2, 3: 3-4
    leader.become_leader(1, 6, 6, (1, 2), (1, 2), T0)
    follower.become_follower(1, 6, 6, (1, 2), (1, 2), T0)
    first = follower.follower_request()
    assert isinstance(first, EpochQuery) and first.epoch == 3
    follower.on_epoch_end_offset(first, ErrorCode.none, *leader.end_offset_for_epoch(3), T0)
    # Leader: epoch 2 ends at 4; the follower has no epoch 2: cut to the end of epoch 1 (3).
    assert follower.log_end_offset == 3
    assert follower.fetch_state is FollowerFetchState.TRUNCATING
    second = follower.follower_request()
    assert isinstance(second, EpochQuery) and second.epoch == 1
    follower.on_epoch_end_offset(second, ErrorCode.none, *leader.end_offset_for_epoch(1), T0)
    assert follower.log_end_offset == 2
    _sync(follower, leader)
    assert _values(follower) == _values(leader)


def test_diverging_epoch_on_fetch_truncates(pair: tuple[Partition, Partition]) -> None:
    """The same truncation happens when a fetch answer carries a diverging epoch."""
    leader, follower = pair
    _write_epochs(leader, [(1, 2), (3, 2)])
    _write_epochs(follower, [(1, 2), (2, 3)])
    leader.become_leader(1, 4, 4, (1, 2), (1, 2), T0)
    follower.become_follower(1, 4, 4, (1, 2), (1, 2), T0)
    follower.fetch_state = FollowerFetchState.FETCHING  # skip the epoch query
    request = follower.follower_request()
    assert isinstance(request, FetchPosition) and request.last_fetched_epoch == 2
    read = leader.read_for_follower(2, request.fetch_offset, 2, 4, 1 << 20, T0)
    assert read.diverging_epoch == (1, 2)
    follower.on_fetch_response(request, ErrorCode.none, read.high_watermark, read.log_start_offset,
                               read.records, read.diverging_epoch, T0)
    assert follower.log_end_offset == 2
    _sync(follower, leader)
    assert _values(follower) == _values(leader)


def test_stale_answers_are_ignored(pair: tuple[Partition, Partition]) -> None:
    """An answer to a request sent before the follower's leader changed changes nothing."""
    leader, follower = pair
    _write_epochs(leader, [(1, 2)])
    _epoch_2(leader, follower)
    request = _fetch_request(follower)
    read = leader.read_for_follower(2, 0, -1, 2, 1 << 20, T0)
    follower.become_follower(3, 3, 3, (1, 2, 3), (3,), T0)
    follower.on_fetch_response(request, ErrorCode.none, read.high_watermark, read.log_start_offset,
                               read.records, None, T0)
    assert follower.log_end_offset == 0


def test_follower_hw_is_bounded_by_its_log_and_never_moves_back(
    pair: tuple[Partition, Partition],
) -> None:
    """HW = min(leader HW, own LEO); a lower leader HW (a new leader catching up) is ignored."""
    leader, follower = pair
    _write_epochs(leader, [(1, 4)])
    data = leader.log.read(0, 1 << 20).records
    follower.on_fetch_response(_fetching(follower, 1), ErrorCode.none, 10, 0, data, None, T0)
    assert follower.high_watermark == 4
    follower.on_fetch_response(_fetch_request(follower), ErrorCode.none, 1, 0, b"", None, T0)
    assert follower.high_watermark == 4


def test_the_leaders_log_start_moves_the_followers(pair: tuple[Partition, Partition]) -> None:
    """DeleteRecords on the leader reaches the follower through the fetch's log start offset."""
    leader, follower = pair
    _write_epochs(leader, [(1, 4)])
    _epoch_2(leader, follower)
    _sync(follower, leader)
    leader.log.delete_records_before(3)
    _sync(follower, leader)
    assert follower.log.log_start_offset == 3


def test_a_follower_below_the_leaders_log_start_starts_over(
    pair: tuple[Partition, Partition],
) -> None:
    """OFFSET_OUT_OF_RANGE below the leader's log start: the follower restarts its log there."""
    leader, follower = pair
    _write_epochs(follower, [(1, 2)])
    follower.on_fetch_response(_fetching(follower, 2), ErrorCode.offset_out_of_range, 50, 40, b"", None, T0)
    assert (follower.log.log_start_offset, follower.log_end_offset) == (40, 40)


def test_a_follower_ahead_of_the_leader_goes_back_to_truncating(
    pair: tuple[Partition, Partition],
) -> None:
    """OFFSET_OUT_OF_RANGE above the leader's log start: find the divergence point again."""
    _, follower = pair
    _write_epochs(follower, [(1, 5)])
    follower.on_fetch_response(_fetching(follower, 2), ErrorCode.offset_out_of_range, 2, 0, b"", None, T0)
    assert follower.fetch_state is FollowerFetchState.TRUNCATING


def test_batches_emptied_by_compaction_replicate(pair: tuple[Partition, Partition]) -> None:
    """A batch the cleaner emptied (no records, offsets kept) is accepted from the leader, which
    validate_batches would refuse from a producer."""
    leader, follower = pair
    empty = bytearray(build_batch([], base_offset=0, last_offset_delta=1,
                                  partition_leader_epoch=1, producer_id=7, producer_epoch=0,
                                  base_sequence=0))
    kept = bytearray(build_batch([Record(2, 0, b"k", b"v")], base_offset=2,
                                 partition_leader_epoch=1))
    data = bytes(empty + kept)
    assert len(scan_valid_prefix(data)[0]) == 2
    follower.on_fetch_response(_fetching(follower, 1), ErrorCode.none, 3, 0, data, None, T0)
    assert follower.log_end_offset == 3
    assert [e.producer_id for e in follower.log.producer_state.entries()] == [7]
    assert leader.log_end_offset == 0


def test_producer_state_follows_truncation(pair: tuple[Partition, Partition]) -> None:
    """After a leader change, a producer's retry of a batch the new leader has is a duplicate
    (same offsets), and a batch that was truncated away may be written afresh."""
    old, new = pair
    old.become_leader(1, 1, 1, (1, 2), (1, 2), T0)
    new.become_follower(1, 1, 1, (1, 2), (1, 2), T0)
    first = batch(b"a", producer_id=9, base_sequence=0)
    second = batch(b"b", producer_id=9, base_sequence=1)
    old.append_as_leader(*record_set(first), T0)
    _sync(new, old)  # the new leader has the first batch
    old.append_as_leader(*record_set(second), T0)  # the second never reaches it
    new.become_leader(2, 2, 2, (1, 2), (2,), T0)
    assert new.append_as_leader(*record_set(first), T0).first_offset == 0  # duplicate
    assert new.log_end_offset == 1
    assert new.append_as_leader(*record_set(second), T0).first_offset == 1
    third = batch(b"c", producer_id=9, base_sequence=3)
    with pytest.raises(OutOfOrderSequenceError):
        new.append_as_leader(*record_set(third), T0)
    # The old leader follows and truncates its own copy of the second batch.
    old.become_follower(2, 2, 3, (1, 2), (2,), T0)
    _sync(old, new)
    assert _values(old) == _values(new) == [b"a", b"b"]
    assert old.log.read(1, 1 << 20).records == new.log.read(1, 1 << 20).records
