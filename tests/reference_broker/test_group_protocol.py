"""Consumer-group APIs at the wire level against a broker process: every error code a client can
act on, at the versions clients use and at the newest ones."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from harness.wire import WireClient
from launch.broker_process import BrokerProcess
from reference_broker.groups.testing import consumer_assignment, consumer_subscription
from tests.kafka_helpers import create_topic, topic_id, wire

SETTINGS = {
    "group.initial.rebalance.delay.ms": "200",
    "group.min.session.timeout.ms": "500",
    "offsets.topic.num.partitions": "10",
}
FIND_COORDINATOR, JOIN, HEARTBEAT, LEAVE, SYNC = 10, 11, 12, 13, 14
OFFSET_COMMIT, OFFSET_FETCH, DESCRIBE, LIST, DELETE_GROUPS, OFFSET_DELETE = 8, 9, 15, 16, 42, 47


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    with BrokerProcess(overrides=SETTINGS, data_dir=tmp_path_factory.mktemp("groups")) as process:
        create_topic(process.bootstrap, "wire-t", 3)
        yield process


def err(value: Any) -> ErrorCode:
    return ErrorCode(value)


def join_fields(group: str, member_id: str = "", instance: str | None = None,
                session_ms: int = 6000, topics: tuple[str, ...] = ("wire-t",)) -> dict[str, Any]:
    return {
        "group_id": group, "session_timeout": session_ms, "rebalance_timeout": 10_000,
        "member_id": member_id, "group_instance_id": instance, "protocol_type": "consumer",
        "protocols": [{"name": "range", "metadata": consumer_subscription(topics)}],
        "reason": None,
    }


def join_alone(bootstrap: str, group: str, **kwargs: Any) -> Any:
    """A v9 join of a single dynamic member: MEMBER_ID_REQUIRED, then the real join."""
    first = wire(bootstrap, JOIN, 9, join_fields(group, **kwargs))
    assert err(first.error_code) == ErrorCode.member_id_required and first.member_id
    return wire(bootstrap, JOIN, 9, join_fields(group, first.member_id, **kwargs))


def sync(bootstrap: str, group: str, member: str, generation: int,
         assignments: dict[str, bytes] | None = None, instance: str | None = None) -> Any:
    return wire(bootstrap, SYNC, 5, {
        "group_id": group, "generation_id": generation, "member_id": member,
        "group_instance_id": instance, "protocol_type": "consumer", "protocol_name": "range",
        "assignments": [{"member_id": m, "assignment": a} for m, a in (assignments or {}).items()],
    })


def heartbeat(bootstrap: str, group: str, member: str, generation: int,
              instance: str | None = None) -> ErrorCode:
    response = wire(bootstrap, HEARTBEAT, 4, {"group_id": group, "generation_id": generation,
                                              "member_id": member, "group_instance_id": instance})
    return err(response.error_code)


def test_find_coordinator_names_this_node_for_groups_at_every_version(broker: BrokerProcess) -> None:
    """FindCoordinator v0-v6 answers this node for a group (creating __consumer_offsets, listed
    as internal), this node for a transactional id too (creating __transaction_state, internal)
    and INVALID_REQUEST for an unknown key type."""
    host, port = broker.bootstrap.rsplit(":", 1)
    for version in range(0, 4):
        response = wire(broker.bootstrap, FIND_COORDINATOR, version, {"key": "g", "key_type": 0})
        assert err(response.error_code) == ErrorCode.none
        assert (response.node_id, response.host, response.port) == (0, host, int(port))
    response = wire(broker.bootstrap, FIND_COORDINATOR, 6,
                    {"key_type": 0, "coordinator_keys": ["a", "b"]})
    assert [(c.key, err(c.error_code), c.port) for c in response.coordinators] == [
        ("a", ErrorCode.none, int(port)), ("b", ErrorCode.none, int(port))]
    txn = wire(broker.bootstrap, FIND_COORDINATOR, 6, {"key_type": 1, "coordinator_keys": ["t"]})
    assert [(err(c.error_code), c.port) for c in txn.coordinators] == [(ErrorCode.none, int(port))]
    bad = wire(broker.bootstrap, FIND_COORDINATOR, 3, {"key": "x", "key_type": 7})
    assert err(bad.error_code) == ErrorCode.invalid_request
    metadata = wire(broker.bootstrap, 3, 12, {"topics": None, "allow_auto_topic_creation": False,
                                              "include_topic_authorized_operations": False})
    internal = {t.name: (t.is_internal, len(t.partitions)) for t in metadata.topics}
    assert internal["__consumer_offsets"] == (True, 10)
    assert internal["__transaction_state"][0] is True
    assert internal["wire-t"] == (False, 3)


def test_join_sync_heartbeat_leave_at_the_newest_and_oldest_versions(broker: BrokerProcess) -> None:
    """A lone member joins (v9 after MEMBER_ID_REQUIRED; v0 directly), leads, syncs its own
    assignment, heartbeats, leaves; afterwards its id is unknown."""
    bs = broker.bootstrap
    joined = join_alone(bs, "wire-life")
    assert err(joined.error_code) == ErrorCode.none
    assert (joined.generation_id, joined.leader, joined.protocol_name) == (
        1, joined.member_id, "range")
    assert [m.member_id for m in joined.members] == [joined.member_id]
    mine = consumer_assignment({"wire-t": [0, 1, 2]})
    synced = sync(bs, "wire-life", joined.member_id, 1, {joined.member_id: mine})
    assert (err(synced.error_code), synced.assignment) == (ErrorCode.none, mine)
    assert heartbeat(bs, "wire-life", joined.member_id, 1) == ErrorCode.none
    assert heartbeat(bs, "wire-life", joined.member_id, 0) == ErrorCode.illegal_generation
    left = wire(bs, LEAVE, 5, {"group_id": "wire-life", "members": [
        {"member_id": joined.member_id, "group_instance_id": None, "reason": "test"}]})
    assert err(left.error_code) == ErrorCode.none and err(left.members[0].error_code) == ErrorCode.none
    assert heartbeat(bs, "wire-life", joined.member_id, 2) == ErrorCode.unknown_member_id

    old = wire(bs, JOIN, 0, {"group_id": "wire-v0", "session_timeout": 6000, "member_id": "",
                             "protocol_type": "consumer",
                             "protocols": [{"name": "range", "metadata": b"m"}]})
    assert err(old.error_code) == ErrorCode.none and old.generation_id == 1
    synced0 = wire(bs, SYNC, 0, {"group_id": "wire-v0", "generation_id": 1,
                                 "member_id": old.member_id, "assignments": []})
    assert err(synced0.error_code) == ErrorCode.none and synced0.assignment == b""
    left0 = wire(bs, LEAVE, 0, {"group_id": "wire-v0", "member_id": old.member_id})
    assert err(left0.error_code) == ErrorCode.none
    again = wire(bs, LEAVE, 0, {"group_id": "wire-v0", "member_id": old.member_id})
    assert err(again.error_code) == ErrorCode.unknown_member_id


async def _two_members_join(bootstrap: str, group: str) -> tuple[Any, Any, list[Any]]:
    async with WireClient.for_bootstrap(bootstrap) as a, WireClient.for_bootstrap(bootstrap) as b:
        ids = [(await c.call(JOIN, 9, join_fields(group))).member_id for c in (a, b)]
        ra, rb = await asyncio.gather(a.call(JOIN, 9, join_fields(group, ids[0])),
                                      b.call(JOIN, 9, join_fields(group, ids[1])))
        leader, follower = (ra, rb) if ra.leader == ra.member_id else (rb, ra)
        lead_client, follow_client = (a, b) if leader is ra else (b, a)

        def sync_fields(member: str, assignments: list[dict[str, Any]]) -> dict[str, Any]:
            return {"group_id": group, "generation_id": leader.generation_id, "member_id": member,
                    "group_instance_id": None, "protocol_type": "consumer",
                    "protocol_name": "range", "assignments": assignments}

        waiting = asyncio.ensure_future(follow_client.call(SYNC, 5, sync_fields(follower.member_id, [])))
        await asyncio.sleep(0.3)
        assert not waiting.done(), "the follower's SyncGroup was answered before the leader's"
        plan = [{"member_id": leader.member_id, "assignment": b"L"},
                {"member_id": follower.member_id, "assignment": b"F"}]
        led = await lead_client.call(SYNC, 5, sync_fields(leader.member_id, plan))
        return leader, follower, [led, await waiting]


def test_follower_sync_is_held_until_the_leader_brings_the_assignment(broker: BrokerProcess) -> None:
    """Two members joining within the initial delay share generation 1; the follower's SyncGroup
    is parked until the leader's arrives, then each gets its own part."""
    leader, follower, (led, followed) = asyncio.run(_two_members_join(broker.bootstrap, "wire-two"))
    assert leader.generation_id == follower.generation_id == 1
    assert len(leader.members) == 2 and len(follower.members) == 0
    assert (led.assignment, followed.assignment) == (b"L", b"F")


