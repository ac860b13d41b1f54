"""The controller's decisions, as a pure state machine over the metadata image.

Theory of operation (after KRaft's QuorumController, KIP-631):

* The controller owns the metadata log. Every decision is a list of records appended through the
  ``append`` callback (which makes them durable and returns the offset of the last one) and then
  applied to :attr:`ControllerCore.image`. Nothing else changes controller state, so a restarted
  controller that replays its log is exactly where it was, minus broker sessions.
* **Brokers** register (``RegisterBroker``, fenced), then heartbeat. A broker is unfenced once its
  metadata fetch has caught up to its own registration, and fenced again when it misses
  heartbeats for ``broker.session.timeout.ms``, asks for a controlled shutdown, or re-registers
  after a restart. The broker epoch (the offset of its registration) tells incarnations apart.
* **Fencing a broker** moves leadership of every partition it led to a live ISR member (clean
  election) and removes it from every ISR that has another member. A partition with no live ISR
  member goes offline unless unclean election is allowed (see :mod:`.election`).
* **Unfencing a broker** elects leaders for offline partitions it can lead.
* **ISR changes** come only from the partition leader (AlterPartition, KIP-497) and carry the
  leader epoch and partition epoch the leader saw; a stale request is refused, which fences a
  deposed leader that has not yet heard it was replaced.
* Every leader change bumps the leader epoch; every change bumps the partition epoch.

The controller is a single node here: while it is down, nothing is elected and no ISR changes,
but nothing already committed is lost and no two leaders can be elected for one epoch.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence

import attrs
from kio.schema.errors import ErrorCode

from reference_broker.controller.election import elect_leader
from reference_broker.controller.placement import PlacementError, assign_replicas
from reference_broker.metadata.image import BrokerState, MetadataImage, TopicState
from reference_broker.metadata.records import (
    NO_LEADER,
    Endpoint,
    FenceBroker,
    MetadataRecord,
    PartitionRecord,
    ProducerIdsRecord,
    RegisterBroker,
    RemoveTopic,
    TopicRecord,
    UnfenceBroker,
    configs_tuple,
)

Append = Callable[[Sequence[MetadataRecord]], int]


class ControllerError(Exception):
    """A request refused with a Kafka error (``error``)."""

    def __init__(self, error: ErrorCode, message: str = "") -> None:
        super().__init__(message or error.name)
        self.error = error
        self.message = message


@attrs.frozen(slots=True)
class ControllerSettings:
    """The broker keys the controller needs (Kafka's names in the comments)."""

    session_timeout_ms: int = 9000  # broker.session.timeout.ms
    unclean_leader_election: bool = False  # unclean.leader.election.enable (broker default)
    producer_id_block_size: int = 1000


@attrs.frozen(slots=True)
class HeartbeatResult:
    is_caught_up: bool
    is_fenced: bool
    should_shut_down: bool


class ControllerCore:
    """Decisions over a :class:`MetadataImage`; see the module docstring."""

    def __init__(
        self, settings: ControllerSettings, image: MetadataImage, append: Append, now_ms: int
    ) -> None:
        self.settings = settings
        self.image = image
        self._append = append
        # Sessions are not in the log: after a controller restart every registered broker gets a
        # full session timeout to heartbeat again before it is fenced.
        self._last_heartbeat: dict[int, int] = {node: now_ms for node in image.brokers}
        self._shutting_down: set[int] = set()

    # --- committing ------------------------------------------------------------------------------

    def _commit(self, records: Sequence[MetadataRecord]) -> None:
        if not records:
            return
        last = self._append(records)
        first = last - len(records) + 1
        for offset, record in enumerate(records, start=first):
            self.image.apply(record, offset)

    # --- broker lifecycle ------------------------------------------------------------------------

    def register_broker(
        self, node_id: int, incarnation_id: str, endpoints: Iterable[Endpoint], now_ms: int
    ) -> int:
        """Register (or re-register) a broker, fenced; returns its broker epoch."""
        existing = self.image.brokers.get(node_id)
        if existing is not None and existing.incarnation_id == incarnation_id:
            self._last_heartbeat[node_id] = now_ms
            return existing.broker_epoch  # a retried registration of the same process
        epoch = self.image.offset + 1  # the offset the RegisterBroker record is about to get
        records: list[MetadataRecord] = [
            RegisterBroker(node_id, epoch, incarnation_id, tuple(endpoints))
        ]
        self._commit(records)
        # A restarted broker lost its in-memory state: treat it like a failed one.
        self._commit(self._leave_partitions(node_id))
        self._last_heartbeat[node_id] = now_ms
        self._shutting_down.discard(node_id)
        return epoch

    def heartbeat(
        self, node_id: int, broker_epoch: int, metadata_offset: int, want_shut_down: bool,
        now_ms: int,
    ) -> HeartbeatResult:
        broker = self._broker(node_id, broker_epoch)
        self._last_heartbeat[node_id] = now_ms
        caught_up = metadata_offset >= broker_epoch
        if want_shut_down:
            self._shutting_down.add(node_id)
            if not broker.fenced:
                self._commit([FenceBroker(node_id, broker_epoch), *self._leave_partitions(node_id)])
            return HeartbeatResult(caught_up, True, not self._leads_anything(node_id))
        if broker.fenced and caught_up and node_id not in self._shutting_down:
            self._commit([UnfenceBroker(node_id, broker_epoch)])
            self._commit(self._elect_offline_partitions())
        return HeartbeatResult(caught_up, self.image.brokers[node_id].fenced, False)

    def tick(self, now_ms: int) -> None:
        """Fence brokers whose session expired; retry elections for offline partitions."""
        timeout = self.settings.session_timeout_ms
        for broker in list(self.image.brokers.values()):
            last = self._last_heartbeat.get(broker.node_id, now_ms)
            if not broker.fenced and now_ms - last > timeout:
                self._commit([FenceBroker(broker.node_id, broker.broker_epoch),
                              *self._leave_partitions(broker.node_id)])
        self._commit(self._elect_offline_partitions())

    def _broker(self, node_id: int, broker_epoch: int) -> BrokerState:
        broker = self.image.brokers.get(node_id)
        if broker is None or broker.broker_epoch != broker_epoch:
            raise ControllerError(
                ErrorCode.stale_broker_epoch,
                f"broker {node_id} epoch {broker_epoch} is not the registered incarnation",
            )
        return broker

    def _leads_anything(self, node_id: int) -> bool:
        return any(p.leader == node_id for _, p in self.image.all_partitions())

    def _live(self) -> set[int]:
        return {b.node_id for b in self.image.live_brokers()}

    def _unclean_allowed(self, topic: TopicState) -> bool:
        value = topic.configs.get("unclean.leader.election.enable")
        if value is None:
            return self.settings.unclean_leader_election
        return value.strip().lower() == "true"

    def _leave_partitions(self, node_id: int) -> list[MetadataRecord]:
        """Move leadership away from ``node_id`` and take it out of ISRs (it is fenced)."""
        live = self._live() - {node_id}
        records: list[MetadataRecord] = []
        for topic, partition in self.image.all_partitions():
            if partition.leader == node_id:
                election = elect_leader(partition.replicas, partition.isr, live,
                                        self._unclean_allowed(topic))
                records.append(_changed(partition, leader=election.leader, isr=election.isr))
            elif node_id in partition.isr and len(partition.isr) > 1:
                isr = tuple(n for n in partition.isr if n != node_id)
                records.append(_changed(partition, isr=isr))
        return records

    def _elect_offline_partitions(self) -> list[MetadataRecord]:
        live = self._live()
        records: list[MetadataRecord] = []
        for topic, partition in self.image.all_partitions():
            if partition.leader != NO_LEADER:
                continue
            election = elect_leader(partition.replicas, partition.isr, live,
                                    self._unclean_allowed(topic))
            if election.leader != NO_LEADER:
                records.append(_changed(partition, leader=election.leader, isr=election.isr))
        return records

    # --- ISR changes (AlterPartition) --------------------------------------------------------------

    def alter_partition(
        self, node_id: int, broker_epoch: int, topic_id: uuid.UUID, index: int,
        leader_epoch: int, partition_epoch: int, new_isr: Sequence[int],
    ) -> PartitionRecord:
        """Apply a leader's ISR change; returns the partition as it now stands."""
        self._broker(node_id, broker_epoch)
        topic = self.image.topics_by_id.get(topic_id)
        if topic is None:
            raise ControllerError(ErrorCode.unknown_topic_id, f"no topic with id {topic_id}")
        partition = topic.partitions.get(index)
        if partition is None:
            raise ControllerError(ErrorCode.unknown_topic_or_partition, f"{topic.name}-{index}")
        if partition.leader != node_id or partition.leader_epoch != leader_epoch:
            raise ControllerError(
                ErrorCode.fenced_leader_epoch,
                f"{topic.name}-{index} is led by {partition.leader} at epoch "
                f"{partition.leader_epoch}, not by {node_id} at epoch {leader_epoch}",
            )
        if partition.partition_epoch != partition_epoch:
            raise ControllerError(
                ErrorCode.invalid_update_version,
                f"{topic.name}-{index} is at partition epoch {partition.partition_epoch}, "
                f"not {partition_epoch}",
            )
        isr = tuple(dict.fromkeys(new_isr))
        if node_id not in isr:
            raise ControllerError(ErrorCode.invalid_request, "the new ISR must contain the leader")
        live = self._live()
        for replica in isr:
            if replica not in partition.replicas or (replica not in partition.isr and replica not in live):
                raise ControllerError(
                    ErrorCode.ineligible_replica, f"broker {replica} cannot join the ISR of {topic.name}-{index}"
                )
        if isr == partition.isr:
            return partition
        updated = _changed(partition, isr=isr)
        self._commit([updated])
        return updated

    # --- topics --------------------------------------------------------------------------------

    def create_topic(
        self, name: str, partitions: int, replication_factor: int, configs: Mapping[str, str],
        assignments: Sequence[Sequence[int]] | None = None, validate_only: bool = False,
    ) -> TopicState | None:
        """Create a topic (validated by the caller: name, configs); None when validate_only."""
        if self.image.topic(name) is not None:
            raise ControllerError(ErrorCode.topic_already_exists, f"Topic '{name}' already exists.")
        replicas = self._placement(name, 0, partitions, replication_factor, assignments)
        if validate_only:
            return None
        topic_id = uuid.uuid4()
        records: list[MetadataRecord] = [TopicRecord(name, topic_id, configs_tuple(configs))]
        records += [_new_partition(topic_id, index, r) for index, r in enumerate(replicas)]
        self._commit(records)
        return self.image.topics_by_id[topic_id]

    def delete_topic(self, topic: TopicState) -> None:
        self._commit([RemoveTopic(topic.topic_id)])

    def create_partitions(
        self, topic: TopicState, total: int, assignments: Sequence[Sequence[int]] | None,
        validate_only: bool,
    ) -> None:
        current = len(topic.partitions)
        if total <= current:
            raise ControllerError(
                ErrorCode.invalid_partitions,
                f"Topic currently has {current} partitions, which is higher than or equal to "
                f"the requested {total}.",
            )
        replication = len(next(iter(topic.partitions.values())).replicas) if topic.partitions else 1
        replicas = self._placement(topic.name, current, total - current, replication, assignments)
        if not validate_only:
            self._commit([_new_partition(topic.topic_id, current + i, r)
                          for i, r in enumerate(replicas)])

    def set_topic_configs(self, topic: TopicState, configs: Mapping[str, str]) -> None:
        self._commit([TopicRecord(topic.name, topic.topic_id, configs_tuple(configs))])
        # Turning unclean election on may let an offline partition elect at once.
        self._commit(self._elect_offline_partitions())

    def _placement(
        self, name: str, first: int, count: int, replication_factor: int,
        assignments: Sequence[Sequence[int]] | None,
    ) -> list[tuple[int, ...]]:
        if assignments:
            registered = set(self.image.brokers)
            for index, nodes in enumerate(assignments):
                unknown = [n for n in nodes if n not in registered]
                if unknown or not nodes or len(set(nodes)) != len(nodes):
                    raise ControllerError(
                        ErrorCode.invalid_replica_assignment,
                        f"partition {first + index}: replicas {list(nodes)} must be distinct "
                        f"registered brokers (registered: {sorted(registered)})",
                    )
            return [tuple(nodes) for nodes in assignments]
        try:
            return assign_replicas(name, first, count, replication_factor,
                                   [b.node_id for b in self.image.live_brokers()])
        except PlacementError as exc:
            raise ControllerError(ErrorCode.invalid_replication_factor, str(exc)) from None

    # --- producer ids ----------------------------------------------------------------------------

    def allocate_producer_ids(self, node_id: int, broker_epoch: int) -> tuple[int, int]:
        """A fresh block of producer ids (KIP-730): (first id, count)."""
        self._broker(node_id, broker_epoch)
        start = self.image.next_producer_id
        size = self.settings.producer_id_block_size
        self._commit([ProducerIdsRecord(start + size)])
        return start, size


def _new_partition(topic_id: uuid.UUID, index: int, replicas: tuple[int, ...]) -> PartitionRecord:
    return PartitionRecord(topic_id, index, replicas, replicas, replicas[0], 0, 0)


def _changed(
    partition: PartitionRecord, *, leader: int | None = None, isr: tuple[int, ...] | None = None
) -> PartitionRecord:
    """The next state of ``partition``: a new leader bumps the leader epoch; any change bumps
    the partition epoch."""
    new_leader = partition.leader if leader is None else leader
    return attrs.evolve(
        partition,
        leader=new_leader,
        isr=partition.isr if isr is None else isr,
        leader_epoch=partition.leader_epoch + (new_leader != partition.leader),
        partition_epoch=partition.partition_epoch + 1,
    )
