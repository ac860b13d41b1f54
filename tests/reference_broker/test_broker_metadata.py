"""Brokers driven by the metadata log, in one process: a controller node and brokers wired by a
scripted channel, so each test decides when requests are answered and records delivered (as
a remote controller would, late and in any interleaving)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from reference_broker.broker import Broker
from reference_broker.config import load_broker_config
from reference_broker.controller.node import ControllerNode
from reference_broker.controller_channel import (
    ControllerRequest,
    MetadataSink,
    ResponseCallback,
    controller_request,
)
from reference_broker.groups import OFFSETS_TOPIC, JoinRequest, OffsetValue
from reference_broker.groups.testing import Reply
from reference_broker.log.meta_properties import format_directory
from reference_broker.log.testing import batch, read_records, record_set
from reference_broker.protocol.api_keys import ApiKey
from reference_broker.protocol.codec import build_response
from reference_broker.replication import Role
from reference_broker.replication.partition import FetchPosition

CLUSTER = "scripted"
SESSION_MS = 1000
COMMON = {"broker.session.timeout.ms": str(SESSION_MS), "broker.heartbeat.interval.ms": "100",
          "group.initial.rebalance.delay.ms": "0"}


class ScriptedChannel:
    """A 'remote' controller channel whose requests wait until the test answers them."""

    def __init__(self, controller: ControllerNode) -> None:
        self.controller = controller
        self.sink: Broker | None = None
        self.pending: list[tuple[ControllerRequest, ResponseCallback]] = []

    @property
    def local(self) -> bool:
        return False

    def attach(self, sink: MetadataSink, now_ms: int) -> None:
        assert isinstance(sink, Broker)
        self.sink = sink

    def send(self, request: ControllerRequest, callback: ResponseCallback, now_ms: int) -> None:
        self.pending.append((request, callback))

    def tick(self, now_ms: int) -> None:
        return None

    def answer(self, now_ms: int) -> None:
        """The controller answers every pending request, in order."""
        pending, self.pending = self.pending, []
        for request, callback in pending:
            response = self.controller.handle(ApiKey(request.__api_key__), request, now_ms)
            callback(build_response(request.__api_key__, request.__version__, response))

    def deliver(self, now_ms: int) -> None:
        """The broker's metadata fetch returns everything it has not applied yet."""
        assert self.sink is not None
        records = list(self.controller.log.replay(self.sink.image.offset + 1))
        self.sink.apply_metadata(records, self.controller.log.end_offset, now_ms)


class Cluster:
    def __init__(self, root: Path, brokers: int, overrides: Mapping[str, str] | None = None) -> None:
        config = load_broker_config(overrides={
            **COMMON, "process.roles": "controller", "listeners": "CONTROLLER://127.0.0.1:0",
        }.items())
        self.controller = ControllerNode(config, root / "controller", CLUSTER, 0)
        self.channels: dict[int, ScriptedChannel] = {}
        self.brokers: dict[int, Broker] = {}
        for node in range(1, brokers + 1):
            directory = root / f"broker-{node}"
            format_directory(directory, CLUSTER, node)
            settings = {**COMMON, **(overrides or {}), "process.roles": "broker",
                        "node.id": str(node), "log.dirs": str(directory),
                        "listeners": f"PLAINTEXT://127.0.0.1:{9000 + node}",
                        "controller.quorum.voters": "0@127.0.0.1:9999"}
            channel = ScriptedChannel(self.controller)
            self.channels[node] = channel
            self.brokers[node] = Broker(load_broker_config(overrides=settings.items()), 0, channel)

    def settle(self, now_ms: int, nodes: tuple[int, ...] | None = None) -> None:
        """Several rounds of: brokers tick (heartbeats), the controller answers, records flow."""
        for _ in range(4):
            for node in nodes or tuple(self.brokers):
                self.brokers[node].tick(now_ms)
                self.channels[node].answer(now_ms)
                self.channels[node].deliver(now_ms)

    def create(self, name: str, assignments: list[list[int]], now_ms: int,
               configs: Mapping[str, str] | None = None) -> None:
        if configs is None:
            configs = {"cleanup.policy": "compact"} if name == OFFSETS_TOPIC else {}
        response = self.controller.handle(19, controller_request(19, {"topics": [{
            "name": name, "num_partitions": -1, "replication_factor": -1,
            "assignments": [{"partition_index": i, "broker_ids": nodes}
                            for i, nodes in enumerate(assignments)],
            "configs": [{"name": key, "value": value} for key, value in configs.items()]}]}),
            now_ms)
        assert response["topics"][0]["error_code"] == ErrorCode.none, response

    def close(self) -> None:
        for broker in self.brokers.values():
            broker.close()
        self.controller.close()