def test_a_member_that_stops_heartbeating_is_removed_after_its_session_timeout(
    broker: BrokerProcess,
) -> None:
    """A member silent for session.timeout.ms is removed (its heartbeat then gets
    UNKNOWN_MEMBER_ID) and the surviving member is told to rejoin; not a moment before."""
    bs = broker.bootstrap
    leader, follower, _ = asyncio.run(_two_members_join(bs, "wire-silent"))
    # Rejoin both with a short session: a leader's rejoin makes a new generation.
    asyncio.run(_rejoin_with_session(bs, "wire-silent", [leader.member_id, follower.member_id]))
    silent, alive = follower.member_id, leader.member_id
    generation = 2
    start = time.monotonic()
    while time.monotonic() - start < 0.8:  # well inside the 1 s session
        assert heartbeat(bs, "wire-silent", alive, generation) == ErrorCode.none
        time.sleep(0.2)
    assert heartbeat(bs, "wire-silent", silent, generation) == ErrorCode.none, "removed too early"
    start = time.monotonic()
    verdict = ErrorCode.none
    while verdict == ErrorCode.none and time.monotonic() - start < 5:
        time.sleep(0.2)
        verdict = heartbeat(bs, "wire-silent", alive, generation)
    assert verdict == ErrorCode.rebalance_in_progress
    assert 0.6 <= time.monotonic() - start <= 2.0
    assert heartbeat(bs, "wire-silent", silent, generation) == ErrorCode.unknown_member_id


