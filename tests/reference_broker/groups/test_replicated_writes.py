"""The coordinator's writes wait for replication: a fake ``__consumer_offsets`` whose appends
are committed only when the test says so (as followers that have not fetched yet), or fail."""

from __future__ import annotations

import pytest
from kio.schema.errors import ErrorCode

from reference_broker.groups import GroupState, OffsetValue
from reference_broker.groups.testing import (
    SESSION_MS,
    CoordinatorDriver,
    Reply,
    consumer_assignment,
)

STABLE = GroupState.STABLE
PREPARING = GroupState.PREPARING_REBALANCE
COMPLETING = GroupState.COMPLETING_REBALANCE
TP = ("t", 0)


def held_driver() -> CoordinatorDriver:
    driver = CoordinatorDriver()
    driver.storage.hold = True
    return driver


def joined_pair(driver: CoordinatorDriver) -> tuple[str, str, int]:
    """Two dynamic members in one new generation (CompletingRebalance); returns (leader,
    follower, generation)."""
    a = driver.join_new()
    b = driver.join_new()  # the first member, alone in generation 1, must rejoin
    a = driver.join(a.result.member_id)
    generation = b.result.generation_id
    assert a.result.generation_id == generation and driver.group().is_(COMPLETING)
    leader = a.result.leader
    follower = b.result.member_id if leader == a.result.member_id else a.result.member_id
    return leader, follower, generation


def stable_member(driver: CoordinatorDriver) -> tuple[str, int]:
    """One member, Stable at generation 1 (appends must be completing at once)."""
    joined = driver.join_new().result
    assert driver.sync(joined.member_id, 1, {joined.member_id: b"a"}).result.error == ErrorCode.none
    return joined.member_id, 1


# --- OffsetCommit ---------------------------------------------------------------------------------


def test_a_commit_is_answered_only_once_its_record_is_committed() -> None:
    """OffsetCommit gets no answer while its record waits for the ISR, and then "none"."""
    driver = held_driver()
    reply = driver.commit_later({TP: 5})
    assert not reply.done
    assert driver.storage.held, "nothing was appended"
    assert driver.storage.complete() == 1
    assert reply.result == {TP: ErrorCode.none}


def test_offset_fetch_does_not_see_a_pending_commit() -> None:
    """OffsetFetch shows the previous committed offset until the new commit's record is
    committed (Kafka keeps it in pendingOffsetCommits meanwhile)."""
    driver = CoordinatorDriver()
    assert driver.commit({TP: 3}) == {TP: ErrorCode.none}
    driver.storage.hold = True
    reply = driver.commit_later({TP: 5})
    assert driver.committed() == {TP: 3}
    fetched = driver.coordinator.fetch_offsets("g", [TP])
    assert [value.offset for _, value in fetched if value] == [3]
    driver.storage.complete()
    assert reply.result == {TP: ErrorCode.none}
    assert driver.committed() == {TP: 5}


@pytest.mark.parametrize(
    ("storage_error", "client_error"),
    [
        (ErrorCode.not_enough_replicas_after_append, ErrorCode.coordinator_not_available),
        (ErrorCode.request_timed_out, ErrorCode.coordinator_not_available),
        (ErrorCode.not_leader_or_follower, ErrorCode.not_coordinator),
        (ErrorCode.kafka_storage_error, ErrorCode.not_coordinator),
    ],
)
def test_a_commit_that_fails_after_its_append_is_mapped_and_not_visible(
        storage_error: ErrorCode, client_error: ErrorCode) -> None:
    """A commit whose record is appended but never committed gets Kafka's mapped error and
    OffsetFetch keeps the previous offset."""
    driver = CoordinatorDriver()
    assert driver.commit({TP: 3}) == {TP: ErrorCode.none}
    driver.storage.hold = True
    reply = driver.commit_later({TP: 5})
    driver.storage.complete(storage_error)
    assert reply.result == {TP: client_error}
    assert driver.committed() == {TP: 3}


@pytest.mark.parametrize(
    ("storage_error", "client_error"),
    [
        (ErrorCode.not_enough_replicas, ErrorCode.coordinator_not_available),
        (ErrorCode.unknown_topic_or_partition, ErrorCode.coordinator_not_available),
        (ErrorCode.not_leader_or_follower, ErrorCode.not_coordinator),
        (ErrorCode.record_list_too_large, ErrorCode.invalid_commit_offset_size),
    ],
)
def test_a_commit_refused_before_its_append_is_mapped(
        storage_error: ErrorCode, client_error: ErrorCode) -> None:
    """A commit the offsets partition refuses at once (a too-small ISR, not its leader) is
    answered at once with Kafka's mapped error and stores nothing."""
    driver = CoordinatorDriver()
    driver.storage.fail_with = storage_error
    assert driver.commit({TP: 5}) == {TP: client_error}
    assert driver.committed() == {}
    assert not driver.storage.records


