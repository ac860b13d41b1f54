"""The group coordinator state machine with a fake clock and in-memory storage."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from kio.schema.errors import ErrorCode

from reference_broker.groups import GroupConfig, GroupState
from reference_broker.groups.coordinator import NEW_MEMBER_JOIN_TIMEOUT_MS
from reference_broker.groups.testing import (
    REBALANCE_MS,
    SESSION_MS,
    TEST_CONFIG,
    CoordinatorDriver,
    consumer_assignment,
    consumer_subscription,
)

STABLE = GroupState.STABLE
PREPARING = GroupState.PREPARING_REBALANCE
COMPLETING = GroupState.COMPLETING_REBALANCE
EMPTY = GroupState.EMPTY


def stable_group(driver: CoordinatorDriver, count: int, **join: Any) -> list[str]:
    """Bring ``count`` dynamic members into one Stable generation (the driver's initial delay
    must be 0); returns their member ids."""
    replies = [driver.join_new(**join) for _ in range(count)]
    if count > 1:
        # Only the first member was answered (alone, generation 1); the others wait for it.
        replies[0] = driver.join(replies[0].result.member_id, **join)
    results = [reply.result for reply in replies]
    group = driver.group()
    assert group.is_(COMPLETING) and group.size == count
    leader = group.leader_id
    assignments = {r.member_id: consumer_assignment({"t": [i]}) for i, r in enumerate(results)}
    syncs = [driver.sync(r.member_id, r.generation_id, assignments if r.member_id == leader else None)
             for r in results]
    assert all(sync.result.error == ErrorCode.none for sync in syncs)
    assert driver.group().is_(STABLE)
    return [r.member_id for r in results]


def run_for(driver: CoordinatorDriver, ms: int, step: int = 10) -> None:
    """Let time pass in small steps, as the broker's 50 ms ticks do."""
    for _ in range(ms // step):
        driver.advance(step)


def test_member_id_required_then_join_and_sync_makes_the_group_stable() -> None:
    """A v4+ joiner first gets MEMBER_ID_REQUIRED with an id, then joins with it and, as the
    only member, leads generation 1 and gets its own assignment back from SyncGroup."""
    driver = CoordinatorDriver()
    first = driver.join().result
    assert first.error == ErrorCode.member_id_required
    assert first.member_id.startswith("client-")
    assert driver.group().pending_members
    joined = driver.join(first.member_id).result
    assert (joined.error, joined.generation_id, joined.leader) == (ErrorCode.none, 1, first.member_id)
    assert joined.members == ((first.member_id, None, b"sub"),)
    assert (joined.protocol_type, joined.protocol_name) == ("consumer", "range")
    assert driver.group().is_(COMPLETING)
    synced = driver.sync(first.member_id, 1, {first.member_id: b"mine"}).result
    assert (synced.error, synced.assignment, synced.protocol_name) == (ErrorCode.none, b"mine", "range")
    assert driver.group().is_(STABLE)


def test_join_before_v4_gets_a_member_id_at_once() -> None:
    """JoinGroup v0-v3 has no MEMBER_ID_REQUIRED round trip (KIP-394 is v4+)."""
    driver = CoordinatorDriver()
    joined = driver.join(version=3).result
    assert joined.error == ErrorCode.none and joined.generation_id == 1


def test_pending_member_id_expires_after_the_session_timeout_and_stops_blocking_a_rebalance() -> None:
    """A rebalance waits for a member given MEMBER_ID_REQUIRED, until its session timeout
    passes without it rejoining."""
    driver = CoordinatorDriver()
    (member,) = stable_group(driver, 1)
    pending = driver.join(session_ms=5000).result
    assert pending.error == ErrorCode.member_id_required
    rejoin = driver.join(member)  # the leader's rejoin starts a rebalance
    assert driver.group().is_(PREPARING) and not rejoin.done
    driver.advance(4999)
    assert not rejoin.done
    driver.advance(1)
    assert rejoin.result.generation_id == 2
    assert not driver.group().pending_members


def test_follower_sync_waits_for_the_leader_assignment() -> None:
    """Followers' SyncGroups are parked until the leader's brings the assignment, and each
    member then receives its own part."""
    driver = CoordinatorDriver(attrs.evolve(TEST_CONFIG, initial_rebalance_delay_ms=100))
    a = driver.join_new(client_id="a")
    b = driver.join_new(client_id="b")
    run_for(driver, 300)
    ra, rb = a.result, b.result
    assert ra.generation_id == rb.generation_id == 1
    leader, follower = (ra, rb) if ra.leader == ra.member_id else (rb, ra)
    assert len(leader.members) == 2 and follower.members == ()
    waiting = driver.sync(follower.member_id, 1)
    assert not waiting.done
    driver.sync(leader.member_id, 1, {leader.member_id: b"L", follower.member_id: b"F"})
    assert waiting.result.assignment == b"F"
    assert driver.group().is_(STABLE)


def test_initial_rebalance_delay_gathers_members_arriving_during_it() -> None:
    """KIP-134: the first rebalance waits group.initial.rebalance.delay.ms, and again while new
    members keep arriving, so three members starting together share generation 1."""
    driver = CoordinatorDriver(attrs.evolve(TEST_CONFIG, initial_rebalance_delay_ms=100))
    a = driver.join_new()
    run_for(driver, 60)
    b = driver.join_new()
    run_for(driver, 60)  # t=120: past the first delay, but b arrived during it
    assert not a.done and not b.done
    c = driver.join_new()
    run_for(driver, 60)  # t=180
    assert not a.done
    run_for(driver, 300)
    assert {r.result.generation_id for r in (a, b, c)} == {1}
    assert driver.group().size == 3


def test_static_member_rejoin_keeps_its_assignment_and_fences_the_old_member_id() -> None:
    """KIP-345: a static member restarting (no member id, same instance id) gets a new id
    without a rebalance, keeps its assignment, and its old id is answered FENCED_INSTANCE_ID."""
    driver = CoordinatorDriver()
    s1 = driver.join(instance_id="i1").result  # static members skip MEMBER_ID_REQUIRED
    assert s1.generation_id == 1
    waiting = driver.join(instance_id="i2")  # starts a rebalance that waits for s1
    rejoin = driver.join(s1.member_id, instance_id="i1")
    leader, s2 = rejoin.result, waiting.result
    generation = leader.generation_id
    assert generation == s2.generation_id == 2 and leader.leader == s1.member_id
    assignment = {leader.member_id: b"A1", s2.member_id: b"A2"}
    driver.sync(leader.member_id, generation, assignment, instance_id="i1")
    assert driver.sync(s2.member_id, generation, instance_id="i2").result.assignment == b"A2"
    assert driver.group().is_(STABLE)

    restarted = driver.join("", instance_id="i2").result  # s2's process restarts
    assert restarted.error == ErrorCode.none
    assert restarted.member_id != s2.member_id
    assert restarted.generation_id == generation  # no rebalance
    assert driver.group().is_(STABLE)
    again = driver.sync(restarted.member_id, generation, instance_id="i2").result
    assert again.assignment == b"A2"
    assert driver.heartbeat(s2.member_id, generation, instance_id="i2") == ErrorCode.fenced_instance_id
    assert driver.commit({("t", 0): 1}, s2.member_id, generation,
                         instance_id="i2") == {("t", 0): ErrorCode.fenced_instance_id}
    assert driver.heartbeat(restarted.member_id, generation, instance_id="i2") == ErrorCode.none


def test_static_leader_rejoin_skips_assignment_from_v9_and_gets_the_old_leader_id_before() -> None:
    """KIP-814: a restarted static leader is told it leads but must skip the assignment (v9+);
    before v9 it is given the old leader id, so it does not run the assignor at all."""
    for version, expect_skip in ((9, True), (8, False)):
        driver = CoordinatorDriver()
        first = driver.join(instance_id="lead").result
        driver.sync(first.member_id, 1, {first.member_id: b"x"}, instance_id="lead")
        rejoined = driver.join("", instance_id="lead", version=version).result
        assert rejoined.skip_assignment is expect_skip
        if expect_skip:
            assert rejoined.leader == rejoined.member_id and len(rejoined.members) == 1
        else:
            assert rejoined.leader == first.member_id and rejoined.members == ()
        assert driver.group().generation_id == 1 and driver.group().is_(STABLE)


def test_session_timeout_removes_a_silent_member_and_its_partitions_move() -> None:
    """A member that stops heartbeating is removed session.timeout.ms after its last heartbeat;
    the survivor is told REBALANCE_IN_PROGRESS and alone forms the next generation."""
    driver = CoordinatorDriver()
    a, b = stable_group(driver, 2)
    generation = driver.group().generation_id
    for _ in range(3):
        driver.advance(SESSION_MS // 4)
        assert driver.heartbeat(a, generation) == ErrorCode.none
    assert b in driver.group().members
    driver.advance(SESSION_MS // 4)
    assert b not in driver.group().members
    assert driver.group().is_(PREPARING)
    assert driver.heartbeat(a, generation) == ErrorCode.rebalance_in_progress
    rejoined = driver.join(a).result
    assert rejoined.generation_id == generation + 1 and rejoined.members[0][0] == a
    assert driver.heartbeat(b, generation) == ErrorCode.unknown_member_id


def test_rebalance_timeout_removes_members_that_do_not_rejoin() -> None:
    """Members that keep heartbeating but never rejoin are dropped when the rebalance timeout
    ends the join phase; the next generation goes on without them."""
    driver = CoordinatorDriver()
    a, b = stable_group(driver, 2)
    leader = driver.group().leader_id
    other = b if leader == a else a
    generation = driver.group().generation_id
    rejoin = driver.join(leader)
    for _ in range(5):
        driver.advance(REBALANCE_MS // 5 - 1)
        assert driver.heartbeat(other, generation) == ErrorCode.rebalance_in_progress
        assert not rejoin.done
    driver.advance(10)
    assert rejoin.result.generation_id == generation + 1
    assert [m for m, _, _ in rejoin.result.members] == [leader]
    assert driver.heartbeat(other, generation) == ErrorCode.unknown_member_id


def test_static_member_that_misses_a_rebalance_stays_in_the_group() -> None:
    """KIP-345: a static member that does not rejoin is kept (with its subscription) through the
    rebalance; only its session timeout removes it."""
    driver = CoordinatorDriver()
    a = driver.join(instance_id="a").result
    driver.sync(a.member_id, 1, {a.member_id: b"x"}, instance_id="a")
    b = driver.join(instance_id="b", session_ms=60_000)  # a rebalance starts; b waits
    rejoin = driver.join(a.member_id, instance_id="a")
    assert rejoin.result.generation_id == 2 and b.result.generation_id == 2
    driver.sync(a.member_id, 2, {a.member_id: b"x", b.result.member_id: b"y"}, instance_id="a")
    driver.sync(b.result.member_id, 2, instance_id="b")
    # Now a rejoins as leader and b stays silent.
    second = driver.join(a.member_id, instance_id="a")
    driver.advance(REBALANCE_MS)
    assert second.result.generation_id == 3
    assert {m for m, _, _ in second.result.members} == {a.member_id, b.result.member_id}


def test_a_brand_new_member_stuck_in_join_is_dropped_after_five_minutes() -> None:
    """A new member whose JoinGroup never completes (its client gave up) is dropped after
    Kafka's NewMemberJoinTimeoutMs, even though parked members are normally excused."""
    driver = CoordinatorDriver()
    (a,) = stable_group(driver, 1)
    newcomer = driver.join_new(rebalance_ms=10 * 60_000)
    assert not newcomer.done and driver.group().is_(PREPARING)
    # The old member never rejoins (it is excused while heartbeating); time passes.
    for _ in range(NEW_MEMBER_JOIN_TIMEOUT_MS // 5000):
        driver.advance(5000)
        driver.heartbeat(a, 1)
    assert newcomer.done and newcomer.result.error == ErrorCode.unknown_member_id


@pytest.mark.parametrize("state", ["preparing", "completing", "stable"])
def test_fencing_on_heartbeat_commit_and_sync(state: str) -> None:
    """Stale generations get ILLEGAL_GENERATION, unknown ids UNKNOWN_MEMBER_ID, and calls during
    a rebalance REBALANCE_IN_PROGRESS, on Heartbeat, OffsetCommit and SyncGroup alike."""
    driver = CoordinatorDriver()
    a, b = stable_group(driver, 2)
    generation = driver.group().generation_id
    tp = ("t", 0)
    if state == "preparing":
        driver.join(driver.group().leader_id or "")
        assert driver.group().is_(PREPARING)
        assert driver.heartbeat(a, generation) == ErrorCode.rebalance_in_progress
        assert driver.sync(a, generation).result.error == ErrorCode.rebalance_in_progress
        # The old generation may still commit while the rebalance is prepared.
        assert driver.commit({tp: 5}, a, generation) == {tp: ErrorCode.none}
    elif state == "completing":
        leader = driver.group().leader_id or ""
        other = b if leader == a else a
        lr, orr = driver.join(leader), driver.join(other)
        assert driver.group().is_(COMPLETING) and lr.done and orr.done
        generation += 1
        assert driver.heartbeat(other, generation) == ErrorCode.none
        assert driver.commit({tp: 5}, other, generation) == {tp: ErrorCode.rebalance_in_progress}
        assert driver.sync(other, generation - 1).result.error == ErrorCode.illegal_generation
    else:
        assert driver.heartbeat(a, generation) == ErrorCode.none
        assert driver.commit({tp: 5}, a, generation) == {tp: ErrorCode.none}
    assert driver.heartbeat(a, generation - 1) == ErrorCode.illegal_generation
    assert driver.heartbeat("nobody", generation) == ErrorCode.unknown_member_id
    assert driver.commit({tp: 6}, a, generation - 1) == {tp: ErrorCode.illegal_generation}
    assert driver.commit({tp: 6}, "nobody", generation) == {tp: ErrorCode.unknown_member_id}
    assert driver.commit({tp: 6}) == {tp: ErrorCode.unknown_member_id}  # generation -1 while members exist
    assert driver.sync("nobody", generation).result.error == ErrorCode.unknown_member_id
    assert driver.sync(a, generation, protocol_name="roundrobin").result.error in (
        ErrorCode.inconsistent_group_protocol, ErrorCode.rebalance_in_progress
    )


def test_join_errors_for_bad_session_timeout_protocol_and_group_size() -> None:
    """JoinGroup refuses a session timeout outside the broker's bounds, a protocol the group
    does not share, and a member beyond group.max.size."""
    driver = CoordinatorDriver(GroupConfig(min_session_timeout_ms=100, max_session_timeout_ms=1000,
                                           max_size=2, initial_rebalance_delay_ms=0))
    assert driver.join(session_ms=99).result.error == ErrorCode.invalid_session_timeout
    assert driver.join(session_ms=1001).result.error == ErrorCode.invalid_session_timeout
    assert driver.join(protocols=(), session_ms=500).result.error == ErrorCode.inconsistent_group_protocol
    first = driver.join_new(session_ms=500).result
    assert first.error == ErrorCode.none
    assert driver.join(session_ms=500, protocols=(("other", b""),)).result.error == (
        ErrorCode.inconsistent_group_protocol
    )
    second = driver.join_new(session_ms=500)
    driver.join(first.member_id, session_ms=500)
    assert second.result.generation_id == 2 and driver.group().size == 2
    assert driver.join(session_ms=500).result.error == ErrorCode.group_max_size_reached
    assert driver.join("nobody", group_id="nowhere", session_ms=500).result.error == (
        ErrorCode.unknown_member_id
    )
    assert driver.join(group_id="", session_ms=500).result.error == ErrorCode.invalid_group_id


def test_protocol_chosen_by_vote_among_those_all_members_support() -> None:
    """The group's protocol is the one most members prefer among those every member supports."""
    driver = CoordinatorDriver(attrs.evolve(TEST_CONFIG, initial_rebalance_delay_ms=10))
    both = (("roundrobin", b""), ("range", b""))
    a = driver.join_new(protocols=both)
    b = driver.join_new(protocols=(("range", b""), ("roundrobin", b"")))
    c = driver.join_new(protocols=both)
    run_for(driver, 100)
    assert {r.result.protocol_name for r in (a, b, c)} == {"roundrobin"}


def test_offset_commit_and_fetch_keep_metadata_and_answer_minus_one_for_the_rest() -> None:
    """Offsets committed with generation -1 create a simple Empty group; OffsetFetch returns
    them with their metadata, and -1 (no metadata) for partitions never committed."""
    driver = CoordinatorDriver()
    assert driver.commit({("t", 0): 10, ("t", 1): 20}, metadata="m") == {
        ("t", 0): ErrorCode.none, ("t", 1): ErrorCode.none}
    assert driver.group().is_(EMPTY) and driver.group().protocol_type is None
    fetched = dict(driver.coordinator.fetch_offsets("g", [("t", 0), ("t", 2)]))
    assert fetched[("t", 0)] is not None and fetched[("t", 0)].metadata == "m"
    assert fetched[("t", 0)].offset == 10 and fetched[("t", 2)] is None
    assert driver.coordinator.fetch_offsets("unknown", None) == []
    big = "x" * (TEST_CONFIG.offset_metadata_max_bytes + 1)
    assert driver.commit({("t", 0): 11}, metadata=big) == {("t", 0): ErrorCode.offset_metadata_too_large}
    assert driver.committed() == {("t", 0): 10, ("t", 1): 20}


def test_commit_to_a_missing_group_with_a_generation_depends_on_the_version() -> None:
    """OffsetCommit with a generation to a group that does not exist is ILLEGAL_GENERATION before
    v9 and GROUP_ID_NOT_FOUND from v9 (Kafka 4)."""
    driver = CoordinatorDriver()
    tp = ("t", 0)
    assert driver.commit({tp: 1}, "m", 3, api_version=8) == {tp: ErrorCode.illegal_generation}
    assert driver.commit({tp: 1}, "m", 3, api_version=9) == {tp: ErrorCode.group_id_not_found}


def test_storage_failure_during_sync_fails_the_generation_and_rebalances() -> None:
    """If the assignment cannot be written, every waiting member gets the mapped error
    (NOT_LEADER_OR_FOLLOWER becomes NOT_COORDINATOR) and the group rebalances."""
    driver = CoordinatorDriver()
    joined = driver.join_new().result
    driver.storage.fail_with = ErrorCode.not_leader_or_follower
    result = driver.sync(joined.member_id, 1, {joined.member_id: b"x"}).result
    assert result.error == ErrorCode.not_coordinator
    assert driver.group().is_(PREPARING)
    assert driver.commit({("t", 0): 1}) == {("t", 0): ErrorCode.unknown_member_id}
    driver.storage.fail_with = ErrorCode.message_too_large
    assert driver.commit({("t", 0): 1}, joined.member_id, 1) == {("t", 0): ErrorCode.invalid_commit_offset_size}


def test_group_and_offsets_survive_a_restart_and_members_carry_on() -> None:
    """After a restart the group is rebuilt from storage: Stable at the same generation with its
    members and assignments, so their heartbeats succeed, and committed offsets are back."""
    driver = CoordinatorDriver()
    a, b = stable_group(driver, 2)
    generation = driver.group().generation_id
    assert driver.commit({("t", 0): 7}, a, generation, metadata="meta") == {("t", 0): ErrorCode.none}
    assignments = {m.member_id: m.assignment for m in driver.group().members.values()}
    driver.restart()
    group = driver.group()
    assert (group.state, group.generation_id) == (STABLE, generation)
    assert {m.member_id: m.assignment for m in group.members.values()} == assignments
    assert driver.heartbeat(a, generation) == ErrorCode.none
    assert driver.sync(b, generation).result.assignment == assignments[b]
    assert driver.committed() == {("t", 0): 7}
    (_, value), = driver.coordinator.fetch_offsets("g", [("t", 0)])
    assert value is not None and value.metadata == "meta"
    # The next rebalance continues the numbering.
    replies = [driver.join(member) for member in (a, b)]
    assert {reply.result.generation_id for reply in replies} == {generation + 1}


def test_generation_never_goes_back_after_a_restart_mid_rebalance() -> None:
    """A restart after the join phase but before the leader's SyncGroup reloads the group Empty
    at the new generation: the next generation is higher still, never a reused number."""
    driver = CoordinatorDriver()
    a, b = stable_group(driver, 2)
    generation = driver.group().generation_id
    leader = driver.group().leader_id or ""
    other = b if leader == a else a
    driver.join(leader), driver.join(other)
    assert driver.group().is_(COMPLETING) and driver.group().generation_id == generation + 1
    driver.restart()
    assert (driver.group().state, driver.group().generation_id) == (EMPTY, generation + 1)
    assert driver.heartbeat(other, generation + 1) == ErrorCode.unknown_member_id
    assert driver.join_new().result.generation_id == generation + 2


def test_last_member_leaving_empties_the_group_at_a_new_generation() -> None:
    """LeaveGroup of the last member moves the group to Empty and bumps the generation, as
    Kafka does; leaving twice is UNKNOWN_MEMBER_ID."""
    driver = CoordinatorDriver()
    (a,) = stable_group(driver, 1)
    generation = driver.group().generation_id
    assert driver.leave(a) == ErrorCode.none
    assert (driver.group().state, driver.group().generation_id) == (EMPTY, generation + 1)
    assert driver.leave(a) == ErrorCode.unknown_member_id
    assert driver.leave("", instance_id="nobody") == ErrorCode.unknown_member_id


def test_leave_by_instance_id_alone_removes_a_static_member() -> None:
    """KIP-345 admin removal: LeaveGroup naming only group.instance.id removes that member."""
    driver = CoordinatorDriver()
    joined = driver.join(instance_id="s").result
    driver.sync(joined.member_id, 1, {joined.member_id: b"x"}, instance_id="s")
    assert driver.leave("", instance_id="s") == ErrorCode.none
    assert driver.group().is_(EMPTY)


def test_delete_groups_and_offset_delete_follow_kafka_rules() -> None:
    """DeleteGroups refuses a group with members (NON_EMPTY_GROUP) and unknown groups
    (GROUP_ID_NOT_FOUND); OffsetDelete refuses topics a live consumer group subscribes to."""
    driver = CoordinatorDriver()
    sub = consumer_subscription(["t"])
    joined = driver.join_new(protocols=(("range", sub),)).result
    driver.sync(joined.member_id, 1, {joined.member_id: b""})
    driver.commit({("t", 0): 1, ("u", 0): 2}, joined.member_id, 1)
    coordinator = driver.coordinator
    assert coordinator.delete_groups(["g", "nope"], driver.now_ms) == {
        "g": ErrorCode.non_empty_group, "nope": ErrorCode.group_id_not_found}
    error, results = coordinator.delete_offsets("g", [("t", 0), ("u", 0)], driver.now_ms)
    assert error == ErrorCode.none
    assert results == {("t", 0): ErrorCode.group_subscribed_to_topic, ("u", 0): ErrorCode.none}
    assert driver.committed() == {("t", 0): 1}
    driver.leave(joined.member_id)
    assert coordinator.delete_groups(["g"], driver.now_ms) == {"g": ErrorCode.none}
    assert coordinator.group("g") is None
    driver.restart()
    assert driver.coordinator.group("g") is None and driver.committed() == {}
    assert driver.coordinator.delete_offsets("g", [("t", 0)], driver.now_ms)[0] == (
        ErrorCode.group_id_not_found
    )


def test_offsets_expire_once_the_group_has_been_empty_for_the_retention_time() -> None:
    """KIP-211: an empty group's offsets expire offsets.retention.ms after it became empty (not
    after the commit), and the group goes with them; a simple group's expire per commit."""
    config = attrs.evolve(TEST_CONFIG, offsets_retention_ms=10_000,
                          offsets_retention_check_interval_ms=1000)
    driver = CoordinatorDriver(config)
    (a,) = stable_group(driver, 1, session_ms=60_000)
    driver.commit({("t", 0): 3}, a, 1)
    driver.advance(20_000)  # long after the commit, but the group is not empty
    driver.heartbeat(a, 1)
    assert driver.committed() == {("t", 0): 3}
    driver.leave(a)
    driver.advance(9_000)
    assert driver.committed() == {("t", 0): 3}
    driver.advance(2_000)
    assert driver.committed() == {} and driver.coordinator.group("g") is None
    driver.commit({("t", 1): 1}, group_id="simple")
    driver.advance(11_000)
    assert driver.committed("simple") == {}
    driver.restart()
    assert driver.committed("g") == {} and driver.committed("simple") == {}


def test_describe_and_list_groups_show_state_members_and_filters() -> None:
    """DescribeGroups shows members' metadata and assignment only while Stable; ListGroups
    filters by state (case-insensitive) and knows only the "classic" type."""
    driver = CoordinatorDriver()
    (a,) = stable_group(driver, 1)
    driver.commit({("t", 0): 1}, group_id="simple")
    summary = driver.coordinator.describe_group("g")
    assert summary is not None
    assert (summary.state, summary.protocol_type, summary.protocol) == ("Stable", "consumer", "range")
    assert summary.members[0].member_id == a and summary.members[0].metadata == b"sub"
    assert driver.coordinator.describe_group("nope") is None
    listed = driver.coordinator.list_groups
    assert [g.group_id for g in listed()] == ["g", "simple"]
    assert [g.group_id for g in listed(states=["stable"])] == ["g"]
    assert [g.group_id for g in listed(states=["Empty"])] == ["simple"]
    assert listed(types=["consumer"]) == [] and len(listed(types=["Classic"])) == 2


def test_a_pending_member_can_join_a_rebalancing_group_that_lost_all_its_members() -> None:
    """A group left with no members while a MEMBER_ID_REQUIRED id is outstanding still accepts
    that member (every protocol is shared by all of zero members, as in Kafka)."""
    driver = CoordinatorDriver()
    (a,) = stable_group(driver, 1)
    pending = driver.join().result
    driver.join(a)  # the leader's rejoin starts a rebalance, which waits for the pending id
    assert driver.leave(a) == ErrorCode.none
    assert driver.group().is_(PREPARING) and driver.group().size == 0
    joined = driver.join(pending.member_id, protocols=(("roundrobin", b""),)).result
    assert (joined.error, joined.protocol_name) == (ErrorCode.none, "roundrobin")
