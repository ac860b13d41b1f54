"""A partition leader: high watermark, ISR shrink and expansion through the controller, acks=all
commits, follower fetches (diverging epochs, fencing), and the HW checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
from kio.schema.errors import ErrorCode

from reference_broker.log import LogConfig, OffsetOutOfRangeError, PartitionLog
from reference_broker.log.testing import batch, record_set
from reference_broker.replication import (
    IsrChange,
    Partition,
    PartitionState,
    ReplicationConfig,
    ReplicationError,
)

LAG = 1_000
T0 = 1_000_000


def _partition(directory: Path, node_id: int = 1) -> Partition:
    plog = PartitionLog.open(directory, LogConfig(), T0)
    return Partition("t", 0, plog, node_id=node_id,
                     config=ReplicationConfig(replica_lag_time_max_ms=LAG), now_ms=T0)


class Leader:
    """Node 1 leading ``t-0`` with replicas 1, 2, 3; proposals are collected, not sent."""

    def __init__(self, directory: Path, isr: tuple[int, ...] = (1, 2, 3), epoch: int = 5) -> None:
        self.p = _partition(directory)
        self.proposals: list[IsrChange] = []
        self.p.alter_isr = self.proposals.append
        self.p.become_leader(1, epoch, 10, (1, 2, 3), isr, T0)

    def append(self, *values: bytes, now: int = T0) -> int:
        """Append one batch; returns its last offset + 1 (what commits it)."""
        return self.p.append_as_leader(*record_set(batch(*values)), now).last_offset + 1

    def fetch(self, replica: int, offset: int, now: int = T0, epoch: int = -1) -> None:
        self.p.read_for_follower(replica, offset, epoch, -1, 1 << 20, now)

    def accept(self, change: IsrChange, now: int = T0) -> None:
        """The controller applies ``change``."""
        self.p.complete_isr_change(
            change, None,
            PartitionState(1, change.leader_epoch, change.partition_epoch + 1, change.new_isr),
            now,
        )


@pytest.fixture
def leader(tmp_path: Path) -> Leader:
    return Leader(tmp_path / "t-0")


# --- high watermark -------------------------------------------------------------------------


def test_hw_is_the_smallest_log_end_over_the_isr(leader: Leader) -> None:
    """The HW moves to the smallest fetch offset of the ISR, the leader's LEO included."""
    leader.append(b"a", b"b", b"c")
    assert leader.p.high_watermark == 0  # the followers' LEOs are unknown after election
    leader.fetch(2, 3)
    assert leader.p.high_watermark == 0
    leader.fetch(3, 2)
    assert leader.p.high_watermark == 2
    leader.fetch(3, 3)
    assert leader.p.high_watermark == 3


def test_hw_never_moves_back(leader: Leader) -> None:
    """A follower fetching from a lower offset (after a restart, say) does not lower the HW."""
    leader.append(b"a", b"b")
    leader.fetch(2, 2)
    leader.fetch(3, 2)
    assert leader.p.high_watermark == 2
    leader.fetch(3, 0)
    assert leader.p.high_watermark == 2


def test_a_leader_alone_in_the_isr_commits_at_once(tmp_path: Path) -> None:
    """With an ISR of one (a single node) the HW follows the log end offset."""
    alone = Leader(tmp_path / "t-0", isr=(1,))
    assert alone.append(b"a") == 1
    assert alone.p.high_watermark == 1


def test_consumers_are_bounded_by_the_hw_followers_by_the_leo(leader: Leader) -> None:
    """A follower reads past the HW; the HW stays where the ISR is."""
    leader.append(b"a")
    leader.append(b"b")
    read = leader.p.read_for_follower(2, 0, -1, -1, 1 << 20, T0)
    assert read.log_end_offset == 2 and read.high_watermark == 0
    assert read.records  # both batches, though nothing is committed


# --- acks=all -------------------------------------------------------------------------------


def test_acks_all_waits_for_the_whole_isr(leader: Leader) -> None:
    """The commit callback runs when the HW passes the append, not before."""
    required = leader.append(b"a")
    outcomes: list[str] = []
    assert not leader.p.wait_for_commit(required, 2, T0 + 5000, outcomes.append)
    leader.fetch(2, 1)
    assert outcomes == []
    leader.fetch(3, 1)
    assert outcomes == [ErrorCode.none]