def test_only_the_partitions_with_valid_metadata_wait_and_too_large_metadata_fails_alone() -> None:
    """A commit mixing a partition with too-long metadata and a valid one answers both at
    once, when the valid one is committed."""
    driver = CoordinatorDriver()
    driver.storage.hold = True
    big = "x" * (driver.config.offset_metadata_max_bytes + 1)
    reply = driver.commit_later({("t", 0): 1}, metadata=big)
    assert reply.result == {("t", 0): ErrorCode.offset_metadata_too_large}  # nothing to wait for
    mixed: Reply[dict[tuple[str, int], ErrorCode]] = Reply()
    driver.coordinator.commit_offsets(
        "g", -1, "", None, {("t", 0): OffsetValue(1, metadata=big), ("t", 1): OffsetValue(2)},
        9, driver.now_ms, mixed,
    )
    assert not mixed.done
    driver.storage.complete()
    assert mixed.result == {("t", 0): ErrorCode.offset_metadata_too_large, ("t", 1): ErrorCode.none}


def test_two_pending_commits_of_one_partition_become_visible_in_order() -> None:
    """Two commits in flight for one partition: the first becomes visible when it is
    committed, the second replaces it after, and a failed first one leaves the second."""
    driver = held_driver()
    first, second = driver.commit_later({TP: 1}), driver.commit_later({TP: 2})
    driver.storage.complete(count=1)
    assert (first.result, driver.committed(), second.done) == ({TP: ErrorCode.none}, {TP: 1}, False)
    driver.storage.complete()
    assert second.result == {TP: ErrorCode.none} and driver.committed() == {TP: 2}
    third, fourth = driver.commit_later({TP: 3}), driver.commit_later({TP: 4})
    driver.storage.complete(ErrorCode.request_timed_out, count=1)
    driver.storage.complete()
    assert third.result == {TP: ErrorCode.coordinator_not_available} and fourth.result == {TP: ErrorCode.none}
    assert driver.committed() == {TP: 4}


def test_offsets_deleted_while_a_commit_is_pending_stay_deleted() -> None:
    """OffsetDelete of a partition whose commit is still pending tombstones it, and the
    commit completing later does not bring it back."""
    driver = CoordinatorDriver()
    assert driver.commit({TP: 1}) == {TP: ErrorCode.none}
    driver.storage.hold = True
    reply = driver.commit_later({TP: 2})
    error, errors = driver.coordinator.delete_offsets("g", [TP], driver.now_ms)
    assert (error, errors) == (ErrorCode.none, {TP: ErrorCode.none})
    driver.storage.complete()
    assert reply.result == {TP: ErrorCode.none}  # it was committed, then deleted, as the log says
    assert driver.committed() == {}


def test_a_member_commit_waits_and_a_rebalance_meanwhile_does_not_lose_it() -> None:
    """A Stable member's commit is pending while another member joins; once committed it is
    visible even though the group is rebalancing."""
    driver = CoordinatorDriver()
    member, generation = stable_member(driver)
    driver.storage.hold = True
    reply = driver.commit_later({TP: 9}, member, generation)
    driver.join_new()
    assert driver.group().is_(PREPARING)
    driver.storage.complete()
    assert reply.result == {TP: ErrorCode.none}
    assert driver.committed() == {TP: 9}


# --- SyncGroup ----------------------------------------------------------------------------------


def test_sync_group_is_answered_once_the_assignment_is_committed() -> None:
    """The leader's and the follower's SyncGroups wait (the group stays CompletingRebalance)
    until the group metadata with the assignment is committed, then both get their part."""
    driver = held_driver()
    leader, follower, gen = joined_pair(driver)
    follower_sync = driver.sync(follower, gen)
    assignments = {leader: consumer_assignment({"t": [0]}),
                   follower: consumer_assignment({"t": [1]})}
    leader_sync = driver.sync(leader, gen, assignments)
    assert not leader_sync.done and not follower_sync.done
    assert driver.group().is_(COMPLETING)
    assert driver.heartbeat(follower, gen) == ErrorCode.none
    assert driver.commit({TP: 1}, follower, gen) == {TP: ErrorCode.rebalance_in_progress}
    driver.storage.complete()
    assert leader_sync.result.assignment == assignments[leader]
    assert follower_sync.result.assignment == assignments[follower]
    assert driver.group().is_(STABLE)