def follower_fetch(leader: Broker, follower: Broker, topic: str, index: int, now_ms: int) -> None:
    """One fetch round of ``follower`` at ``leader`` for one partition, as the fetcher does."""
    led, following = leader.partition(topic, index), follower.partition(topic, index)
    assert led is not None and following is not None
    request = following.follower_request()
    assert isinstance(request, FetchPosition), request
    read = led.read_for_follower(following.node_id, request.fetch_offset,
                                 request.last_fetched_epoch, request.current_leader_epoch,
                                 1 << 20, now_ms)
    following.on_fetch_response(request, ErrorCode.none, read.high_watermark, read.log_start_offset,
                                read.records, read.diverging_epoch, now_ms)


@pytest.fixture
def cluster(tmp_path: Path) -> Any:
    running = Cluster(tmp_path, 2)
    for broker in running.brokers.values():
        broker.lifecycle.start(0)
    running.settle(0)
    yield running
    running.close()


def test_a_broker_takes_no_role_before_it_has_caught_up_past_its_registration(
        tmp_path: Path) -> None:
    """Records delivered before the registration is answered build the image but open no
    partition; once registered and caught up the broker takes its roles."""
    scripted = Cluster(tmp_path, 1)
    try:
        broker, channel = scripted.brokers[1], scripted.channels[1]
        broker.lifecycle.start(0)
        channel.answer(0)  # registered (fenced)
        channel.deliver(0)
        broker.tick(0)
        channel.answer(0)  # heartbeat: caught up, unfenced
        scripted.create("t", [[1]], 0)
        fresh = Broker(broker.config, 0, channel2 := ScriptedChannel(scripted.controller))
        channel2.deliver(0)  # the whole log, but this incarnation is not registered yet
        assert fresh.image.topic("t") is not None and fresh.partition("t", 0) is None
        broker.close()
        fresh.lifecycle.start(0)
        channel2.answer(0)
        assert fresh.partition("t", 0) is None  # registered, but not caught up past it
        channel2.deliver(0)
        partition = fresh.partition("t", 0)
        assert partition is not None and partition.role is Role.FOLLOWER  # offline until unfenced
        fresh.tick(0)
        channel2.answer(0)
        channel2.deliver(0)
        assert fresh.partition("t", 0) is partition and partition.role is Role.LEADER
        fresh.close()
    finally:
        scripted.controller.close()


def test_roles_follow_the_metadata_and_a_fenced_leader_is_replaced(cluster: Cluster) -> None:
    """Each broker leads or follows as the image says; when the leader's session expires the
    controller elects the other replica at a higher epoch, which the survivor applies at once
    and the old leader only once it hears of it (the window leader epochs fence)."""
    cluster.create("t", [[1, 2]], 0)
    cluster.settle(0)
    one, two = cluster.brokers[1].partition("t", 0), cluster.brokers[2].partition("t", 0)
    assert one is not None and two is not None
    assert (one.role, two.role) == (Role.LEADER, Role.FOLLOWER)
    assert cluster.brokers[2].leader_partition("t", 0) == (None, ErrorCode.not_leader_or_follower)
    assert cluster.brokers[2].leader_partition("nope", 0) == (None, ErrorCode.unknown_topic_or_partition)
    epoch = one.leader_epoch
    cluster.settle(SESSION_MS - 100, nodes=(2,))  # broker 1 falls silent
    cluster.controller.tick(SESSION_MS + 200)
    cluster.channels[2].deliver(SESSION_MS + 200)
    assert two.role is Role.LEADER and two.leader_epoch == epoch + 1
    assert one.role is Role.LEADER  # has not heard yet
    cluster.channels[1].deliver(SESSION_MS + 200)
    assert one.role is Role.FOLLOWER and one.leader_id == 2


def test_deleting_a_topic_removes_its_data_and_a_restart_removes_strays(
        cluster: Cluster, tmp_path: Path) -> None:
    """A RemoveTopic deletes the partition directories of every replica; a directory of a
    topic deleted while its broker was down is removed when that broker catches up."""
    cluster.create("gone", [[1, 2]], 0)
    cluster.create("stray", [[1, 2]], 0)
    cluster.settle(0)
    assert (tmp_path / "broker-1" / "gone-0").is_dir()
    cluster.controller.core.delete_topic(cluster.controller.image.topics_by_name["gone"])
    cluster.settle(0)
    assert not (tmp_path / "broker-1" / "gone-0").exists()
    assert not (tmp_path / "broker-2" / "gone-0").exists()
    config = cluster.brokers[2].config
    cluster.brokers[2].close()
    cluster.controller.core.delete_topic(cluster.controller.image.topics_by_name["stray"])
    assert (tmp_path / "broker-2" / "stray-0").is_dir()
    channel = ScriptedChannel(cluster.controller)
    restarted = Broker(config, 0, channel)
    cluster.brokers[2], cluster.channels[2] = restarted, channel
    restarted.lifecycle.start(0)
    cluster.settle(0)
    assert not (tmp_path / "broker-2" / "stray-0").exists()
    assert (tmp_path / "broker-2" / "__cluster_metadata-0").exists() is False  # brokers keep none