def test_acks_all_times_out(leader: Leader) -> None:
    """Without follower progress the produce gets REQUEST_TIMED_OUT at its deadline."""
    required = leader.append(b"a")
    outcomes: list[str] = []
    leader.p.wait_for_commit(required, 2, T0 + 500, outcomes.append)
    leader.p.tick(T0 + 499)
    assert outcomes == []
    leader.p.tick(T0 + 500)
    assert outcomes == [ErrorCode.request_timed_out]


def test_isr_shrinking_below_min_isr_during_the_wait(leader: Leader) -> None:
    """The HW passes the append because the ISR shrank to the leader: the record is committed
    but the producer gets NOT_ENOUGH_REPLICAS_AFTER_APPEND."""
    required = leader.append(b"a")
    outcomes: list[str] = []
    leader.p.wait_for_commit(required, 2, T0 + 60_000, outcomes.append)
    leader.p.tick(T0 + LAG + 1)
    (change,) = leader.proposals
    assert change.new_isr == (1,)
    assert outcomes == []  # still pending: the maximal ISR counts 2 and 3 until accepted
    leader.accept(change, T0 + LAG + 1)
    assert leader.p.isr == (1,) and leader.p.high_watermark == 1
    assert outcomes == [ErrorCode.not_enough_replicas_after_append]


def test_losing_leadership_fails_pending_commits(leader: Leader) -> None:
    """A leader that becomes follower answers its waiting produces NOT_LEADER_OR_FOLLOWER."""
    required = leader.append(b"a")
    outcomes: list[str] = []
    leader.p.wait_for_commit(required, 2, T0 + 60_000, outcomes.append)
    leader.p.become_follower(2, 6, 11, (1, 2, 3), (2, 3), T0)
    assert outcomes == [ErrorCode.not_leader_or_follower]


def test_min_isr_is_checked_against_the_committed_isr(tmp_path: Path) -> None:
    """acks=all with an ISR smaller than min.insync.replicas is refused before appending."""
    small = Leader(tmp_path / "t-0", isr=(1,))
    with pytest.raises(ReplicationError) as raised:
        small.p.check_min_isr(2)
    assert raised.value.error == ErrorCode.not_enough_replicas
    small.p.check_min_isr(1)


def test_a_follower_cannot_append(tmp_path: Path) -> None:
    """Produce to a follower is NOT_LEADER_OR_FOLLOWER."""
    follower = _partition(tmp_path / "t-0")
    follower.become_follower(2, 5, 10, (1, 2, 3), (1, 2, 3), T0)
    with pytest.raises(ReplicationError) as raised:
        follower.append_as_leader(*record_set(batch(b"a")), T0)
    assert raised.value.error == ErrorCode.not_leader_or_follower


def test_appends_are_stamped_with_the_leader_epoch(leader: Leader) -> None:
    """The leader's epoch is in every batch it appends, and starts where it was elected."""
    leader.append(b"a")
    assert leader.p.log.leader_epochs.entries() == [(5, 0)]
    assert leader.p.end_offset_for_epoch(5) == (5, 1)


# --- ISR ------------------------------------------------------------------------------------


def test_a_lagging_follower_leaves_the_isr_after_the_lag_time(leader: Leader) -> None:
    """A follower that stops catching up is proposed out after replica.lag.time.max.ms."""
    leader.append(b"a")
    leader.fetch(2, 1, now=T0 + 100)
    leader.fetch(3, 0, now=T0 + 100)
    leader.p.tick(T0 + LAG)
    assert leader.proposals == []
    leader.p.tick(T0 + LAG + 1)
    (change,) = leader.proposals
    assert change.new_isr == (1, 2)
    assert (change.leader_epoch, change.partition_epoch) == (5, 10)


def test_a_follower_fetching_the_leaders_end_stays_in_sync(leader: Leader) -> None:
    """Keeping up with the leader's LEO keeps a follower in the ISR however long it runs."""
    for step in range(1, 6):
        now = T0 + step * 800
        leader.append(b"x", now=now)
        leader.fetch(2, step, now=now)
        leader.fetch(3, step, now=now)
        leader.p.tick(now + 1)
    assert leader.proposals == []


