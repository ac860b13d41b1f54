"""The group coordinator's state in ``__consumer_offsets``: encoding groups and committed
offsets as records, appending them, and rebuilding groups from a partition's records when this
node becomes its leader (Kafka's GroupMetadataManager, the storage half).

The decisions (:mod:`~reference_broker.groups.membership`, :mod:`~reference_broker.groups.offsets`)
ask for writes through :class:`GroupPersistence`, which appends to an
:class:`~reference_broker.groups.storage.OffsetsLog` and turns the log's errors into what the
client is told.

* Writes that a client is told about wait for replication, as Kafka's ``appendForGroup``
  (acks=-1, ``offsets.commit.timeout.ms``): an OffsetCommit is answered, and a SyncGroup's
  assignment handed out, only once the record is below the high watermark of the group's
  ``__consumer_offsets`` partition, i.e. on every in-sync replica, so it survives a failover
  to any of them. Failures are mapped to what clients act on, see ``STORE_GROUP_ERRORS``. On a
  single node (an ISR of one) every write is committed at once.
* Tombstones and the generation-start record are appended without waiting (Kafka appends
  tombstones with acks=0; the generation-start record is kconform's own and is covered by the
  assignment record after it, which is waited for).
* A group lives in one partition of the topic (:func:`~reference_broker.groups.log_format.partition_for`);
  the node leading that partition coordinates it. Loading a partition replays its records (the
  last record of a key wins) into groups: Stable with their members and assignments when the
  last metadata record has members, else Empty, each with its committed offsets. Unloading
  forgets them.
* Transactional offset commits (TxnOffsetCommit, KIP-98) are batches of their producer's
  transaction. Loading holds their offsets per producer id until it meets that producer's
  marker (Kafka's loadGroupsAndOffsets): COMMIT makes them committed (unless a commit written
  later in the log is already there), ABORT drops them; those still held at the end belong to
  an ongoing transaction and stay pending, for the marker still to come. A plain tombstone also
  drops the pending transactional offsets of its partition (Kafka 4's OffsetMetadataManager
  replays it so), as it does in memory (:mod:`~reference_broker.groups.offsets`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence

from kio.schema.errors import ErrorCode

from reference_broker.groups.group import Group, GroupState, Member, PartitionKey, PendingTxnOffset
from reference_broker.groups.log_format import (
    OFFSETS_TOPIC,
    FormatError,
    GroupKey,
    GroupValue,
    MemberValue,
    OffsetKey,
    OffsetValue,
    decode_group_value,
    decode_key,
    decode_offset_value,
    encode_group_key,
    encode_group_value,
    encode_offset_key,
    encode_offset_value,
    partition_for,
)
from reference_broker.groups.membership import StoreCallback
from reference_broker.groups.storage import (
    AppendCallback,
    AppendedCallback,
    KeyValue,
    OffsetsLog,
    StoredBatch,
    TxnProducer,
)
from reference_broker.records import ControlType

log = logging.getLogger(__name__)

# What a failed write to __consumer_offsets becomes for the client. Kafka's GroupMetadataManager
# (kafka.coordinator.group, the classic coordinator) appends with appendForGroup (requiredAcks =
# offsets.commit.required.acks = -1, timeout = offsets.commit.timeout.ms) and maps the append's
# error in storeGroup's and storeOffsets' putCacheCallback:
#   UNKNOWN_TOPIC_OR_PARTITION, NOT_ENOUGH_REPLICAS, NOT_ENOUGH_REPLICAS_AFTER_APPEND
#       -> COORDINATOR_NOT_AVAILABLE (the client retries, at the same coordinator)
#   NOT_LEADER_OR_FOLLOWER, KAFKA_STORAGE_ERROR -> NOT_COORDINATOR (it looks the coordinator up)
#   MESSAGE_TOO_LARGE, RECORD_LIST_TOO_LARGE, INVALID_FETCH_SIZE
#       -> UNKNOWN_SERVER_ERROR (group metadata) / INVALID_COMMIT_OFFSET_SIZE (offsets)
#   REQUEST_TIMED_OUT -> REBALANCE_IN_PROGRESS for group metadata (the members rejoin).
# storeOffsets passed REQUEST_TIMED_OUT through, which consumers before Kafka 3.9 do not retry;
# Kafka 4's GroupCoordinatorService.handleOperationException (commitOffsets) maps it to
# COORDINATOR_NOT_AVAILABLE, and so do we.
STORE_GROUP_ERRORS = {
    ErrorCode.unknown_topic_or_partition: ErrorCode.coordinator_not_available,
    ErrorCode.not_enough_replicas: ErrorCode.coordinator_not_available,
    ErrorCode.not_enough_replicas_after_append: ErrorCode.coordinator_not_available,
    ErrorCode.not_leader_or_follower: ErrorCode.not_coordinator,
    ErrorCode.kafka_storage_error: ErrorCode.not_coordinator,
    ErrorCode.request_timed_out: ErrorCode.rebalance_in_progress,
    ErrorCode.message_too_large: ErrorCode.unknown_server_error,
    ErrorCode.record_list_too_large: ErrorCode.unknown_server_error,
    ErrorCode.invalid_fetch_size: ErrorCode.unknown_server_error,
}
STORE_OFFSETS_ERRORS = {
    **STORE_GROUP_ERRORS,
    ErrorCode.request_timed_out: ErrorCode.coordinator_not_available,
    ErrorCode.message_too_large: ErrorCode.invalid_commit_offset_size,
    ErrorCode.record_list_too_large: ErrorCode.invalid_commit_offset_size,
    ErrorCode.invalid_fetch_size: ErrorCode.invalid_commit_offset_size,
}


def group_record(group: Group, assignment: Mapping[str, bytes] | None) -> KeyValue:
    """The group's metadata record: with its members and ``assignment``, or without members
    (the start of a generation) when ``assignment`` is None."""
    members: tuple[MemberValue, ...] = ()
    if assignment is not None and group.protocol_name is not None:
        members = tuple(
            MemberValue(
                m.member_id, m.group_instance_id, m.client_id, m.client_host,
                m.rebalance_timeout_ms, m.session_timeout_ms,
                m.metadata(group.protocol_name), assignment.get(m.member_id, b""),
            )
            for m in group.members.values()
        )
    value = GroupValue(
        protocol_type=group.protocol_type or "",
        generation=group.generation_id,
        protocol=group.protocol_name,
        leader=group.leader_id if members else None,
        state_timestamp_ms=group.state_timestamp_ms,
        members=members,
    )
    return encode_group_key(GroupKey(group.group_id)), encode_group_value(value)


def restore_metadata(group: Group, value: GroupValue, now_ms: int) -> None:
    """Give a group being loaded the state its last metadata record describes."""
    group.generation_id = value.generation
    group.protocol_type = value.protocol_type or None
    group.protocol_name = value.protocol
    if value.state_timestamp_ms >= 0:
        group.state_timestamp_ms = value.state_timestamp_ms
    if not value.members or value.protocol is None:
        group.protocol_name = None
        return
    for stored in value.members:
        member = Member(
            stored.member_id, stored.group_instance_id, stored.client_id, stored.client_host,
            stored.rebalance_timeout_ms, stored.session_timeout_ms, group.protocol_type or "",
            [(value.protocol, stored.subscription)], assignment=stored.assignment,
            heartbeat_deadline_ms=now_ms + stored.session_timeout_ms,
        )
        group.add(member, None)
    if value.leader in group.members:
        group.leader_id = value.leader
    group.state = GroupState.STABLE
    group.subscribed_topics = group.compute_subscribed_topics()


class GroupPersistence:
    """The records of the groups in ``groups`` (shared with the rest of the coordinator), and
    which offsets partitions are loaded into it.

    ``owned`` None (unit tests) means every partition, loaded by :meth:`load_all`; a broker
    passes an empty set and calls :meth:`load_partition` / :meth:`unload_partition` as it gains
    and loses leadership of offsets partitions (Kafka's onElection / onResignation).
    """

    def __init__(
        self,
        storage: OffsetsLog,
        groups: MutableMapping[str, Group],
        commit_timeout_ms: int,
        owned: Iterable[int] | None = None,
    ) -> None:
        self._storage = storage
        self._groups = groups
        self._commit_timeout_ms = commit_timeout_ms
        self._owned: set[int] | None = None if owned is None else set(owned)
        self._owned_count: int | None = None  # partitions of the topic when last loaded

    # --- storage -------------------------------------------------------------------------------

    def ensure_storage(self, now_ms: int) -> ErrorCode | None:
        """Create ``__consumer_offsets`` if needed (FindCoordinator); an error if not."""
        return self._storage.ensure(now_ms)

    # --- which groups are ours -----------------------------------------------------------------

    def coordinator_error(self, group_id: str, now_ms: int) -> ErrorCode | None:
        """None when this node coordinates ``group_id``; else what the client is told:
        NOT_COORDINATOR (another broker leads its offsets partition, so the client looks the
        coordinator up again) or COORDINATOR_NOT_AVAILABLE (no offsets topic yet)."""
        if self._owned is None:
            return None
        count = self._storage.partition_count()
        if count is None:
            error = self._storage.ensure(now_ms)
            count = self._storage.partition_count()
            if count is None:
                return ErrorCode.coordinator_not_available if error is None else error
        return None if partition_for(group_id, count) in self._owned else ErrorCode.not_coordinator

    def load_all(self, now_ms: int, loaded: Callable[[Sequence[Group], int], None]) -> None:
        """Load the groups of every partition this node leads (all of them when ``owned`` was
        None); ``loaded`` gets the groups loaded."""
        if self._owned is None:
            # One partition at a time: a marker ends its producer's transaction in its own
            # partition only.
            for partition in range(self._storage.partition_count() or 0):
                self._load(self._storage.replay_batches(partition), now_ms, loaded)
        else:
            for partition in sorted(self._owned):
                self.load_partition(partition, now_ms, loaded)

    def load_partition(
        self, partition: int, now_ms: int, loaded: Callable[[Sequence[Group], int], None]
    ) -> None:
        """Become coordinator of the groups of offsets partition ``partition`` (this node now
        leads it): rebuild them from its records; ``loaded`` gets them."""
        if self._owned is None:
            return
        self._owned.add(partition)
        self._owned_count = self._storage.partition_count()
        before = len(self._groups)
        self._load(self._storage.replay_batches(partition), now_ms, loaded)
        count = len(self._groups) - before
        log.log(logging.INFO if count else logging.DEBUG,
                "coordinating the groups of %s-%d (%d loaded)", OFFSETS_TOPIC, partition, count)

    def unload_partition(self, partition: int, unloaded: Callable[[Group], None]) -> None:
        """Stop coordinating the groups of offsets partition ``partition`` (another broker
        leads it now): forget them, each after ``unloaded`` has had it."""
        if self._owned is None or partition not in self._owned:
            return
        self._owned.discard(partition)
        forgotten = 0
        for group in self.groups_in_partition(partition, self._owned_count):
            unloaded(group)
            del self._groups[group.group_id]
            forgotten += 1
        log.log(logging.INFO if forgotten else logging.DEBUG,
                "no longer coordinating the groups of %s-%d (%d unloaded)", OFFSETS_TOPIC,
                partition, forgotten)

    def groups_in_partition(self, partition: int, count: int | None = None) -> list[Group]:
        """The loaded groups whose records go to offsets partition ``partition`` (``count``:
        the topic's partitions, if the topic itself is gone)."""
        count = self._storage.partition_count() or count
        if not count:
            return []
        return [group for group_id, group in self._groups.items()
                if partition_for(group_id, count) == partition]

    def _load(
        self, batches: Iterable[StoredBatch], now_ms: int,
        loaded: Callable[[Sequence[Group], int], None],
    ) -> None:
        """Rebuild groups and offsets by replaying the batches of one ``__consumer_offsets``
        partition (last record wins; transactional offsets as the module docstring says)."""
        # (value, offset of its record) per group and partition: committed, and per producer id
        # those of its transaction not yet met by a marker.
        offsets: dict[str, dict[PartitionKey, tuple[OffsetValue, int]]] = {}
        pending: dict[int, dict[str, dict[PartitionKey, tuple[OffsetValue, int]]]] = {}
        metadata: dict[str, GroupValue] = {}
        skipped = 0
        for batch in batches:
            if batch.marker is not None:
                ended = pending.pop(batch.producer_id, {})
                if batch.marker is ControlType.COMMIT:
                    for group_id, group_pending in ended.items():
                        committed = offsets.setdefault(group_id, {})
                        for tp, (offset, at) in group_pending.items():
                            if tp not in committed or committed[tp][1] < at:
                                committed[tp] = (offset, at)
                continue
            for key_bytes, value_bytes in batch.records:
                try:
                    key = decode_key(key_bytes)
                    if not isinstance(key, OffsetKey):
                        if value_bytes is None:
                            metadata.pop(key.group, None)
                        else:
                            metadata[key.group] = decode_group_value(value_bytes)
                        continue
                    tp = (key.topic, key.partition)
                    if batch.is_transactional:
                        held = pending.setdefault(batch.producer_id, {}).setdefault(key.group, {})
                    elif value_bytes is None:
                        for producer_pending in pending.values():
                            producer_pending.get(key.group, {}).pop(tp, None)
                        held = offsets.setdefault(key.group, {})
                    else:
                        held = offsets.setdefault(key.group, {})
                    if value_bytes is None:
                        held.pop(tp, None)
                    else:
                        held[tp] = (decode_offset_value(value_bytes), batch.base_offset)
                except FormatError as exc:
                    skipped += 1
                    log.warning("skipping undecodable __consumer_offsets record: %s", exc)
        # Still pending at the end: the transaction is ongoing; its marker has yet to come.
        ongoing: dict[str, dict[int, dict[PartitionKey, PendingTxnOffset]]] = {}
        for producer_id, by_group in pending.items():
            for group_id, group_pending in by_group.items():
                if group_pending:
                    ongoing.setdefault(group_id, {})[producer_id] = {
                        tp: PendingTxnOffset(offset, at) for tp, (offset, at) in group_pending.items()
                    }
        groups: list[Group] = []
        for group_id in sorted(offsets.keys() | metadata.keys() | ongoing.keys()):
            group_offsets = offsets.get(group_id, {})
            value = metadata.get(group_id)
            if value is None and not group_offsets and group_id not in ongoing:
                continue
            group = Group(group_id, state_timestamp_ms=now_ms)
            if value is not None:
                restore_metadata(group, value, now_ms)
            group.offsets = {tp: offset for tp, (offset, _) in group_offsets.items()}
            group.record_offsets = {tp: at for tp, (_, at) in group_offsets.items()}
            group.pending_txn_offsets = ongoing.get(group_id, {})
            self._groups[group_id] = group
            groups.append(group)
        if groups or skipped:
            log.info("loaded %d group(s) from __consumer_offsets (%d record(s) skipped)",
                     len(groups), skipped)
        loaded(groups, now_ms)

    # --- appending -----------------------------------------------------------------------------

    def _append(self, group_id: str, records: Sequence[KeyValue], now_ms: int) -> ErrorCode | None:
        error = self._storage.ensure(now_ms)
        if error is not None:
            return error
        partitions = self._storage.partition_count()
        if not partitions:
            return ErrorCode.coordinator_not_available
        return self._storage.append(partition_for(group_id, partitions), records, now_ms)

    def _append_committed(
        self, group_id: str, records: Sequence[KeyValue], now_ms: int, callback: AppendCallback,
        producer: TxnProducer | None = None, appended: AppendedCallback | None = None,
    ) -> None:
        """Append with acks=-1 (as ``producer``'s transactional batch if given); ``callback``
        gets None once the records are committed, else the storage error (maybe before this
        returns); ``appended`` the batch's offset once it is in the log."""
        error = self._storage.ensure(now_ms)
        partitions = self._storage.partition_count() if error is None else None
        if error is not None or not partitions:
            callback(ErrorCode.coordinator_not_available if error is None else error)
            return
        self._storage.append_committed(
            partition_for(group_id, partitions), records, now_ms,
            now_ms + self._commit_timeout_ms, callback, producer, appended,
        )

    # --- groups (membership.GroupWriter) ---------------------------------------------------------

    @staticmethod
    def _encode_group(group: Group, assignment: Mapping[str, bytes] | None) -> KeyValue | None:
        try:
            return group_record(group, assignment)
        except FormatError as exc:  # an id too long for the record format
            log.warning("cannot encode metadata of group %s: %s", group.group_id[:100], exc)
            return None

    def store_group_start(self, group: Group, now_ms: int) -> None:
        """Record a new generation (without members), not waiting for the followers: nobody is
        answered on its strength (the assignment record after it is waited for)."""
        record = self._encode_group(group, None)
        error = self._append(group.group_id, [record], now_ms) if record is not None else None
        if error is not None:
            log.warning("cannot store generation %d of group %s: %s", group.generation_id,
                        group.group_id, error.name)

    def store_group(
        self, group: Group, assignment: Mapping[str, bytes], now_ms: int, callback: StoreCallback
    ) -> None:
        """Write the group's metadata with its members and their assignment (Kafka's
        storeGroup); ``callback`` gets None once it is committed, else the client-facing
        error (maybe before this returns)."""
        record = self._encode_group(group, assignment)
        if record is None:
            callback(ErrorCode.unknown_server_error)
            return

        def stored(error: ErrorCode | None) -> None:
            if error is not None:
                log.warning("cannot store metadata of group %s generation %d: %s",
                            group.group_id, group.generation_id, error.name)
                error = STORE_GROUP_ERRORS.get(error, error)
            callback(error)

        self._append_committed(group.group_id, [record], now_ms, stored)

    # --- offsets (offsets.OffsetWriter) ------------------------------------------------------------

    def store_offsets(
        self, group_id: str, offsets: Mapping[PartitionKey, OffsetValue], now_ms: int,
        callback: StoreCallback, producer: TxnProducer | None = None,
        appended: AppendedCallback | None = None,
    ) -> None:
        """Write committed offsets (Kafka's storeOffsets; as ``producer``'s transactional batch
        for a TxnOffsetCommit); ``callback`` gets None once they are committed, else the
        client-facing error (maybe before this returns); ``appended`` the batch's offset once
        it is in the log. A producer epoch older than the partition knows is
        INVALID_PRODUCER_EPOCH, passed on as Kafka does."""
        records = [
            (encode_offset_key(OffsetKey(group_id, topic, partition)), encode_offset_value(value))
            for (topic, partition), value in offsets.items()
        ]

        def stored(error: ErrorCode | None) -> None:
            if error is not None:
                log.warning("cannot store offsets of group %s: %s", group_id, error.name)
                error = STORE_OFFSETS_ERRORS.get(error, error)
            callback(error)

        self._append_committed(group_id, records, now_ms, stored, producer, appended)

    def remove_offsets(
        self, group_id: str, partitions: Sequence[PartitionKey], with_group: bool, now_ms: int
    ) -> ErrorCode | None:
        """Tombstone offsets, and the group's metadata if ``with_group``, without waiting for
        the followers; a client-facing error if the log refused them."""
        records: list[KeyValue] = [
            (encode_offset_key(OffsetKey(group_id, topic, partition)), None)
            for topic, partition in partitions
        ]
        if with_group:
            records.append((encode_group_key(GroupKey(group_id)), None))
        if not records:
            return None
        error = self._append(group_id, records, now_ms)
        if error is None:
            return None
        log.warning("cannot delete offsets of group %s: %s", group_id, error.name)
        return STORE_OFFSETS_ERRORS.get(error, error)
