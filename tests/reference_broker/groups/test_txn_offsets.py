"""Transactional offset commits (TxnOffsetCommit; KIP-98, KIP-447) in the group coordinator, over
in-memory storage: pending per producer id until the transaction's marker, fencing by member
and generation, OffsetFetch with require_stable, replay of COMMIT / ABORT / ongoing
transactions, and deletion and expiry around pending offsets."""

from __future__ import annotations

import attrs
import pytest
from kio.schema.errors import ErrorCode

from reference_broker.groups import GroupState, partition_for
from reference_broker.groups.testing import TEST_CONFIG, CoordinatorDriver
from tests.reference_broker.groups.test_coordinator import stable_group

NONE = ErrorCode.none
UNSTABLE = ErrorCode.unstable_offset_commit
T0, T1 = ("t", 0), ("t", 1)
PID, OTHER = 7000, 7001  # CoordinatorDriver's default producer id, and a second producer


def test_offsets_stay_pending_until_the_commit_marker() -> None:
    """Answered once written, but OffsetFetch keeps showing the previous offset (and nothing
    where there was none) until the COMMIT marker; require_stable answers
    UNSTABLE_OFFSET_COMMIT meanwhile, and lists (all topics) only partitions with an offset."""
    driver = CoordinatorDriver()
    assert driver.commit({T0: 5}) == {T0: NONE}
    assert driver.txn_commit({T0: 10, T1: 20}) == {T0: NONE, T1: NONE}
    assert driver.committed() == {T0: 5}
    assert driver.stable(partitions=[T0, T1, ("u", 0)]) == {T0: UNSTABLE, T1: UNSTABLE, ("u", 0): -1}
    assert driver.stable() == {T0: UNSTABLE}
    assert driver.end_txn(commit=True) == 1
    assert driver.committed() == {T0: 10, T1: 20}
    assert driver.stable() == {T0: 10, T1: 20}
    assert not driver.group().pending_txn_offsets
    # The coordinator retrying its marker changes nothing.
    assert driver.end_txn(commit=True) == 0
    assert driver.committed() == {T0: 10, T1: 20}


def test_an_abort_drops_them_and_the_previous_offset_stays() -> None:
    driver = CoordinatorDriver()
    driver.commit({T0: 5})
    driver.txn_commit({T0: 10, T1: 20})
    assert driver.end_txn(commit=False) == 1
    assert driver.committed() == {T0: 5}
    assert driver.stable(partitions=[T0, T1]) == {T0: 5, T1: -1}
    assert not driver.group().pending_txn_offsets


def test_each_producer_and_each_offsets_partition_ends_on_its_own() -> None:
    """A marker completes the transaction of its producer id only, for the groups of its
    offsets partition only."""
    driver = CoordinatorDriver()
    home = partition_for("g", driver.storage.partitions)
    elsewhere = next(f"h{i}" for i in range(100)
                     if partition_for(f"h{i}", driver.storage.partitions) != home)
    driver.txn_commit({T0: 1}, producer_id=PID)
    driver.txn_commit({T1: 2}, producer_id=OTHER)
    driver.txn_commit({T0: 3}, producer_id=PID, group_id=elsewhere)
    assert driver.end_txn(OTHER, commit=True) == 1
    assert driver.committed() == {T1: 2}
    assert driver.stable(partitions=[T0, T1]) == {T0: UNSTABLE, T1: 2}
    assert driver.end_txn(PID, commit=True) == 1  # g's partition: the other group waits
    assert driver.committed() == {T0: 1, T1: 2}
    assert driver.committed(elsewhere) == {}
    assert driver.end_txn(PID, commit=True, group_id=elsewhere) == 1
    assert driver.committed(elsewhere) == {T0: 3}


def test_of_a_transactional_and_a_plain_commit_the_one_written_later_wins() -> None:
    """Kafka compares the offsets of the commits' records in __consumer_offsets, not the order
    in which they complete: a plain commit written after the transactional one survives its
    COMMIT; one written before is replaced. A restart's replay agrees."""
    driver = CoordinatorDriver()
    driver.txn_commit({T0: 10})
    driver.commit({T0: 3})  # written after the transactional record
    driver.commit({T1: 3})
    driver.txn_commit({T1: 10}, producer_id=OTHER)  # written after the plain record
    driver.end_txn(PID, commit=True)
    driver.end_txn(OTHER, commit=True)
    assert driver.committed() == {T0: 3, T1: 10}
    driver.restart()
    assert driver.committed() == {T0: 3, T1: 10}