def test_a_follower_at_the_previous_leo_counts_as_caught_up(leader: Leader) -> None:
    """Kafka's rule: a fetch reaching the LEO the leader had at the follower's previous fetch
    counts as caught up as of that previous fetch."""
    leader.append(b"a")
    leader.fetch(2, 1, now=T0 + 900)
    leader.fetch(3, 1, now=T0 + 900)
    leader.append(b"b", now=T0 + 950)
    leader.fetch(3, 1, now=T0 + 1500)  # the leader's LEO is 2 at this fetch
    leader.append(b"c", now=T0 + 1600)
    leader.fetch(3, 2, now=T0 + 2000)  # reaches 2: caught up as of T0 + 1500
    leader.p.tick(T0 + 1500 + LAG)
    assert [c.new_isr for c in leader.proposals] == [(1, 3)]  # 2 is out, 3 is not
    leader.accept(leader.proposals[0], T0 + 1500 + LAG)
    leader.p.tick(T0 + 1501 + LAG)
    assert [c.new_isr for c in leader.proposals] == [(1, 3), (1,)]


def test_one_isr_change_in_flight_and_the_maximal_isr(leader: Leader) -> None:
    """While a shrink is pending the HW still waits for the replica being removed; nothing else
    is proposed until the controller answers."""
    leader.append(b"a")
    leader.fetch(2, 1)
    leader.p.tick(T0 + LAG + 1)
    assert len(leader.proposals) == 1 and leader.p.maximal_isr == (1, 2, 3)
    assert leader.p.high_watermark == 0
    leader.p.tick(T0 + 3 * LAG)
    assert len(leader.proposals) == 1
    leader.accept(leader.proposals[0])
    assert leader.p.isr == (1, 2) and leader.p.high_watermark == 1


def test_a_caught_up_follower_rejoins(tmp_path: Path) -> None:
    """A follower outside the ISR is proposed in once it reaches the HW and the epoch start;
    while that is pending, the HW already counts it."""
    leader = Leader(tmp_path / "t-0", isr=(1, 2))
    leader.append(b"a", b"b")
    leader.fetch(2, 2)
    assert leader.p.high_watermark == 2
    leader.fetch(3, 1)
    assert leader.proposals == []
    leader.fetch(3, 2)
    (change,) = leader.proposals
    assert change.new_isr == (1, 2, 3)
    assert leader.p.maximal_isr == (1, 2, 3)
    leader.append(b"c")
    leader.fetch(2, 3)
    assert leader.p.high_watermark == 2  # 3 is counted while its joining is pending
    leader.accept(change)
    assert leader.p.isr == (1, 2, 3)


def test_rejoining_needs_the_current_epochs_start(tmp_path: Path) -> None:
    """A follower at the HW but below where this leader's epoch began does not rejoin."""
    directory = tmp_path / "t-0"
    p = _partition(directory)
    p.become_leader(1, 1, 1, (1, 2, 3), (1,), T0)
    p.append_as_leader(*record_set(batch(b"a", b"b")), T0)  # HW 2, ISR of one
    proposals: list[IsrChange] = []
    p.alter_isr = proposals.append
    p.become_leader(1, 1, 2, (1, 2, 3), (1,), T0)
    p.become_follower(2, 2, 3, (1, 2, 3), (2,), T0)
    p.become_leader(1, 3, 4, (1, 2, 3), (1,), T0)  # epoch 3 starts at offset 2
    p.read_for_follower(3, 1, -1, -1, 1 << 20, T0)
    assert proposals == []
    p.read_for_follower(3, 2, -1, -1, 1 << 20, T0)
    assert [c.new_isr for c in proposals] == [(1, 3)]


def test_isr_change_errors(leader: Leader) -> None:
    """INELIGIBLE_REPLICA drops the proposal; FENCED_LEADER_EPOCH keeps it until metadata
    arrives; an unknown outcome keeps it and re-sends it after a backoff."""
    leader.append(b"a")
    leader.p.tick(T0 + LAG + 1)
    first = leader.proposals[-1]
    leader.p.complete_isr_change(first, ErrorCode.ineligible_replica, None, T0 + LAG + 1)
    assert leader.p.pending_isr_change is None
    leader.p.tick(T0 + LAG + 2)
    second = leader.proposals[-1]
    assert second is not first
    leader.p.complete_isr_change(second, ErrorCode.fenced_leader_epoch, None, T0 + LAG + 2)
    assert leader.p.pending_isr_change is second
    leader.p.tick(T0 + 10 * LAG)
    assert leader.proposals[-1] is second  # nothing re-sent: the metadata will decide
    leader.p.become_leader(1, 5, 11, (1, 2, 3), (1, 2, 3), T0 + 10 * LAG)
    assert leader.p.pending_isr_change is None
    leader.p.tick(T0 + 10 * LAG + 1)
    third = leader.proposals[-1]
    leader.p.complete_isr_change(third, ErrorCode.request_timed_out, None, T0 + 10 * LAG + 1)
    assert leader.p.pending_isr_change is third
    count = len(leader.proposals)
    leader.p.tick(T0 + 10 * LAG + 1000)
    assert len(leader.proposals) == count + 1 and leader.proposals[-1] is third


