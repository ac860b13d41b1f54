"""The broker's state, driven by the cluster metadata log, with no sockets and no clock of its own.

Theory of operation
===================

Every node is driven by the metadata log (KRaft, KIP-500/KIP-631). The controller decides;
the broker applies. :class:`Broker` holds a :class:`~reference_broker.metadata.image.MetadataImage`
replayed from the controller's log and reacts to what changes:

* a partition of which this node is a replica gets its
  :class:`~reference_broker.log.PartitionLog` opened (``<log.dirs>/<topic>-<partition>``, with
  Kafka's ``partition.metadata`` naming the topic id, so data of a deleted topic is never
  mistaken for a new topic of the same name);
* each change of a partition's record calls :meth:`Partition.become_leader` or
  :meth:`Partition.become_follower` with the leader, leader epoch, partition epoch, replicas and
  ISR it now has; leading a ``__consumer_offsets`` partition makes this node the coordinator of
  its groups (they are loaded from the partition), losing it unloads them;
* a removed topic's partitions are deleted, with the offsets groups committed for it;
* changed topic configs reach the partition logs.

The broker reaches the controller through a
:class:`~reference_broker.controller_channel.ControllerChannel`, with typed requests
(:class:`~reference_broker.controller_client.ControllerClient`): in combined mode
(``process.roles=broker,controller``, a standalone node) the controller lives in this process
and answers at once; with ``process.roles=broker`` it is a remote process. Registration,
heartbeats and fencing are :class:`~reference_broker.broker_lifecycle.BrokerLifecycle`'s; topic
validation and creation :class:`~reference_broker.topic_admin.TopicAdmin`'s. Until the broker has
caught up with the log past its registration it applies no roles at all, so a restarted broker
never acts on leadership its previous incarnation held. Partition directories are read and
removed through :mod:`reference_broker.log.partition_dirs`.

Request handlers (:mod:`reference_broker.handlers`) call the operations here; the asyncio driver
(:mod:`reference_broker.drivers.broker_server`) passes the time in and schedules the periodic work.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from kio.schema.allocate_producer_ids.v0.response import AllocateProducerIdsResponse
from kio.schema.alter_partition.v3.response import AlterPartitionResponse
from kio.schema.errors import ErrorCode

from reference_broker.broker_lifecycle import BrokerLifecycle
from reference_broker.config import BrokerConfig, ConfigError, log_config_for_topic
from reference_broker.controller.node import ControllerNode
from reference_broker.controller_channel import (
    ControllerChannel,
    LocalControllerChannel,
    OffsetRecords,
)
from reference_broker.controller_client import ControllerClient
from reference_broker.groups import OFFSETS_TOPIC, GroupConfig, GroupCoordinator, TopicOffsetsLog
from reference_broker.log import PartitionLog
from reference_broker.log.meta_properties import load_identity
from reference_broker.log.partition_dirs import (
    partition_dir,
    read_topic_id,
    remove_partition_dir,
    stored_partitions,
    topic_id_text,
    write_topic_id,
)
from reference_broker.metadata.image import MetadataImage, TopicState
from reference_broker.metadata.log import METADATA_DIR
from reference_broker.metadata.records import (
    PartitionRecord,
    RemoveTopic,
    TopicRecord,
)
from reference_broker.producers import ProducerIdBlocks
from reference_broker.records import RecordError
from reference_broker.replication import (
    IsrChange,
    Partition,
    PartitionState,
    ReplicationConfig,
    Role,
)
from reference_broker.topic_admin import METADATA_WAIT_MS, TopicAdmin
from reference_broker.topics import TopicsView
from reference_broker.transactions import (
    TRANSACTION_STATE_TOPIC,
    TransactionConfig,
    TransactionCoordinator,
)
from reference_broker.transactions.log_format import TopicPartition
from reference_broker.transactions.marker_channel import GONE, MarkerChannel, MarkerRequest
from reference_broker.transactions.verification import Verification, VerificationCallback

log = logging.getLogger(__name__)


class _MetadataWaiter:
    __slots__ = ("callback", "deadline_ms", "predicate")

    def __init__(self, predicate: Callable[[], bool], callback: Callable[[], None],
                 deadline_ms: int) -> None:
        self.predicate = predicate
        self.callback = callback
        self.deadline_ms = deadline_ms


class Broker:
    """A reference broker node over one data directory; see the module docstring."""

    def __init__(
        self, config: BrokerConfig, now_ms: int, channel: ControllerChannel | None = None
    ) -> None:
        if config.is_controller_only:
            raise ConfigError("process.roles=controller runs no broker (see controller_server)")
        self.config = config
        self.node_id = config.node_id
        self.data_dir = Path(config.log_dir)
        self.cluster_id = load_identity(self.data_dir, self.node_id, create=config.is_combined)
        self.image = MetadataImage()
        self.topics = TopicsView(self.image)
        self._producer_id_expiration_ms = int(config.get("producer.id.expiration.ms"))
        self._producer_expiry_interval_ms = int(
            config.get("producer.id.expiration.check.interval.ms")
        )
        self._next_producer_expiry_ms = now_ms + self._producer_expiry_interval_ms
        self._partitions: dict[tuple[str, int], Partition] = {}
        self._now_ms = now_ms  # the latest time seen, for answers that arrive without one
        self._replication_config = ReplicationConfig.from_broker(config.get)
        # Called when a partition's high watermark moves: the driver wakes parked fetches
        # (consumers may now read further, followers learn the new HW).
        self.on_high_watermark: Callable[[Partition], None] | None = None
        # listener name -> port actually bound (differs from the configured one for port 0)
        self.bound_ports: dict[str, int] = {}
        # InitProducerId's ids, in blocks the controller hands out (KIP-730).
        self.producer_ids = ProducerIdBlocks()
        # The group coordinator; it coordinates the groups of the __consumer_offsets partitions
        # this node leads, loading them when it becomes their leader.
        self.groups = GroupCoordinator(
            GroupConfig.from_broker(config.get), TopicOffsetsLog(self), now_ms, owned=()
        )
        # The transaction coordinator, likewise for the __transaction_state partitions; the
        # markers of decided transactions go to their partitions' leaders through the channel.
        self.transactions = TransactionCoordinator(
            TransactionConfig.from_broker(config.get),
            TopicOffsetsLog(self, TRANSACTION_STATE_TOPIC), self._transactional_producer_id, now_ms,
        )
        self.txn_markers = MarkerChannel(self.transactions.markers_written, self.transactions.owns)
        # KIP-890 part 1 questions for coordinators on other brokers, for the driver to send;
        # on_verification wakes it.
        self.verifications: list[Verification] = []
        self.on_verification: Callable[[], None] | None = None
        # (internal topic, partition) -> the leader epoch at which this node leads it (and
        # coordinates its groups or transactional ids)
        self._led_coordinator_partitions: dict[tuple[str, int], int] = {}
        self._published = False  # caught up past our registration: roles are being applied
        self._metadata_high_watermark = 0
        self._waiters: list[_MetadataWaiter] = []
        self.controller: ControllerNode | None = None
        if channel is None:
            if not config.is_combined:
                raise ConfigError(
                    "process.roles=broker: the broker needs its remote controller "
                    "(controller.quorum.voters); start it with kconform broker"
                )
            self.controller = ControllerNode(config, self.data_dir, self.cluster_id, now_ms)
            channel = LocalControllerChannel(self.controller)
        self.channel = channel
        self.controller_client = ControllerClient(channel, self.node_id)
        self.lifecycle = BrokerLifecycle(
            self.controller_client, self.cluster_id, int(config.get("broker.heartbeat.interval.ms")),
            self._advertised_listeners, lambda: self.image.offset, self._maybe_publish,
        )
        self.admin = TopicAdmin(config, self.topics, self.controller_client, channel.local,
                                lambda: len(self._partitions))
        channel.attach(self, now_ms)
        if channel.local:
            # Combined mode: register, catch up and be unfenced right here, so the node serves
            # its partitions as soon as it is constructed.
            self.lifecycle.start(now_ms)
            self.lifecycle.heartbeat(now_ms)

    # --- addresses ---------------------------------------------------------------------------

    def advertised_endpoint(self, listener: str) -> tuple[str, int]:
        """(host, port) clients are told to use for ``listener`` (advertised.listeners)."""
        for adv in self.config.advertised_listeners:
            if adv.name == listener:
                port = adv.port or self.bound_ports.get(listener, 0)
                if not self.config.is_set("advertised.listeners"):
                    port = self.bound_ports.get(listener, port)
                return adv.host, port
        # A listener without an advertised entry of its own advertises the first one.
        first = self.config.advertised_listeners[0]
        return first.host, first.port or self.bound_ports.get(first.name, 0)

    def endpoint_of(self, node_id: int, listener: str) -> tuple[str, int] | None:
        """Where clients reach broker ``node_id`` on ``listener``: its registered (advertised)
        address; this node's own is taken from its configuration (in combined mode it registers
        before it has bound a port)."""
        if node_id == self.node_id:
            return self.advertised_endpoint(listener)
        broker = self.image.brokers.get(node_id)
        if broker is None:
            return None
        endpoint = broker.endpoint(listener)
        return (endpoint.host, endpoint.port) if endpoint is not None else None

    def peer_address(self, node_id: int) -> tuple[str, int] | None:
        """The address this broker uses to reach broker ``node_id`` for replication:
        ``kconform.replica.peer.addresses`` if it names one (a proxy on that directed link),
        else the peer's registered ``inter.broker.listener.name`` address."""
        override = self.config.replica_peer_addresses.get(node_id)
        if override is not None:
            return override
        broker = self.image.brokers.get(node_id)
        if broker is None:
            return None
        endpoint = broker.endpoint(str(self.config.get("inter.broker.listener.name")).upper())
        return (endpoint.host, endpoint.port) if endpoint is not None else None

    def live_broker_ids(self) -> list[int]:
        return [broker.node_id for broker in self.image.live_brokers()]

    def _advertised_listeners(self) -> list[tuple[str, str, int]]:
        return [(adv.name, *self.advertised_endpoint(adv.name)) for adv in self.config.advertised_listeners]

    # --- the metadata log --------------------------------------------------------------------

    @property
    def caught_up(self) -> bool:
        return self._published

    def apply_metadata(self, records: OffsetRecords, high_watermark: int, now_ms: int) -> None:
        """Apply records of the metadata log (see the module docstring)."""
        self._now_ms = max(self._now_ms, now_ms)
        changed: dict[tuple[uuid.UUID, int], None] = {}
        removed: list[TopicState] = []
        reconfigured: dict[uuid.UUID, None] = {}
        for offset, record in records:
            if offset <= self.image.offset:
                continue  # already applied (a retried fetch)
            if isinstance(record, RemoveTopic):
                gone = self.image.topics_by_id.get(record.topic_id)
                if gone is not None:
                    removed.append(gone)
            elif isinstance(record, TopicRecord) and record.topic_id in self.image.topics_by_id:
                reconfigured[record.topic_id] = None
            elif isinstance(record, PartitionRecord):
                changed[(record.topic_id, record.partition)] = None
            self.image.apply(record, offset)
        self._metadata_high_watermark = max(self._metadata_high_watermark, high_watermark)
        self.topics.invalidate()
        if self._published:
            for state in removed:
                self._remove_topic(state, now_ms)
            for topic_id in reconfigured:
                self._reconfigure(topic_id)
            for topic_id, index in changed:
                self._reconcile(topic_id, index, now_ms)
        else:
            self._maybe_publish(now_ms)
        self._check_waiters(now_ms)

    def _maybe_publish(self, now_ms: int) -> None:
        """First catch-up past this incarnation's registration: drop stray partition
        directories, then take every role the image gives this node."""
        epoch = self.lifecycle.broker_epoch
        registered = epoch >= 0 and self.image.offset >= epoch
        if self._published or not registered:
            return
        if self.image.offset + 1 < self._metadata_high_watermark:
            return
        self._published = True
        log.info("broker %d caught up with the metadata log at offset %d",
                 self.node_id, self.image.offset)
        self._remove_strays()
        for state in list(self.image.topics_by_id.values()):
            for index in sorted(state.partitions):
                self._reconcile(state.topic_id, index, now_ms)
        self.lifecycle.heartbeat_soon()  # tell the controller at once: it unfences a caught-up broker

    def _remove_strays(self) -> None:
        """Delete partition directories of topics the metadata no longer has (deleted while
        this node was down) or of partitions not assigned here (Kafka's stray partitions)."""
        wanted = {
            (topic_id_text(state.topic_id), state.name, index)
            for state in self.image.topics_by_id.values()
            for index, record in state.partitions.items()
            if self.node_id in record.replicas
        }
        for stored in stored_partitions(self.data_dir, skip=METADATA_DIR):
            if (stored.topic_id, stored.topic, stored.index) not in wanted:
                log.info("removing stray partition directory %s", stored.directory)
                remove_partition_dir(stored.directory)

    def _open_partition(self, state: TopicState, index: int, now_ms: int) -> Partition:
        directory = partition_dir(self.data_dir, state.name, index)
        stored = read_topic_id(directory)
        if stored is not None and stored != topic_id_text(state.topic_id):
            # Data of a deleted topic with the same name: never serve it as this topic's.
            log.info("removing %s: it belongs to an older topic of the same name", directory)
            remove_partition_dir(directory, ignore_errors=False)
        plog = PartitionLog.open(
            directory,
            log_config_for_topic(self.config, state.configs),
            now_ms,
            producer_id_expiration_ms=self._producer_id_expiration_ms,
        )
        if stored is None:
            write_topic_id(directory, state.topic_id)
        partition = Partition(state.name, index, plog, node_id=self.node_id,
                              config=self._replication_config, now_ms=now_ms)
        partition.alter_isr = lambda change: self._propose_isr_change(partition, change)
        partition.on_high_watermark = self._high_watermark_moved
        self._partitions[(state.name, index)] = partition
        return partition

    def _high_watermark_moved(self, partition: Partition) -> None:
        if self.on_high_watermark is not None:
            self.on_high_watermark(partition)

    def appended_internally(self, partition: Partition) -> None:
        """Something appended to ``partition`` outside the moment a Produce request is
        dispatched, after which the driver wakes parked fetches itself (the group coordinator's
        records; a Produce that first waited for transaction verification): wake them, so
        followers parked at this leader fetch the records now rather than after
        ``replica.fetch.wait.max.ms``, as Kafka completes delayed fetches after every append. A
        commit waits for that replication."""
        self._high_watermark_moved(partition)

    def _propose_isr_change(self, partition: Partition, change: IsrChange) -> None:
        """A leader's ISR proposal goes to the controller (AlterPartition); the answer goes
        back to the partition."""

        def answered(error: ErrorCode, record: PartitionRecord | None) -> None:
            state = None if record is None else PartitionState(
                record.leader, record.leader_epoch, record.partition_epoch, record.isr)
            partition.complete_isr_change(change, error, state, self._now_ms)

        self.alter_partition(change.topic, change.partition, change.leader_epoch,
                             change.partition_epoch, change.new_isr, answered, self._now_ms)

    def _reconcile(self, topic_id: uuid.UUID, index: int, now_ms: int) -> None:
        """Take the role the image gives this node for one partition."""
        state = self.image.topics_by_id.get(topic_id)
        record = state.partitions.get(index) if state is not None else None
        if state is None or record is None:
            return
        key = (state.name, index)
        if self.node_id not in record.replicas:
            partition = self._partitions.pop(key, None)
            if partition is not None:  # moved away (not done by this controller today)
                self._coordinator_leadership(state.name, index, None, now_ms)
                partition.delete()
            return
        partition = self._partitions.get(key) or self._open_partition(state, index, now_ms)
        leads = record.leader == self.node_id
        if leads:
            partition.become_leader(self.node_id, record.leader_epoch, record.partition_epoch,
                                    record.replicas, record.isr, now_ms)
        else:
            partition.become_follower(record.leader, record.leader_epoch, record.partition_epoch,
                                      record.replicas, record.isr, now_ms)
        self._coordinator_leadership(state.name, index, record.leader_epoch if leads else None, now_ms)

    def _coordinator_leadership(self, topic: str, index: int, leader_epoch: int | None,
                                now_ms: int) -> None:
        """A broker coordinates the groups of the ``__consumer_offsets`` partitions it leads,
        and the transactional ids of the ``__transaction_state`` partitions it leads
        (``leader_epoch`` None: it does not lead). As Kafka's onElection/onResignation, a new
        leader epoch reloads them even if this node led before: another broker may have led
        (and written) in between. The leader epoch is the transaction coordinator's epoch,
        which its markers carry (KIP-98)."""
        if topic not in (OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC):
            return
        key = (topic, index)
        current = self._led_coordinator_partitions.get(key)
        if current is not None and current != leader_epoch:
            del self._led_coordinator_partitions[key]
            if topic == OFFSETS_TOPIC:
                self.groups.unload_partition(index)
            else:
                self.transactions.unload_partition(index, current)
        if leader_epoch is not None and current != leader_epoch:
            self._led_coordinator_partitions[key] = leader_epoch
            if topic == OFFSETS_TOPIC:
                self.groups.load_partition(index, now_ms)
            else:
                self.transactions.begin_loading(index, leader_epoch)
                self.transactions.load_partition(index, leader_epoch, now_ms)

    def _remove_topic(self, state: TopicState, now_ms: int) -> None:
        for index in sorted(state.partitions):
            self._coordinator_leadership(state.name, index, None, now_ms)
            partition = self._partitions.pop((state.name, index), None)
            if partition is not None:
                partition.delete()
        if state.name not in (OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC):
            self.groups.remove_topic_offsets(state.name, now_ms)
        log.info("deleted topic %s", state.name)

    def _reconfigure(self, topic_id: uuid.UUID) -> None:
        state = self.image.topics_by_id.get(topic_id)
        if state is None:
            return
        new_config = log_config_for_topic(self.config, state.configs)
        for index in state.partitions:
            partition = self._partitions.get((state.name, index))
            if partition is not None:
                partition.log.update_config(new_config)

    def after_metadata(self, predicate: Callable[[], bool], callback: Callable[[], None],
                       now_ms: int, timeout_ms: int = METADATA_WAIT_MS) -> None:
        """Call ``callback`` once this broker's metadata satisfies ``predicate`` (or after
        ``timeout_ms``): a forwarded CreateTopics answers only when this broker knows the topic."""
        if predicate():
            callback()
        else:
            self._waiters.append(_MetadataWaiter(predicate, callback, now_ms + timeout_ms))

    def _check_waiters(self, now_ms: int) -> None:
        if not self._waiters:
            return
        due = [w for w in self._waiters if w.predicate() or now_ms >= w.deadline_ms]
        if due:
            self._waiters = [w for w in self._waiters if w not in due]
            for waiter in due:
                waiter.callback()

    # --- partitions --------------------------------------------------------------------------

    def partition(self, topic: str, index: int) -> Partition | None:
        """The replica of ``topic``-``index`` this node hosts (leader or follower), if any."""
        return self._partitions.get((topic, index))

    def partitions(self) -> Iterator[Partition]:
        return iter(list(self._partitions.values()))

    def leader_partition(self, topic: str, index: int) -> tuple[Partition | None, ErrorCode]:
        """The partition if this node leads it, else the error a client gets (Kafka's
        ReplicaManager.getPartitionOrError): NOT_LEADER_OR_FOLLOWER for a partition that
        exists but is led elsewhere (or is offline), UNKNOWN_TOPIC_OR_PARTITION otherwise."""
        partition = self._partitions.get((topic, index))
        if partition is not None and partition.role is Role.LEADER:
            return partition, ErrorCode.none
        if self.image.partition(topic, index) is not None:
            return None, ErrorCode.not_leader_or_follower
        return None, ErrorCode.unknown_topic_or_partition

    def partition_record(self, topic: str, index: int) -> PartitionRecord | None:
        return self.image.partition(topic, index)

    # --- the controller: ISR changes and producer ids ------------------------------------------

    def alter_partition(
        self, topic: str, index: int, leader_epoch: int, partition_epoch: int,
        new_isr: Sequence[int], callback: Callable[[ErrorCode, PartitionRecord | None], None],
        now_ms: int,
    ) -> None:
        """Ask the controller to change a partition's ISR (AlterPartition, KIP-497), as its
        leader at ``leader_epoch``/``partition_epoch``. ``callback(error, state)`` gets
        NONE and the partition's new state, or an error (FENCED_LEADER_EPOCH,
        INVALID_UPDATE_VERSION, INELIGIBLE_REPLICA, REQUEST_TIMED_OUT when the controller
        is unreachable, ...) and None. It may run before this returns (combined mode). The
        change also arrives through the metadata log, as a become_leader call."""
        state = self.image.topic(topic)
        if state is None:
            callback(ErrorCode.unknown_topic_or_partition, None)
            return

        def answered(response: AlterPartitionResponse | None) -> None:
            if response is None:
                callback(ErrorCode.request_timed_out, None)
                return
            if response.error_code != ErrorCode.none:
                callback(response.error_code, None)
                return
            part = response.topics[0].partitions[0]
            if part.error_code != ErrorCode.none:
                callback(part.error_code, None)
                return
            callback(ErrorCode.none, PartitionRecord(
                state.topic_id, index, tuple(state.partitions[index].replicas)
                if index in state.partitions else (), tuple(part.isr), int(part.leader_id),
                int(part.leader_epoch), int(part.partition_epoch),
            ))

        self.controller_client.alter_partition(self.lifecycle.broker_epoch, state.topic_id, index, leader_epoch,
                                               partition_epoch, new_isr, answered, now_ms)

    def allocate_producer_id(self, callback: Callable[[int | None], None], now_ms: int) -> None:
        """A producer id for InitProducerId (None if no block could be had from the
        controller); may call back before returning."""
        producer_id = self.producer_ids.allocate()
        if producer_id is not None:
            callback(producer_id)
            return
        self.producer_ids.waiting.append(callback)
        self._request_producer_id_block(now_ms)

    def _transactional_producer_id(self) -> int | ErrorCode:
        """A producer id for the transaction coordinator, which needs one at once: while this
        broker waits for its next block it answers COORDINATOR_LOAD_IN_PROGRESS (the client
        retries), as Kafka's RPCProducerIdManager does."""
        producer_id = self.producer_ids.allocate()
        if producer_id is not None:
            return producer_id
        self._request_producer_id_block(self._now_ms)
        producer_id = self.producer_ids.allocate()  # a local controller answers at once
        return ErrorCode.coordinator_load_in_progress if producer_id is None else producer_id

    def _request_producer_id_block(self, now_ms: int) -> None:
        """Ask the controller for the next block of producer ids (KIP-730), unless asked."""
        if self.producer_ids.requesting:
            return
        self.producer_ids.requesting = True

        def answered(response: AllocateProducerIdsResponse | None) -> None:
            if response is None or response.error_code != ErrorCode.none:
                log.warning("broker %d: no producer id block from the controller (%s)",
                            self.node_id,
                            "unreachable" if response is None else response.error_code.name)
                self.producer_ids.fail_waiting()
                return
            self.producer_ids.add_block(int(response.producer_id_start),
                                        int(response.producer_id_len))

        self.controller_client.allocate_producer_ids(self.lifecycle.broker_epoch, answered, now_ms)

    # --- periodic work -----------------------------------------------------------------------

    def run_retention(self, now_ms: int) -> int:
        """Apply time and size retention to every partition; returns segments removed."""
        return sum(
            partition.log.apply_retention(now_ms, partition.high_watermark)
            for partition in self.partitions()
        )

    def run_cleaner(self, now_ms: int) -> None:
        """Compact every partition whose cleanup.policy includes compact."""
        if self.config.get("log.cleaner.enable"):
            for partition in self.partitions():
                if partition.log.needs_compaction(now_ms):
                    try:
                        partition.log.compact(now_ms, partition.high_watermark)
                    except RecordError as exc:
                        # Produce stores compressed batches without decompressing them, so one
                        # whose body does not decode is first found here. Skip that partition
                        # (it stays as it is) rather than stopping compaction of all the others.
                        log.error("cannot compact %s-%d: %s", partition.topic, partition.index, exc)

    def tick(self, now_ms: int) -> None:
        """Advance the core's timers; the driver calls it every few tens of milliseconds."""
        self._now_ms = max(self._now_ms, now_ms)
        self.lifecycle.tick(now_ms)  # heartbeat first: a local controller then sees it alive
        self.channel.tick(now_ms)
        self._check_waiters(now_ms)
        for partition in self.partitions():
            partition.tick(now_ms)
        self.expire_producers(now_ms)
        self.groups.tick(now_ms)
        self.transactions.tick(now_ms)

    # --- transaction markers -----------------------------------------------------------------

    def marker_requests(self, now_ms: int) -> list[MarkerRequest]:
        """The WriteTxnMarkers requests the transaction coordinator needs sent now, one per
        partition leader (the driver sends them, this node's own included, and reports the
        answers to :attr:`txn_markers`)."""
        self.txn_markers.add(self.transactions.take_markers())
        return self.txn_markers.requests(now_ms, self._leader_of)

    def verify_transaction(
        self, transactional_id: str, producer_id: int, producer_epoch: int,
        partitions: Sequence[TopicPartition], add: bool, now_ms: int, callback: VerificationCallback,
    ) -> None:
        """KIP-890 part 1: ask the coordinator of ``transactional_id`` whether ``partitions``
        are in the ongoing transaction of (producer id, epoch); with ``add`` (part 2, a client
        of transaction version 2), have it add them. ``callback`` gets each partition's answer
        (at once when this node is the coordinator or none is known, else once the driver has
        asked, with AddPartitionsToTxn v4 ``verify_only`` or v5)."""
        record = self.image.partition(TRANSACTION_STATE_TOPIC, self.transactions.partition_for(transactional_id))
        leader = -1 if record is None else record.leader
        if leader == self.node_id and add:
            # Kafka's AddPartitionsToTxn v5 from a broker: transaction version 2 for the client.
            self.transactions.add_partitions(
                transactional_id, producer_id, producer_epoch, partitions, now_ms,
                lambda error: callback(dict.fromkeys(partitions, error)),
                client_transaction_version=self.transactions.config.client_transaction_version(True))
        elif leader == self.node_id:
            callback(self.transactions.verify_partitions(transactional_id, producer_id, producer_epoch, partitions))
        elif leader < 0:
            callback(dict.fromkeys(partitions, ErrorCode.coordinator_not_available))
        else:
            self.verifications.append(Verification(leader, transactional_id, producer_id, producer_epoch,
                                                   tuple(partitions), add, callback))
            if self.on_verification is not None:
                self.on_verification()

    def _leader_of(self, tp: TopicPartition) -> int | None:
        record = self.image.partition(*tp)
        return GONE if record is None else record.leader

    def expire_producers(self, now_ms: int) -> None:
        """Every producer.id.expiration.check.interval.ms, forget idempotent producers idle for
        producer.id.expiration.ms (Kafka's periodic removeExpiredProducers)."""
        if now_ms < self._next_producer_expiry_ms:
            return
        self._next_producer_expiry_ms = now_ms + self._producer_expiry_interval_ms
        for partition in self.partitions():
            expired = partition.log.remove_expired_producers(now_ms)
            if expired:
                log.info("%s-%d: producer id(s) %s expired", partition.topic, partition.index,
                         ", ".join(map(str, expired)))

    def flush_due(self, now_ms: int) -> None:
        for partition in self.partitions():
            partition.log.maybe_flush(now_ms)

    def close(self) -> None:
        for partition in self.partitions():
            partition.close()
        self._partitions.clear()
        if self.controller is not None:
            self.controller.close()