def test_a_later_commit_by_the_same_producer_replaces_its_earlier_one() -> None:
    driver = CoordinatorDriver()
    driver.txn_commit({T0: 10, T1: 1})
    driver.txn_commit({T0: 11})
    driver.end_txn(commit=True)
    assert driver.committed() == {T0: 11, T1: 1}


def test_without_a_producer_id_it_is_a_plain_commit() -> None:
    """Kafka tells a transactional commit by its producer id: producer id -1 commits at once."""
    driver = CoordinatorDriver()
    assert driver.txn_commit({T0: 4}, producer_id=-1) == {T0: NONE}
    assert driver.committed() == {T0: 4}
    assert not driver.group().pending_txn_offsets


def test_member_and_generation_are_checked_when_given() -> None:
    """KIP-447: TxnOffsetCommit v3+ names the member and generation and is fenced like an
    OffsetCommit; generation -1 without a member (v0-v2) is not validated, even while the
    group has members, and CompletingRebalance does not refuse a transactional commit."""
    driver = CoordinatorDriver()
    [member] = stable_group(driver, 1)
    generation = driver.group().generation_id
    assert driver.txn_commit({T0: 1}, member_id=member, generation=generation) == {T0: NONE}
    assert driver.txn_commit({T0: 2}, member_id=member, generation=generation - 1) == {
        T0: ErrorCode.illegal_generation}
    assert driver.txn_commit({T0: 2}, member_id="stranger", generation=generation) == {
        T0: ErrorCode.unknown_member_id}
    assert driver.txn_commit({T0: 2}, member_id=member, generation=-1) == {
        T0: ErrorCode.illegal_generation}
    assert driver.group().pending_txn_offsets[PID][T0].value.offset == 1  # refusals change nothing
    assert driver.commit({T0: 3}) == {T0: ErrorCode.unknown_member_id}  # a plain one is refused
    assert driver.txn_commit({T0: 3}) == {T0: NONE}

    rejoined = driver.join(member).result  # the leader rejoins: CompletingRebalance
    assert driver.group().is_(GroupState.COMPLETING_REBALANCE)
    assert driver.commit({T1: 4}, member_id=member, generation=rejoined.generation_id) == {
        T1: ErrorCode.rebalance_in_progress}
    assert driver.txn_commit({T1: 4}, member_id=member, generation=rejoined.generation_id) == {
        T1: NONE}
    driver.end_txn(commit=True)
    assert driver.committed() == {T0: 3, T1: 4}


def test_a_fenced_static_member_and_unknown_or_unnamed_groups_are_refused() -> None:
    driver = CoordinatorDriver()
    joined = driver.join(instance_id="i1").result  # static members skip MEMBER_ID_REQUIRED
    static, generation = joined.member_id, joined.generation_id
    assert driver.txn_commit({T0: 1}, member_id="old-id", generation=generation, instance_id="i1") == {
        T0: ErrorCode.fenced_instance_id}
    assert driver.txn_commit({T0: 1}, member_id=static, generation=generation, instance_id="i1") == {
        T0: NONE}
    # A group nobody has used: ILLEGAL_GENERATION with a generation (and no group is created),
    # created as a simple group by generation -1.
    assert driver.txn_commit({T0: 1}, member_id="m", generation=1, group_id="new") == {
        T0: ErrorCode.illegal_generation}
    assert driver.coordinator.group("new") is None
    assert driver.txn_commit({T0: 1}, group_id="new") == {T0: NONE}
    assert driver.txn_commit({T0: 1}, group_id="") == {T0: ErrorCode.invalid_group_id}


def test_a_failed_write_leaves_nothing_pending_and_a_slow_one_is_pending_meanwhile() -> None:
    driver = CoordinatorDriver()
    driver.storage.fail_with = ErrorCode.not_leader_or_follower
    assert driver.txn_commit({T0: 1}) == {T0: ErrorCode.not_coordinator}
    assert not driver.group().pending_txn_offsets
    driver.storage.fail_with = None

    # A failed commit does not undo the producer's earlier one, whose record is in the log.
    assert driver.txn_commit({T0: 1}) == {T0: NONE}
    driver.storage.fail_with = ErrorCode.not_enough_replicas
    assert driver.txn_commit({T0: 9}) == {T0: ErrorCode.coordinator_not_available}
    driver.storage.fail_with = None
    driver.end_txn(commit=True)
    assert driver.committed() == {T0: 1}
    driver.restart()
    assert driver.committed() == {T0: 1}
    driver.coordinator.delete_groups(["g"], driver.now_ms)

    driver.storage.hold = True  # the followers have not fetched the records yet
    reply = driver.txn_commit_later({T0: 2})
    assert not reply.done
    assert driver.stable(partitions=[T0]) == {T0: UNSTABLE}
    driver.storage.complete(ErrorCode.request_timed_out)
    assert reply.result == {T0: ErrorCode.coordinator_not_available}
    assert not driver.group().pending_txn_offsets

    reply = driver.txn_commit_later({T0: 3})
    driver.storage.complete()
    assert reply.result == {T0: NONE}
    assert driver.committed() == {}
    driver.storage.hold = False
    driver.end_txn(commit=True)
    assert driver.committed() == {T0: 3}