async def _rejoin_with_session(bootstrap: str, group: str, members: list[str]) -> None:
    async with WireClient.for_bootstrap(bootstrap) as a, WireClient.for_bootstrap(bootstrap) as b:
        results = await asyncio.gather(*[
            c.call(JOIN, 9, join_fields(group, m, session_ms=1000)) for c, m in zip((a, b), members)
        ])
        leader = next(r for r in results if r.leader == r.member_id)
        for client, result in zip((a, b), results):
            if result is not leader:
                pending = asyncio.ensure_future(client.call(SYNC, 5, {
                    "group_id": group, "generation_id": result.generation_id,
                    "member_id": result.member_id, "assignments": []}))
        lead_client = (a, b)[results.index(leader)]
        await lead_client.call(SYNC, 5, {"group_id": group, "generation_id": leader.generation_id,
                                         "member_id": leader.member_id, "assignments": []})
        await pending


def test_static_member_rejoin_fences_the_old_member_id(broker: BrokerProcess) -> None:
    """KIP-345 on the wire: the same group.instance.id joining again gets a new member id and the
    same generation; the old id is FENCED_INSTANCE_ID; LeaveGroup by instance id removes it."""
    bs = broker.bootstrap
    first = wire(bs, JOIN, 9, join_fields("wire-static", instance="box-1"))
    assert err(first.error_code) == ErrorCode.none  # static members skip MEMBER_ID_REQUIRED
    sync(bs, "wire-static", first.member_id, 1, {first.member_id: b"A"}, instance="box-1")
    again = wire(bs, JOIN, 9, join_fields("wire-static", instance="box-1"))
    assert err(again.error_code) == ErrorCode.none and again.member_id != first.member_id
    assert (again.generation_id, again.skip_assignment) == (1, True)
    kept = sync(bs, "wire-static", again.member_id, 1, instance="box-1")
    assert kept.assignment == b"A"
    assert heartbeat(bs, "wire-static", first.member_id, 1, "box-1") == ErrorCode.fenced_instance_id
    left = wire(bs, LEAVE, 5, {"group_id": "wire-static", "members": [
        {"member_id": "", "group_instance_id": "box-1", "reason": None}]})
    assert err(left.members[0].error_code) == ErrorCode.none
    described = wire(bs, DESCRIBE, 5, {"groups": ["wire-static"], "include_authorized_operations": False})
    assert described.groups[0].group_state == "Empty"