def test_a_recreated_topic_never_sees_the_old_topics_data(cluster: Cluster, tmp_path: Path) -> None:
    """A directory named like a new topic's partition but holding another topic id (a topic of
    the same name deleted while the broker was away) is emptied before use."""
    cluster.create("again", [[1]], 0)
    cluster.settle(0)
    partition = cluster.brokers[1].partition("again", 0)
    assert partition is not None
    old_id = (tmp_path / "broker-1" / "again-0" / "partition.metadata").read_text()
    (tmp_path / "broker-1" / "again-0" / "old-data.marker").write_text("x")
    cluster.brokers[1].close()
    cluster.controller.core.delete_topic(cluster.controller.image.topics_by_name["again"])
    cluster.create("again", [[1]], 0)
    channel = ScriptedChannel(cluster.controller)
    restarted = Broker(cluster.brokers[1].config, 0, channel)
    cluster.brokers[1], cluster.channels[1] = restarted, channel
    restarted.lifecycle.start(0)
    cluster.settle(0)
    assert (tmp_path / "broker-1" / "again-0" / "partition.metadata").read_text() != old_id
    assert not (tmp_path / "broker-1" / "again-0" / "old-data.marker").exists()


def test_the_coordinator_follows_leadership_of_the_offsets_partition(cluster: Cluster) -> None:
    """Only the leader of a group's offsets partition coordinates it; when leadership moves
    the old leader unloads the group (a parked JoinGroup is answered NOT_COORDINATOR) and the
    new one serves it."""
    cluster.create(OFFSETS_TOPIC, [[1, 2]], 0)
    cluster.settle(0)
    one, two = cluster.brokers[1], cluster.brokers[2]
    assert one.groups.coordinator_error("g", 0) is None
    assert two.groups.coordinator_error("g", 0) == ErrorCode.not_coordinator
    committed: Reply[Any] = Reply()
    one.groups.commit_offsets("g", -1, "", None, {("t", 0): OffsetValue(3)}, 8, 0, committed)
    follower_fetch(one, two, OFFSETS_TOPIC, 0, 0)  # brings the commit
    follower_fetch(one, two, OFFSETS_TOPIC, 0, 0)  # tells the leader the follower has it
    assert committed.result == {("t", 0): ErrorCode.none}
    parked: Reply[Any] = Reply()
    first: Reply[Any] = Reply()
    one.groups.join_group(JoinRequest("g", "", None, "consumer", (("range", b""),), 10_000,
                                      60_000, require_known_member_id=False), 0, first)
    assert first.done  # the first member's join completes at once (no initial delay)
    one.groups.join_group(JoinRequest("g", "", None, "consumer", (("range", b""),), 10_000,
                                      60_000, require_known_member_id=False), 0, parked)
    assert not parked.done  # waits for the first member to rejoin
    cluster.settle(SESSION_MS - 100, nodes=(2,))
    cluster.controller.tick(SESSION_MS + 200)
    cluster.channels[1].deliver(SESSION_MS + 200)
    cluster.channels[2].deliver(SESSION_MS + 200)
    assert one.groups.coordinator_error("g", 0) == ErrorCode.not_coordinator
    assert one.groups.group("g") is None
    assert two.groups.coordinator_error("g", 0) is None
    assert parked.calls and parked.calls[-1] is not None
    assert parked.calls[-1].error == ErrorCode.not_coordinator
    assert two.groups.fetch_offsets("g", [("t", 0)]) == [(("t", 0), OffsetValue(3))]