def test_stale_metadata_is_ignored(leader: Leader) -> None:
    """A partition epoch older than the one known changes nothing."""
    assert not leader.p.become_follower(2, 4, 9, (1, 2, 3), (2, 3), T0)
    assert leader.p.is_leader and leader.p.leader_epoch == 5


def test_an_isr_update_keeps_follower_progress(leader: Leader) -> None:
    """Metadata changing only the ISR (same leader epoch) does not reset what the leader knows
    of its followers, so the HW does not stall."""
    leader.append(b"a")
    leader.fetch(2, 1)
    leader.fetch(3, 1)
    assert not leader.p.become_leader(1, 5, 11, (1, 2, 3), (1, 2), T0)
    assert leader.p.follower_log_end_offset(2) == 1
    assert leader.p.high_watermark == 1


# --- follower fetches -----------------------------------------------------------------------


def test_follower_fetch_fencing(leader: Leader) -> None:
    """A follower naming an older / newer leader epoch is fenced / told the epoch is unknown;
    a broker that is not a replica is refused."""
    for epoch, error in ((4, ErrorCode.fenced_leader_epoch), (6, ErrorCode.unknown_leader_epoch)):
        with pytest.raises(ReplicationError) as raised:
            leader.p.read_for_follower(2, 0, -1, epoch, 1 << 20, T0)
        assert raised.value.error == error
    with pytest.raises(ReplicationError) as raised:
        leader.p.read_for_follower(9, 0, -1, 5, 1 << 20, T0)
    assert raised.value.error == ErrorCode.not_leader_or_follower


def test_diverging_epoch(tmp_path: Path) -> None:
    """A follower whose last fetched epoch ends earlier in the leader's log is told where
    (KIP-595 style), and its fetch offset is not taken as its LEO."""
    p = _partition(tmp_path / "t-0")
    p.become_leader(1, 1, 1, (1, 2), (1,), T0)
    p.append_as_leader(*record_set(batch(b"a", b"b")), T0)  # epoch 1: offsets 0-1
    p.become_leader(1, 3, 2, (1, 2), (1,), T0)
    p.append_as_leader(*record_set(batch(b"c")), T0)  # epoch 3: offset 2
    # The follower has offsets 0-3 with its last batch from epoch 2 (an unknown leader's).
    read = p.read_for_follower(2, 4, 2, 3, 1 << 20, T0)
    assert read.diverging_epoch == (1, 2) and read.records == b""
    assert p.follower_log_end_offset(2) == -1
    # Epoch 1 ending at 2 but the follower claims it up to 3.
    read = p.read_for_follower(2, 3, 1, 3, 1 << 20, T0)
    assert read.diverging_epoch == (1, 2)
    # Consistent: no divergence.
    read = p.read_for_follower(2, 2, 1, 3, 1 << 20, T0)
    assert read.diverging_epoch is None and read.records
    assert p.follower_log_end_offset(2) == 2


def test_fetch_past_the_leaders_end_is_out_of_range(leader: Leader) -> None:
    """Without an epoch to compare, a follower ahead of the leader gets OFFSET_OUT_OF_RANGE."""
    with pytest.raises(OffsetOutOfRangeError):
        leader.fetch(2, 5)


# --- durability of the HW -------------------------------------------------------------------


def test_the_hw_checkpoint_bounds_a_restarted_replica(tmp_path: Path) -> None:
    """A restarted replica starts from the checkpointed HW (bounded by its log), never from its
    log end: it cannot expose records that were not committed."""
    directory = tmp_path / "t-0"
    leader = Leader(directory)
    leader.append(b"a", b"b")
    leader.fetch(2, 2)
    leader.fetch(3, 2)
    leader.p.tick(T0 + 10_000)  # checkpoint interval passed: HW 2 written
    leader.append(b"c")  # uncommitted
    leader.p.log.abandon()  # killed
    restarted = _partition(directory)
    assert restarted.log_end_offset == 3
    assert restarted.high_watermark == 2
    restarted.log.close()