@pytest.mark.parametrize("outcome", ["commit", "abort", "ongoing"])
def test_a_restart_replays_the_transaction_as_its_marker_says(outcome: str) -> None:
    """Loading holds transactional offsets per producer until the producer's marker: COMMIT
    applies them, ABORT drops them; without a marker the transaction is ongoing and they stay
    pending for the marker still to come."""
    driver = CoordinatorDriver()
    driver.commit({T0: 5})
    driver.txn_commit({T0: 10, T1: 20})
    driver.txn_commit({T1: 30}, producer_id=OTHER)  # another producer's, ongoing throughout
    if outcome != "ongoing":
        driver.end_txn(commit=outcome == "commit")
    driver.restart()
    expected = {"commit": {T0: 10, T1: 20}, "abort": {T0: 5}, "ongoing": {T0: 5}}[outcome]
    assert driver.committed() == expected
    assert set(driver.group().pending_txn_offsets) == ({PID, OTHER} if outcome == "ongoing" else {OTHER})
    assert driver.stable(partitions=[T1])[T1] is UNSTABLE
    if outcome == "ongoing":
        assert driver.end_txn(commit=True) == 1
        assert driver.committed() == {T0: 10, T1: 20}
    driver.end_txn(OTHER, commit=True)
    assert driver.committed()[T1] == 30
    driver.restart()
    assert driver.committed() == {T0: 5 if outcome == "abort" else 10, T1: 30}
    assert not driver.group().pending_txn_offsets


def test_a_group_with_only_pending_transactional_offsets_survives_a_restart() -> None:
    driver = CoordinatorDriver()
    driver.txn_commit({T0: 1}, group_id="only-txn")
    driver.restart()
    assert driver.committed("only-txn") == {}
    assert driver.end_txn(commit=True, group_id="only-txn") == 1
    assert driver.committed("only-txn") == {T0: 1}


def test_deleting_the_group_or_its_offsets_drops_pending_transactional_offsets() -> None:
    """DeleteGroups of a group with pending transactional offsets succeeds (it has no members)
    and takes them along, as Kafka 4's tombstones do; so do OffsetDelete and a deleted topic.
    The later COMMIT marker then has nothing to apply, before or after a restart."""
    driver = CoordinatorDriver()
    driver.txn_commit({T0: 10})
    assert driver.coordinator.delete_groups(["g"], driver.now_ms) == {"g": NONE}
    assert driver.coordinator.group("g") is None
    assert driver.end_txn(commit=True) == 0
    assert driver.committed() == {}
    driver.restart()
    assert driver.coordinator.group("g") is None

    driver.commit({T0: 1})
    driver.txn_commit({T0: 10, T1: 20, ("u", 0): 30}, producer_id=OTHER)
    error, results = driver.coordinator.delete_offsets("g", [T1], driver.now_ms)
    assert (error, results) == (NONE, {T1: NONE})
    driver.coordinator.remove_topic_offsets("u", driver.now_ms)
    assert set(driver.group().pending_txn_offsets[OTHER]) == {T0}
    driver.restart()
    assert set(driver.group().pending_txn_offsets[OTHER]) == {T0}
    driver.end_txn(OTHER, commit=True)
    assert driver.committed() == {T0: 10}


def test_pending_transactional_offsets_keep_their_partition_and_an_empty_group_from_expiring() -> None:
    config = attrs.evolve(TEST_CONFIG, offsets_retention_ms=1000,
                          offsets_retention_check_interval_ms=100)
    driver = CoordinatorDriver(config)
    driver.commit({T0: 5})
    driver.txn_commit({T0: 10}, group_id="txn-only")
    driver.txn_commit({T0: 10})
    driver.advance(2000)
    assert driver.committed() == {T0: 5}  # its partition has a transaction pending
    assert driver.coordinator.group("txn-only") is not None
    driver.end_txn(commit=False)
    driver.end_txn(commit=False, group_id="txn-only")
    driver.advance(200)
    assert driver.coordinator.group("g") is None
    assert driver.coordinator.group("txn-only") is None