def test_offset_commit_and_fetch_across_versions(broker: BrokerProcess) -> None:
    """Offsets committed at v2 (with retention), v8 and v10 (topic ids) read back at v1, v5,
    v7 (all topics), v8 (several groups) and v10; unknown topics and ids get their errors."""
    bs = broker.bootstrap
    tid = topic_id(bs, "wire-t")

    def commit(version: int, topics: list[dict[str, Any]], group: str = "wire-offsets") -> Any:
        return wire(bs, OFFSET_COMMIT, version, {
            "group_id": group, "generation_id_or_member_epoch": -1, "member_id": "",
            "group_instance_id": None, "retention_time": 60_000, "topics": topics})

    v2 = commit(2, [{"name": "wire-t", "partitions": [
        {"partition_index": 0, "committed_offset": 10, "committed_metadata": "v2"}]},
        {"name": "no-such-topic", "partitions": [
            {"partition_index": 0, "committed_offset": 1, "committed_metadata": None}]}])
    assert [[err(p.error_code) for p in t.partitions] for t in v2.topics] == [
        [ErrorCode.none], [ErrorCode.unknown_topic_or_partition]]
    v8 = commit(8, [{"name": "wire-t", "partitions": [
        {"partition_index": 1, "committed_offset": 11, "committed_leader_epoch": 3,
         "committed_metadata": None},
        {"partition_index": 9, "committed_offset": 1, "committed_metadata": None}]}])
    assert [err(p.error_code) for p in v8.topics[0].partitions] == [ErrorCode.none, ErrorCode.unknown_topic_or_partition]
    v10 = commit(10, [{"topic_id": tid, "partitions": [
        {"partition_index": 2, "committed_offset": 12, "committed_metadata": "ten"}]}])
    assert v10.topics[0].topic_id == tid and err(v10.topics[0].partitions[0].error_code) == ErrorCode.none

    v1 = wire(bs, OFFSET_FETCH, 1, {"group_id": "wire-offsets", "topics": [
        {"name": "wire-t", "partition_indexes": [0, 1, 2]}]})
    assert [(p.committed_offset, p.metadata) for p in v1.topics[0].partitions] == [
        (10, "v2"), (11, ""), (12, "ten")]
    v5 = wire(bs, OFFSET_FETCH, 5, {"group_id": "wire-offsets", "topics": [
        {"name": "wire-t", "partition_indexes": [1]}]})
    assert v5.topics[0].partitions[0].committed_leader_epoch == 3
    v7 = wire(bs, OFFSET_FETCH, 7, {"group_id": "wire-offsets", "topics": None,
                                   "require_stable": True})
    assert err(v7.error_code) == ErrorCode.none
    assert sorted((t.name, p.partition_index, p.committed_offset)
                  for t in v7.topics for p in t.partitions) == [
        ("wire-t", 0, 10), ("wire-t", 1, 11), ("wire-t", 2, 12)]
    v8f = wire(bs, OFFSET_FETCH, 8, {"groups": [
        {"group_id": "wire-offsets", "topics": [{"name": "wire-t", "partition_indexes": [2]}]},
        {"group_id": "nobody", "topics": [{"name": "wire-t", "partition_indexes": [0]}]}],
        "require_stable": False})
    assert [g.topics[0].partitions[0].committed_offset for g in v8f.groups] == [12, -1]
    v10f = wire(bs, OFFSET_FETCH, 10, {"groups": [
        {"group_id": "wire-offsets", "member_id": None, "member_epoch": -1,
         "topics": [{"topic_id": tid, "partition_indexes": [0]},
                    {"topic_id": uuid.UUID(int=0xABCD), "partition_indexes": [0]}]}],
        "require_stable": False})
    parts = [(err(t.partitions[0].error_code), t.partitions[0].committed_offset)
             for t in v10f.groups[0].topics]
    assert parts == [(ErrorCode.none, 10), (ErrorCode.unknown_topic_id, -1)]