def test_a_commit_is_answered_once_the_isr_has_it_and_is_lost_with_its_coordinator(
        cluster: Cluster) -> None:
    """With __consumer_offsets on brokers 1 and 2 (ISR of two), OffsetCommit at the leader waits
    until the follower has fetched the record (OffsetFetch does not show it meanwhile); a commit
    still waiting when leadership moves is answered NOT_COORDINATOR and the new coordinator
    does not have it, so no acknowledged commit is lost."""
    cluster.create(OFFSETS_TOPIC, [[1, 2]], 0)
    cluster.settle(0)
    one, two = cluster.brokers[1], cluster.brokers[2]
    first: Reply[Any] = Reply()
    one.groups.commit_offsets("g", -1, "", None, {("t", 0): OffsetValue(5)}, 8, 0, first)
    assert not first.done
    assert one.groups.fetch_offsets("g", [("t", 0)]) == [(("t", 0), None)]
    follower_fetch(one, two, OFFSETS_TOPIC, 0, 10)
    assert not first.done  # the follower has it, but the leader does not know yet
    follower_fetch(one, two, OFFSETS_TOPIC, 0, 20)
    assert first.result == {("t", 0): ErrorCode.none}
    assert one.groups.fetch_offsets("g", [("t", 0)]) == [(("t", 0), OffsetValue(5))]
    second: Reply[Any] = Reply()
    one.groups.commit_offsets("g", -1, "", None, {("t", 0): OffsetValue(9)}, 8, 30, second)
    assert not second.done
    cluster.settle(SESSION_MS - 100, nodes=(2,))  # broker 1 stops heartbeating
    cluster.controller.tick(SESSION_MS + 200)
    cluster.channels[1].deliver(SESSION_MS + 200)
    cluster.channels[2].deliver(SESSION_MS + 200)
    assert second.result == {("t", 0): ErrorCode.not_coordinator}
    assert two.groups.coordinator_error("g", 0) is None
    assert two.groups.fetch_offsets("g", [("t", 0)]) == [(("t", 0), OffsetValue(5))]


def test_peer_addresses_come_from_registrations_unless_overridden(tmp_path: Path) -> None:
    """A broker reaches a peer at its registered inter-broker address, or at the address
    kconform.replica.peer.addresses names for that peer (one per directed link)."""
    scripted = Cluster(tmp_path, 3, {"kconform.replica.peer.addresses": "3@proxy:7003"})
    try:
        for broker in scripted.brokers.values():
            broker.lifecycle.start(0)
        scripted.settle(0)
        one = scripted.brokers[1]
        assert one.peer_address(2) == ("127.0.0.1", 9002)
        assert one.peer_address(3) == ("proxy", 7003)
        assert one.peer_address(4) is None
    finally:
        scripted.close()


def test_producer_ids_come_in_blocks_from_the_controller(cluster: Cluster) -> None:
    """InitProducerId's ids come from controller blocks: a broker waits for its first block,
    then hands out ids from it; two brokers never share an id."""
    got: list[int | None] = []
    one, two = cluster.brokers[1], cluster.brokers[2]
    one.allocate_producer_id(got.append, 0)
    assert got == []  # waiting for the controller
    cluster.channels[1].answer(0)
    one.allocate_producer_id(got.append, 0)
    two.allocate_producer_id(got.append, 0)
    cluster.channels[2].answer(0)
    assert len(got) == 3 and len(set(got)) == 3 and None not in got
    assert got[1] == got[0] + 1


def test_the_cleaner_keeps_a_value_superseded_only_above_the_high_watermark(cluster: Cluster) -> None:
    """The leader's cleaner stops at the high watermark (Kafka's first uncleanable offset is at
    most the last stable offset, itself at most the high watermark): a record its follower has
    not fetched yet may be truncated away after a leader change, so it must not supersede the
    older value. Once the follower has it, the older value goes."""
    cluster.create("compacted", [[1, 2]], 0, {
        "cleanup.policy": "compact", "segment.bytes": "100", "min.cleanable.dirty.ratio": "0.01",
    })
    cluster.settle(0)
    one, two = cluster.brokers[1], cluster.brokers[2]
    leader = one.partition("compacted", 0)
    assert leader is not None and leader.is_leader

    def put(key: bytes, value: bytes) -> None:
        leader.append_as_leader(*record_set(batch(value, keys=[key], timestamps=[0])), 0)

    def replicate() -> None:
        follower = two.partition("compacted", 0)
        assert follower is not None
        while follower.log_end_offset < leader.log_end_offset:
            follower_fetch(one, two, "compacted", 0, 0)  # brings a segment's records
        follower_fetch(one, two, "compacted", 0, 0)  # tells the leader the follower has them

    put(b"k", b"v1")
    put(b"other", b"x")
    replicate()
    put(b"k", b"v2")
    put(b"filler", b"y")
    assert leader.high_watermark == 2
    one.run_cleaner(10)
    assert [record.value for record in read_records(leader.log)] == [b"v1", b"x", b"v2", b"y"]
    replicate()
    one.run_cleaner(20)
    assert [record.value for record in read_records(leader.log)] == [b"x", b"v2", b"y"]
