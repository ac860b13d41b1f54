"""The controller's decisions: registration, fencing, clean and unclean elections, ISR changes."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from kio.schema.errors import ErrorCode

from reference_broker.controller.core import ControllerCore, ControllerError, ControllerSettings
from reference_broker.controller.election import elect_leader
from reference_broker.metadata.image import MetadataImage
from reference_broker.metadata.records import NO_LEADER, Endpoint, MetadataRecord, decode, encode

SESSION_MS = 1000


class MemoryLog:
    """The metadata log as a list; checks every record survives encoding."""

    def __init__(self) -> None:
        self.records: list[MetadataRecord] = []

    def append(self, records: Sequence[MetadataRecord]) -> int:
        for record in records:
            assert decode(encode(record)) == record
        self.records += records
        return len(self.records) - 1


def cluster(brokers: int = 3, unclean: bool = False) -> tuple[ControllerCore, dict[int, int]]:
    """A controller with ``brokers`` registered, caught-up, unfenced brokers."""
    log = MemoryLog()
    core = ControllerCore(ControllerSettings(SESSION_MS, unclean), MetadataImage(), log.append, 0)
    epochs = {}
    for node in range(1, brokers + 1):
        epochs[node] = core.register_broker(node, f"inc-{node}", [Endpoint("PLAINTEXT", "h", node)], 0)
    for node, epoch in epochs.items():
        core.heartbeat(node, epoch, core.image.offset, False, 0)
    return core, epochs


def beat(core: ControllerCore, epochs: dict[int, int], nodes: Sequence[int], now: int) -> None:
    for node in nodes:
        core.heartbeat(node, epochs[node], core.image.offset, False, now)


def test_registered_brokers_are_fenced_until_caught_up() -> None:
    """A new broker is fenced until a heartbeat reports it has read its own registration."""
    log = MemoryLog()
    core = ControllerCore(ControllerSettings(), MetadataImage(), log.append, 0)
    epoch = core.register_broker(1, "a", [], 0)
    assert core.image.brokers[1].fenced
    assert core.heartbeat(1, epoch, epoch - 1, False, 10).is_fenced
    assert not core.heartbeat(1, epoch, epoch, False, 20).is_fenced


def test_topic_replicas_are_spread_and_leaders_differ() -> None:
    """Three partitions of RF 3 on three brokers get three different leaders, full ISRs."""
    core, _ = cluster()
    topic = core.create_topic("t", 3, 3, {})
    assert topic is not None
    leaders = {p.leader for p in topic.partitions.values()}
    assert leaders == {1, 2, 3}
    for p in topic.partitions.values():
        assert sorted(p.replicas) == [1, 2, 3] and p.isr == p.replicas and p.leader_epoch == 0


def test_replication_factor_above_live_brokers_is_refused() -> None:
    """RF 4 on three brokers is INVALID_REPLICATION_FACTOR."""
    core, _ = cluster()
    with pytest.raises(ControllerError) as info:
        core.create_topic("t", 1, 4, {})
    assert info.value.error == ErrorCode.invalid_replication_factor


def test_missed_heartbeats_fence_the_leader_and_elect_from_the_isr() -> None:
    """A leader that stops heartbeating is fenced after the session timeout; an ISR member
    leads at the next leader epoch and the dead broker leaves the ISR."""
    core, epochs = cluster()
    topic = core.create_topic("t", 1, 3, {})
    assert topic is not None
    before = topic.partitions[0]
    survivors = [n for n in epochs if n != before.leader]
    beat(core, epochs, survivors, SESSION_MS)
    core.tick(SESSION_MS + 1)
    after = core.image.topics_by_name["t"].partitions[0]
    assert after.leader in survivors and after.leader_epoch == before.leader_epoch + 1
    assert before.leader not in after.isr


def test_no_live_isr_member_leaves_the_partition_offline_without_unclean_election() -> None:
    """With unclean election off, a partition whose ISR is all dead goes offline, keeps its
    last ISR, and comes back led by that ISR member when it returns."""
    core, epochs = cluster(2)
    core.create_topic("t", 1, 2, {}, assignments=[[1, 2]])
    partition = core.image.topics_by_name["t"].partitions[0]
    core.alter_partition(1, epochs[1], partition.topic_id, 0, partition.leader_epoch,
                         partition.partition_epoch, [1])  # 2 fell behind
    beat(core, epochs, [2], SESSION_MS)
    core.tick(SESSION_MS + 1)  # 1 dies
    offline = core.image.topics_by_name["t"].partitions[0]
    assert offline.leader == NO_LEADER and offline.isr == (1,)
    epochs[1] = core.register_broker(1, "inc-1-again", [], SESSION_MS + 2)
    core.heartbeat(1, epochs[1], core.image.offset, False, SESSION_MS + 3)
    back = core.image.topics_by_name["t"].partitions[0]
    assert back.leader == 1 and back.leader_epoch > offline.leader_epoch


def test_unclean_election_elects_a_replica_outside_the_isr() -> None:
    """With unclean election on (topic level), a live out-of-sync replica becomes leader and
    the ISR shrinks to it."""
    core, epochs = cluster(2)
    core.create_topic("t", 1, 2, {"unclean.leader.election.enable": "true"}, assignments=[[1, 2]])
    partition = core.image.topics_by_name["t"].partitions[0]
    core.alter_partition(1, epochs[1], partition.topic_id, 0, 0, partition.partition_epoch, [1])
    beat(core, epochs, [2], SESSION_MS)
    core.tick(SESSION_MS + 1)
    after = core.image.topics_by_name["t"].partitions[0]
    assert (after.leader, after.isr) == (2, (2,))


def test_stale_alter_partition_is_fenced() -> None:
    """An ISR change from a deposed leader (old leader epoch) or with an old partition epoch
    is refused."""
    core, epochs = cluster()
    core.create_topic("t", 1, 3, {}, assignments=[[1, 2, 3]])
    p = core.image.topics_by_name["t"].partitions[0]
    with pytest.raises(ControllerError) as stale_version:
        core.alter_partition(1, epochs[1], p.topic_id, 0, p.leader_epoch, p.partition_epoch + 5, [1, 2])
    assert stale_version.value.error == ErrorCode.invalid_update_version
    beat(core, epochs, [2, 3], SESSION_MS)
    core.tick(SESSION_MS + 1)  # 1 is replaced
    with pytest.raises(ControllerError) as deposed:
        core.alter_partition(1, epochs[1], p.topic_id, 0, p.leader_epoch, p.partition_epoch, [1, 2])
    assert deposed.value.error == ErrorCode.fenced_leader_epoch


def test_controlled_shutdown_moves_leadership_first() -> None:
    """A broker asking to shut down is fenced, loses its leaderships and ISR places, and is
    told it may stop once it leads nothing."""
    core, epochs = cluster()
    core.create_topic("t", 3, 3, {})
    result = core.heartbeat(1, epochs[1], core.image.offset, True, 5)
    assert result.should_shut_down and result.is_fenced
    for _, p in core.image.all_partitions():
        assert p.leader != 1 and 1 not in p.isr


def test_producer_id_blocks_never_overlap() -> None:
    """Each AllocateProducerIds hands out a fresh block."""
    core, epochs = cluster()
    first = core.allocate_producer_ids(1, epochs[1])
    second = core.allocate_producer_ids(2, epochs[2])
    assert first[0] + first[1] <= second[0]


def test_election_prefers_replica_order() -> None:
    """Clean election picks the first live ISR member in replica order."""
    assert elect_leader((3, 1, 2), (1, 2, 3), {1, 2}, False).leader == 1
    assert elect_leader((3, 1, 2), (3,), {1, 2}, False).leader == NO_LEADER
    assert elect_leader((3, 1, 2), (3,), {1, 2}, True).leader == 1