def test_describe_list_delete_groups_and_offset_delete(broker: BrokerProcess) -> None:
    """DescribeGroups (Dead before v6, GROUP_ID_NOT_FOUND from v6), ListGroups state and type
    filters, DeleteGroups (NON_EMPTY_GROUP while members remain) and OffsetDelete
    (GROUP_SUBSCRIBED_TO_TOPIC for a subscribed topic)."""
    bs = broker.bootstrap
    create_topic(bs, "wire-other", 1)
    joined = join_alone(bs, "wire-admin")
    member = joined.member_id
    sync(bs, "wire-admin", member, 1, {member: consumer_assignment({"wire-t": [0]})})
    for topic in ("wire-t", "wire-other"):
        wire(bs, OFFSET_COMMIT, 8, {"group_id": "wire-admin", "generation_id_or_member_epoch": 1,
                                    "member_id": member, "topics": [{"name": topic, "partitions": [
                                        {"partition_index": 0, "committed_offset": 5,
                                         "committed_metadata": None}]}]})

    old = wire(bs, DESCRIBE, 0, {"groups": ["nope"]})
    assert (err(old.groups[0].error_code), old.groups[0].group_state) == (ErrorCode.none, "Dead")
    new = wire(bs, DESCRIBE, 6, {"groups": ["nope", "wire-admin"],
                                 "include_authorized_operations": True})
    assert err(new.groups[0].error_code) == ErrorCode.group_id_not_found
    described = new.groups[1]
    assert (described.group_state, described.protocol_type, described.protocol_data) == (
        "Stable", "consumer", "range")
    assert described.members[0].member_id == member
    assert described.members[0].client_host.startswith("/127.0.0.1")
    assert described.authorized_operations > 0

    listed = wire(bs, LIST, 5, {"states_filter": ["stable"], "types_filter": []})
    assert "wire-admin" in {g.group_id for g in listed.groups}
    assert all(g.group_state == "Stable" and g.group_type == "classic" for g in listed.groups)
    assert wire(bs, LIST, 5, {"states_filter": [], "types_filter": ["consumer"]}).groups == ()

    busy = wire(bs, DELETE_GROUPS, 2, {"groups_names": ["wire-admin", "never-existed"]})
    assert [err(r.error_code) for r in busy.results] == [ErrorCode.non_empty_group, ErrorCode.group_id_not_found]
    deleted = wire(bs, OFFSET_DELETE, 0, {"group_id": "wire-admin", "topics": [
        {"name": "wire-t", "partitions": [{"partition_index": 0}]},
        {"name": "wire-other", "partitions": [{"partition_index": 0}]}]})
    assert [err(t.partitions[0].error_code) for t in deleted.topics] == [
        ErrorCode.group_subscribed_to_topic, ErrorCode.none]
    wire(bs, LEAVE, 5, {"group_id": "wire-admin", "members": [
        {"member_id": member, "group_instance_id": None, "reason": None}]})
    gone = wire(bs, DELETE_GROUPS, 2, {"groups_names": ["wire-admin"]})
    assert err(gone.results[0].error_code) == ErrorCode.none
    after = wire(bs, OFFSET_FETCH, 7, {"group_id": "wire-admin", "topics": None})
    assert after.topics == ()
    missing = wire(bs, OFFSET_DELETE, 0, {"group_id": "wire-admin", "topics": []})
    assert err(missing.error_code) == ErrorCode.group_id_not_found


@pytest.mark.parametrize("how", ["restart", "kill"])
def test_group_and_offsets_survive_a_broker_restart(tmp_path: Path, how: str) -> None:
    """After a clean restart or a SIGKILL the group comes back Stable at its generation (its
    member's heartbeats keep succeeding) and committed offsets are still there."""
    with BrokerProcess(overrides=SETTINGS, data_dir=tmp_path) as process:
        bs = process.bootstrap
        create_topic(bs, "durable", 1)
        joined = join_alone(bs, "durable-group")
        sync(bs, "durable-group", joined.member_id, 1, {joined.member_id: b"x"})
        wire(bs, OFFSET_COMMIT, 8, {"group_id": "durable-group", "generation_id_or_member_epoch": 1,
                                    "member_id": joined.member_id, "topics": [{"name": "durable",
                                    "partitions": [{"partition_index": 0, "committed_offset": 77,
                                                    "committed_metadata": "kept"}]}]})
        if how == "kill":
            process.kill()
            process.start()
        else:
            process.restart()
        assert heartbeat(bs, "durable-group", joined.member_id, 1) == ErrorCode.none
        fetched = wire(bs, OFFSET_FETCH, 7, {"group_id": "durable-group", "topics": None})
        partition = fetched.topics[0].partitions[0]
        assert (partition.committed_offset, partition.metadata) == (77, "kept")