@pytest.mark.parametrize(
    ("storage_error", "client_error"),
    [
        (ErrorCode.not_leader_or_follower, ErrorCode.not_coordinator),
        (ErrorCode.not_enough_replicas_after_append, ErrorCode.coordinator_not_available),
        (ErrorCode.request_timed_out, ErrorCode.rebalance_in_progress),
    ],
)
def test_sync_group_whose_assignment_is_not_committed_fails_and_rebalances(
        storage_error: ErrorCode, client_error: ErrorCode) -> None:
    """If the assignment's record is not committed, every waiting member gets Kafka's mapped
    error, no assignment is kept and the group goes back to rebalancing."""
    driver = held_driver()
    leader, follower, gen = joined_pair(driver)
    follower_sync = driver.sync(follower, gen)
    leader_sync = driver.sync(leader, gen, {leader: b"l", follower: b"f"})
    driver.storage.complete(storage_error)
    assert leader_sync.result.error == client_error
    assert follower_sync.result.error == client_error
    assert driver.group().is_(PREPARING)
    assert all(m.assignment == b"" for m in driver.group().members.values())


def test_a_sync_refused_at_once_by_a_too_small_isr_fails_and_rebalances() -> None:
    """NOT_ENOUGH_REPLICAS before the append (ISR below min.insync.replicas) fails the sync
    with COORDINATOR_NOT_AVAILABLE at once."""
    driver = CoordinatorDriver()
    leader, follower, gen = joined_pair(driver)
    driver.storage.fail_with = ErrorCode.not_enough_replicas
    result = driver.sync(leader, gen, {leader: b"l", follower: b"f"}).result
    assert result.error == ErrorCode.coordinator_not_available
    assert driver.group().is_(PREPARING)


def test_a_join_while_the_assignment_is_pending_wins_over_the_late_write() -> None:
    """A new member joining while the assignment is being replicated answers the waiting
    syncs REBALANCE_IN_PROGRESS; the write completing afterwards changes nothing."""
    driver = held_driver()
    leader, follower, gen = joined_pair(driver)
    leader_sync = driver.sync(leader, gen, {leader: b"l", follower: b"f"})
    driver.join_new()
    assert leader_sync.result.error == ErrorCode.rebalance_in_progress
    assert driver.group().is_(PREPARING)
    driver.storage.complete()
    assert driver.group().is_(PREPARING)
    assert len(leader_sync.calls) == 1


def test_a_missing_sync_during_a_pending_assignment_is_not_undone_by_the_write() -> None:
    """A member that never sends SyncGroup is dropped after the rebalance timeout even while
    the leader's assignment waits; the late completion does not make the old generation
    Stable."""
    driver = held_driver()
    leader, follower, gen = joined_pair(driver)
    leader_sync = driver.sync(leader, gen, {leader: b"l", follower: b"f"})
    driver.advance(driver.group().rebalance_timeout_ms + 1)
    assert leader_sync.done and leader_sync.result.error == ErrorCode.rebalance_in_progress
    assert driver.group().is_(PREPARING) and follower not in driver.group().members
    driver.storage.complete()
    assert driver.group().is_(PREPARING) and driver.group().generation_id == gen


# --- static members (KIP-345) -----------------------------------------------------------------


def test_a_static_member_rejoin_is_answered_once_its_new_member_id_is_committed() -> None:
    """A restarted static member of a Stable group gets its new member id only once the group
    metadata naming it is committed; if that fails the old member id stays valid."""
    driver = CoordinatorDriver()
    first = driver.join(instance_id="i1").result
    assert driver.sync(first.member_id, 1, {first.member_id: b"a"}).result.error == ErrorCode.none
    driver.storage.hold = True
    rejoin = driver.join(instance_id="i1")
    assert not rejoin.done
    driver.storage.complete()
    assert rejoin.result.error == ErrorCode.none and rejoin.result.member_id != first.member_id
    assert driver.heartbeat(rejoin.result.member_id, 1, instance_id="i1") == ErrorCode.none
    again = driver.join(instance_id="i1")
    driver.storage.complete(ErrorCode.not_leader_or_follower)
    assert again.result.error == ErrorCode.not_coordinator
    assert driver.heartbeat(rejoin.result.member_id, 1, instance_id="i1") == ErrorCode.none


def test_the_commit_deadline_is_offsets_commit_timeout_and_storage_enforces_it() -> None:
    """The coordinator hands storage a deadline of offsets.commit.timeout.ms and keeps no timer
    of its own (the partition's tick times the wait out in the broker)."""
    driver = held_driver()
    reply = driver.commit_later({TP: 1})
    ((_, deadline, _),) = driver.storage.held
    assert deadline == driver.now_ms + driver.config.offsets_commit_timeout_ms
    driver.advance(SESSION_MS)
    assert not reply.done
