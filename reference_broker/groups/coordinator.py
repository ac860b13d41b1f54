"""The group coordinator: the classic consumer-group protocol as a sans-I/O state machine.

Theory of operation
===================

This is Kafka's classic group coordinator (``kafka.coordinator.group.GroupCoordinator``, and the
"classic group" of the KIP-848 coordinator that replaced it in Kafka 4), without threads,
sockets or clocks. Every operation takes ``now_ms``; operations that Kafka answers later
(JoinGroup, SyncGroup) take a callback and call it exactly once, possibly during a later call or
:meth:`GroupCoordinator.tick`. Returning ``None`` to a callback means "send no response" (a
request superseded by a retry from the same member). Partition assignment is not done here: the
members' client-side assignor (range, round-robin, sticky, ...) runs in the *leader*, and the
coordinator passes the leader's assignment to each member through SyncGroup.

A group moves through five states (the transition table is in
:mod:`reference_broker.groups.group`):

=====================  =========================================================================
state                  what the coordinator does
=====================  =========================================================================
Empty                  no members; offsets may be committed with generation -1 (admin tools,
                       manual assignment). A JoinGroup starts a rebalance.
PreparingRebalance     JoinGroups are parked until every known member has rejoined or the
                       rebalance timeout passes (the largest ``rebalance_timeout`` of the
                       members: a consumer's ``max.poll.interval.ms``). Heartbeats answer
                       REBALANCE_IN_PROGRESS, which tells members to rejoin. Commits from the
                       previous generation are still accepted.
CompletingRebalance    the join phase ended: a new generation, a protocol chosen by vote, one
                       member (the leader) got everyone's subscriptions. Followers' SyncGroups
                       are parked until the leader's SyncGroup brings the assignment; commits get
                       REBALANCE_IN_PROGRESS.
Stable                 everybody has an assignment; heartbeats keep members alive.
Dead                   the group is being deleted (DeleteGroups, or its offsets expired while
                       empty); it is then forgotten, and a later JoinGroup starts over at
                       generation 0, as in Kafka.
=====================  =========================================================================

Events and what they cause:

==============================================  ===============================================
event                                           effect
==============================================  ===============================================
new member joins (any state but Dead)           PreparingRebalance (from Empty: after
                                                ``group.initial.rebalance.delay.ms``, KIP-134)
leader rejoins, or a member with new metadata   PreparingRebalance
follower rejoins unchanged (Stable/Completing)  answered at once with the current generation
all members rejoined / rebalance timeout        next generation: CompletingRebalance, or Empty
                                                when nobody rejoined; dynamic members that did
                                                not rejoin are dropped
leader's SyncGroup                              assignment stored, Stable
member leaves, or its session times out         PreparingRebalance (Empty if it was the last)
SyncGroup missing after the rebalance timeout   those members are dropped, PreparingRebalance
==============================================  ===============================================

Fencing: every SyncGroup, Heartbeat and OffsetCommit names a member id and generation.
A member id the group does not know gets UNKNOWN_MEMBER_ID (the client forgets its id and joins
anew); a stale generation gets ILLEGAL_GENERATION (the client rejoins); a rebalance in progress
gets REBALANCE_IN_PROGRESS; a static member (``group.instance.id``, KIP-345) whose instance id
now belongs to a newer member id gets FENCED_INSTANCE_ID (the client must stop: another process
took its identity). Within one generation each member's assignment is the one the leader sent,
so no partition is owned twice in a generation when the assignor is correct.

Subtle points, with the Kafka rule they follow:

* KIP-394: from JoinGroup v4 a joiner without a member id gets MEMBER_ID_REQUIRED and a fresh id
  to rejoin with; the id is "pending" until then and expires after the session timeout. A
  rebalance waits for pending members too.
* KIP-345: a static member that rejoins with no member id replaces its old member id. In Stable,
  if the group's protocol would not change, there is no rebalance: it keeps its assignment (v9+:
  the leader is told ``skip_assignment``; older versions are given the old leader id, so nobody
  runs the assignor). A static member that misses a rebalance is not dropped by it, only by its
  session timeout.
* KIP-134: the first rebalance of an empty group waits ``group.initial.rebalance.delay.ms``,
  and, while members keep arriving in generation 0, that long again, up to the rebalance
  timeout, so a group starting up settles in one rebalance.
* Session timeouts do not run while a member is parked in JoinGroup or SyncGroup (it cannot
  heartbeat on a blocked connection); a brand-new member that never completes a join is dropped
  after five minutes (Kafka's NewMemberJoinTimeoutMs).
* Every generation change is written to ``__consumer_offsets`` before members hear of it, and
  the assignment is written when the leader syncs, so a restart reloads the group Stable with its
  members (who carry on heartbeating) or Empty, and the generation never goes back.
* Writes that a client is told about wait for replication, as Kafka's ``appendForGroup``
  (acks=-1, ``offsets.commit.timeout.ms``): an OffsetCommit is answered, and a SyncGroup's
  assignment handed out, only once the record is below the high watermark of the group's
  ``__consumer_offsets`` partition, i.e. on every in-sync replica, so it survives a failover
  to any of them. Meanwhile a commit is *pending* (Kafka's ``pendingOffsetCommits``): OffsetFetch
  does not show it, expiry skips it, a deletion drops it. The group stays CompletingRebalance
  while its assignment is being replicated; whatever changes the group meanwhile (a join, a
  leave, a timeout) wins and the late write result is ignored (Kafka's doSyncGroup checks state
  and generation the same way). Failures are mapped to what clients act on, see
  ``_STORE_GROUP_ERRORS``. On a single node (an ISR of one) every write is committed at once.
  Tombstones and the generation-start record are appended without waiting (Kafka appends
  tombstones with acks=0; the generation-start record is kconform's own and is covered by the
  assignment record after it, which is waited for).
* Offsets are kept per group; KIP-211 expiry: all offsets of a group that has been Empty for
  ``offsets.retention.ms``; in a Stable consumer group, those of topics nobody subscribes to,
  ``offsets.retention.ms`` after their commit; in a group never used for membership, each
  offset that long after its commit.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs

from reference_broker.groups.group import (
    CONSUMER_PROTOCOL_TYPE,
    Group,
    GroupState,
    Member,
    PartitionKey,
)
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
from reference_broker.groups.storage import AppendCallback, KeyValue, OffsetsLog

log = logging.getLogger(__name__)

EMPTY = GroupState.EMPTY
PREPARING = GroupState.PREPARING_REBALANCE
COMPLETING = GroupState.COMPLETING_REBALANCE
STABLE = GroupState.STABLE
DEAD = GroupState.DEAD

NEW_MEMBER_JOIN_TIMEOUT_MS = 5 * 60 * 1000  # Kafka's GroupCoordinator.NewMemberJoinTimeoutMs
# Ids go into int16-length strings of __consumer_offsets records; leave room for the member-id
# suffix ("-" and a UUID). Kafka would fail to serialize longer ones.
MAX_ID_BYTES = 32767 - 64
UNKNOWN_MEMBER_ID = ""
NO_GENERATION = -1

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
_STORE_GROUP_ERRORS = {
    "unknown_topic_or_partition": "coordinator_not_available",
    "not_enough_replicas": "coordinator_not_available",
    "not_enough_replicas_after_append": "coordinator_not_available",
    "not_leader_or_follower": "not_coordinator",
    "kafka_storage_error": "not_coordinator",
    "request_timed_out": "rebalance_in_progress",
    "message_too_large": "unknown_server_error",
    "record_list_too_large": "unknown_server_error",
    "invalid_fetch_size": "unknown_server_error",
}
_STORE_OFFSETS_ERRORS = {
    **_STORE_GROUP_ERRORS,
    "request_timed_out": "coordinator_not_available",
    "message_too_large": "invalid_commit_offset_size",
    "record_list_too_large": "invalid_commit_offset_size",
    "invalid_fetch_size": "invalid_commit_offset_size",
}


@attrs.frozen(slots=True)
class GroupConfig:
    """The broker settings the coordinator obeys (Kafka's names in comments)."""

    min_session_timeout_ms: int = 6000  # group.min.session.timeout.ms
    max_session_timeout_ms: int = 1_800_000  # group.max.session.timeout.ms
    max_size: int = 2**31 - 1  # group.max.size
    initial_rebalance_delay_ms: int = 3000  # group.initial.rebalance.delay.ms
    offsets_retention_ms: int = 7 * 24 * 3600 * 1000  # offsets.retention.ms
    offsets_retention_check_interval_ms: int = 600_000  # offsets.retention.check.interval.ms
    offset_metadata_max_bytes: int = 4096  # offset.metadata.max.bytes
    offsets_commit_timeout_ms: int = 5000  # offsets.commit.timeout.ms

    @classmethod
    def from_broker(cls, get: Callable[[str], Any]) -> GroupConfig:
        return cls(
            min_session_timeout_ms=int(get("group.min.session.timeout.ms")),
            max_session_timeout_ms=int(get("group.max.session.timeout.ms")),
            max_size=int(get("group.max.size")),
            initial_rebalance_delay_ms=int(get("group.initial.rebalance.delay.ms")),
            offsets_retention_ms=int(get("offsets.retention.ms")),
            offsets_retention_check_interval_ms=int(get("offsets.retention.check.interval.ms")),
            offset_metadata_max_bytes=int(get("offset.metadata.max.bytes")),
            offsets_commit_timeout_ms=int(get("offsets.commit.timeout.ms")),
        )


# --- requests and results ------------------------------------------------------------------------


@attrs.frozen(slots=True)
class JoinRequest:
    group_id: str
    member_id: str
    group_instance_id: str | None
    protocol_type: str
    protocols: tuple[tuple[str, bytes], ...]
    session_timeout_ms: int
    rebalance_timeout_ms: int
    client_id: str = ""
    client_host: str = ""
    require_known_member_id: bool = True  # JoinGroup v4+ (KIP-394)
    supports_skip_assignment: bool = True  # JoinGroup v9+ (KIP-814)
    reason: str | None = None


@attrs.frozen(slots=True)
class JoinResult:
    error: str
    member_id: str
    generation_id: int = NO_GENERATION
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str = ""
    skip_assignment: bool = False
    members: tuple[tuple[str, str | None, bytes], ...] = ()  # only the leader gets them


@attrs.frozen(slots=True)
class SyncResult:
    error: str
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignment: bytes = b""


@attrs.frozen(slots=True)
class LeavingMember:
    member_id: str
    group_instance_id: str | None = None
    reason: str | None = None


@attrs.frozen(slots=True)
class MemberSummary:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    metadata: bytes
    assignment: bytes


@attrs.frozen(slots=True)
class GroupSummary:
    """What DescribeGroups shows; metadata and assignments only while Stable (as Kafka)."""

    group_id: str
    state: str
    protocol_type: str
    protocol: str
    members: tuple[MemberSummary, ...]


@attrs.frozen(slots=True)
class GroupOverview:
    group_id: str
    protocol_type: str
    state: str


JoinCallback = Callable[[JoinResult | None], None]
SyncCallback = Callable[[SyncResult | None], None]
CommitCallback = Callable[[dict[PartitionKey, str]], None]
StoreCallback = Callable[[str | None], None]  # None, or the client-facing error


def _join_error(member_id: str, error: str) -> JoinResult:
    return JoinResult(error=error, member_id=member_id)


def _too_long(text: str | None) -> bool:
    return text is not None and len(text.encode()) > MAX_ID_BYTES


# --- the coordinator -----------------------------------------------------------------------------


class GroupCoordinator:
    """The groups this node coordinates: those whose ``__consumer_offsets`` partition it leads.

    ``owned`` None (unit tests) means every partition, loaded at once; a broker passes an empty
    set and calls :meth:`load_partition` / :meth:`unload_partition` as it gains and loses
    leadership of offsets partitions (Kafka's onElection / onResignation).
    """

    def __init__(
        self,
        config: GroupConfig,
        storage: OffsetsLog,
        now_ms: int,
        new_member_suffix: Callable[[], str] | None = None,
        owned: Iterable[int] | None = None,
    ) -> None:
        self.config = config
        self._storage = storage
        self._groups: dict[str, Group] = {}
        self._suffix = new_member_suffix or (lambda: str(uuid.uuid4()))
        self._next_expiry_check_ms = now_ms + config.offsets_retention_check_interval_ms
        self._now_ms = now_ms  # the latest time seen, for the few calls that carry none
        self._owned: set[int] | None = None if owned is None else set(owned)
        self._owned_count: int | None = None  # partitions of the topic when last loaded
        if self._owned is None:
            self._load(self._storage.replay(), now_ms)
        else:
            for partition in sorted(self._owned):
                self.load_partition(partition, now_ms)

    # --- inspection (tests, DescribeGroups) --------------------------------------------------

    def group(self, group_id: str) -> Group | None:
        return self._groups.get(group_id)

    @property
    def groups(self) -> Mapping[str, Group]:
        return self._groups

    # --- storage -------------------------------------------------------------------------------

    def ensure_storage(self, now_ms: int) -> str | None:
        """Create ``__consumer_offsets`` if needed (FindCoordinator); an error name if not."""
        return self._storage.ensure(now_ms)

    # --- which groups are ours -----------------------------------------------------------------

    def coordinator_error(self, group_id: str, now_ms: int) -> str | None:
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
                return error or "coordinator_not_available"
        return None if partition_for(group_id, count) in self._owned else "not_coordinator"

    def load_partition(self, partition: int, now_ms: int) -> None:
        """Become coordinator of the groups of offsets partition ``partition`` (this node now
        leads it): rebuild them from its records."""
        if self._owned is None:
            return
        self._owned.add(partition)
        self._owned_count = self._storage.partition_count()
        before = len(self._groups)
        self._load(self._storage.replay_partition(partition), now_ms)
        loaded = len(self._groups) - before
        log.log(logging.INFO if loaded else logging.DEBUG,
                "coordinating the groups of %s-%d (%d loaded)", OFFSETS_TOPIC, partition, loaded)

    def unload_partition(self, partition: int) -> None:
        """Stop coordinating the groups of offsets partition ``partition`` (another broker
        leads it now): forget them; requests parked in JoinGroup or SyncGroup get
        NOT_COORDINATOR so their members find the new coordinator."""
        if self._owned is None or partition not in self._owned:
            return
        self._owned.discard(partition)
        count = self._storage.partition_count() or self._owned_count
        if not count:
            return
        unloaded = 0
        for group_id, group in list(self._groups.items()):
            if partition_for(group_id, count) != partition:
                continue
            for member in group.members.values():
                member.invoke_join(_join_error(member.member_id, "not_coordinator"))
                member.invoke_sync(SyncResult("not_coordinator"))
            del self._groups[group_id]
            unloaded += 1
        log.log(logging.INFO if unloaded else logging.DEBUG,
                "no longer coordinating the groups of %s-%d (%d unloaded)", OFFSETS_TOPIC,
                partition, unloaded)

    def _append(self, group_id: str, records: Sequence[KeyValue], now_ms: int) -> str | None:
        error = self._storage.ensure(now_ms)
        if error is not None:
            return error
        partitions = self._storage.partition_count()
        if not partitions:
            return "coordinator_not_available"
        return self._storage.append(partition_for(group_id, partitions), records, now_ms)

    def _append_committed(
        self, group_id: str, records: Sequence[KeyValue], now_ms: int, callback: AppendCallback
    ) -> None:
        """Append with acks=-1; ``callback`` gets None once the records are committed, else
        the storage error (maybe before this returns)."""
        error = self._storage.ensure(now_ms)
        partitions = self._storage.partition_count() if error is None else None
        if error is not None or not partitions:
            callback(error or "coordinator_not_available")
            return
        self._storage.append_committed(
            partition_for(group_id, partitions), records, now_ms,
            now_ms + self.config.offsets_commit_timeout_ms, callback,
        )

    def _group_record(self, group: Group, assignment: Mapping[str, bytes] | None) -> KeyValue:
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

    def _encode_group(
        self, group: Group, assignment: Mapping[str, bytes] | None
    ) -> KeyValue | None:
        try:
            return self._group_record(group, assignment)
        except FormatError as exc:  # an id too long for the record format
            log.warning("cannot encode metadata of group %s: %s", group.group_id[:100], exc)
            return None

    def _store_group_start(self, group: Group, now_ms: int) -> None:
        """Record a new generation (without members), not waiting for the followers: nobody is
        answered on its strength (the assignment record after it is waited for)."""
        record = self._encode_group(group, None)
        error = self._append(group.group_id, [record], now_ms) if record is not None else None
        if error is not None:
            log.warning("cannot store generation %d of group %s: %s", group.generation_id,
                        group.group_id, error)

    def _store_group(
        self, group: Group, assignment: Mapping[str, bytes], now_ms: int, callback: StoreCallback
    ) -> None:
        """Write the group's metadata with its members and their assignment (Kafka's
        storeGroup); ``callback`` gets None once it is committed, else the client-facing
        error (maybe before this returns)."""
        record = self._encode_group(group, assignment)
        if record is None:
            callback("unknown_server_error")
            return

        def stored(error: str | None) -> None:
            if error is not None:
                log.warning("cannot store metadata of group %s generation %d: %s",
                            group.group_id, group.generation_id, error)
                error = _STORE_GROUP_ERRORS.get(error, error)
            callback(error)

        self._append_committed(group.group_id, [record], now_ms, stored)

    def _load(self, records: Iterable[KeyValue], now_ms: int) -> None:
        """Rebuild groups and offsets by replaying ``__consumer_offsets`` records (last record
        wins)."""
        offsets: dict[str, dict[PartitionKey, OffsetValue]] = {}
        metadata: dict[str, GroupValue] = {}
        skipped = 0
        loaded: list[Group] = []
        for key_bytes, value_bytes in records:
            try:
                key = decode_key(key_bytes)
                if isinstance(key, OffsetKey):
                    by_group = offsets.setdefault(key.group, {})
                    if value_bytes is None:
                        by_group.pop((key.topic, key.partition), None)
                    else:
                        by_group[(key.topic, key.partition)] = decode_offset_value(value_bytes)
                elif value_bytes is None:
                    metadata.pop(key.group, None)
                else:
                    metadata[key.group] = decode_group_value(value_bytes)
            except FormatError as exc:
                skipped += 1
                log.warning("skipping undecodable __consumer_offsets record: %s", exc)
        for group_id in sorted(offsets.keys() | metadata.keys()):
            group_offsets = offsets.get(group_id, {})
            value = metadata.get(group_id)
            if value is None and not group_offsets:
                continue
            group = Group(group_id, state_timestamp_ms=now_ms)
            if value is not None:
                self._restore_metadata(group, value, now_ms)
            group.offsets = dict(group_offsets)
            self._groups[group_id] = group
            loaded.append(group)
        if loaded or skipped:
            log.info("loaded %d group(s) from __consumer_offsets (%d record(s) skipped)",
                     len(loaded), skipped)
        for group in loaded:
            if group.size > self.config.max_size:
                self._prepare_rebalance(group, now_ms, "loaded group is over group.max.size")

    def _restore_metadata(self, group: Group, value: GroupValue, now_ms: int) -> None:
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
        group.state = STABLE
        group.subscribed_topics = group.compute_subscribed_topics()

    # --- JoinGroup -------------------------------------------------------------------------------

    def join_group(self, request: JoinRequest, now_ms: int, callback: JoinCallback) -> None:
        """Join (or rejoin) a group; ``callback`` gets the answer, maybe only after a rebalance."""
        if not request.group_id or _too_long(request.group_id):
            callback(_join_error(request.member_id, "invalid_group_id"))
            return
        if _too_long(request.group_instance_id) or _too_long(request.client_id):
            callback(_join_error(request.member_id, "invalid_request"))
            return
        if not (
            self.config.min_session_timeout_ms
            <= request.session_timeout_ms
            <= self.config.max_session_timeout_ms
        ):
            callback(_join_error(request.member_id, "invalid_session_timeout"))
            return
        is_unknown = request.member_id == UNKNOWN_MEMBER_ID
        group = self._groups.get(request.group_id)
        if group is None:
            if not is_unknown:
                callback(_join_error(request.member_id, "unknown_member_id"))
                return
            group = self._new_group(request.group_id, now_ms)
        if not self._accept_joining_member(group, request.member_id):
            removed = group.remove(request.member_id)
            if removed is not None:
                self._answer_removed(removed)
            callback(_join_error(UNKNOWN_MEMBER_ID, "group_max_size_reached"))
        elif is_unknown:
            self._join_new_member(group, request, now_ms, callback)
        else:
            self._join_current_member(group, request, now_ms, callback)
        if group.is_(PREPARING):
            self._maybe_complete_join(group, now_ms)
            self._run_join_timer(group, now_ms)

    def _new_group(self, group_id: str, now_ms: int) -> Group:
        group = Group(group_id, state_timestamp_ms=now_ms)
        self._groups[group_id] = group
        return group

    def _accept_joining_member(self, group: Group, member_id: str) -> bool:
        if group.state in (EMPTY, DEAD):
            return True
        if group.is_(PREPARING):
            existing = group.members.get(member_id)
            return (existing is not None and existing.awaiting_join) or (
                group.num_awaiting_join < self.config.max_size
            )
        return group.has(member_id) or group.size < self.config.max_size

    def _join_new_member(
        self, group: Group, request: JoinRequest, now_ms: int, callback: JoinCallback
    ) -> None:
        if group.is_(DEAD):
            callback(_join_error(UNKNOWN_MEMBER_ID, "coordinator_not_available"))
            return
        names = [name for name, _ in request.protocols]
        if not group.supports_protocols(request.protocol_type, names):
            callback(_join_error(UNKNOWN_MEMBER_ID, "inconsistent_group_protocol"))
            return
        prefix = request.group_instance_id if request.group_instance_id is not None else (
            request.client_id
        )
        new_id = f"{prefix}-{self._suffix()}"
        if request.group_instance_id is not None:
            old_id = group.static_members.get(request.group_instance_id)
            if old_id is not None:
                self._update_static_member_and_rebalance(
                    group, old_id, new_id, request, now_ms, callback
                )
            else:
                self._add_member_and_rebalance(group, new_id, request, now_ms, callback)
        elif request.require_known_member_id:
            # KIP-394: hand out the id and have the client come back with it, so a client that
            # times out and retries does not leave a ghost member the rebalance must wait for.
            group.pending_members[new_id] = now_ms + request.session_timeout_ms
            callback(_join_error(new_id, "member_id_required"))
        else:
            self._add_member_and_rebalance(group, new_id, request, now_ms, callback)

    def _join_current_member(
        self, group: Group, request: JoinRequest, now_ms: int, callback: JoinCallback
    ) -> None:
        member_id = request.member_id
        if group.is_(DEAD):
            callback(_join_error(member_id, "coordinator_not_available"))
            return
        names = [name for name, _ in request.protocols]
        if not group.supports_protocols(request.protocol_type, names):
            callback(_join_error(member_id, "inconsistent_group_protocol"))
            return
        if member_id in group.pending_members:
            if request.group_instance_id is not None:
                # Pending ids are only handed to dynamic members (Kafka raises here).
                callback(_join_error(member_id, "unknown_member_id"))
                return
            self._add_member_and_rebalance(group, member_id, request, now_ms, callback)
            return
        error = self._validate_current_member(group, member_id, request.group_instance_id)
        if error is not None:
            callback(_join_error(member_id, error))
            return
        member = group.members[member_id]
        protocols = list(request.protocols)
        if group.is_(PREPARING):
            self._update_member_and_rebalance(group, member, request, now_ms, callback)
        elif group.is_(COMPLETING):
            if member.matches(protocols):
                # The member probably missed our JoinGroup answer: give it the same one again.
                callback(self._current_generation(group, member_id, with_members=True))
            else:
                self._update_member_and_rebalance(group, member, request, now_ms, callback)
        elif group.is_(STABLE):
            if group.is_leader(member_id) or not member.matches(protocols):
                # A leader's rejoin is how a client asks for a rebalance (e.g. topic metadata
                # changed), so it always triggers one.
                self._update_member_and_rebalance(group, member, request, now_ms, callback)
            else:
                callback(self._current_generation(group, member_id, with_members=False))
        else:  # Empty with a member id we somehow know: have the client start over
            callback(_join_error(member_id, "unknown_member_id"))

    def _current_generation(self, group: Group, member_id: str, with_members: bool) -> JoinResult:
        members = (
            tuple(group.current_member_metadata())
            if with_members and group.is_leader(member_id) else ()
        )
        return JoinResult(
            error="none", member_id=member_id, generation_id=group.generation_id,
            protocol_type=group.protocol_type, protocol_name=group.protocol_name,
            leader=group.leader_id or "", members=members,
        )

    def _validate_current_member(
        self, group: Group, member_id: str, group_instance_id: str | None
    ) -> str | None:
        """UNKNOWN_MEMBER_ID / FENCED_INSTANCE_ID, as Kafka's validateCurrentMember."""
        if group_instance_id is not None:
            current = group.static_members.get(group_instance_id)
            if current is None:
                return "unknown_member_id"
            if current != member_id:
                log.info("group %s: member %s of static instance %s is fenced by member %s",
                         group.group_id, member_id, group_instance_id, current)
                return "fenced_instance_id"
            return None
        return None if group.has(member_id) else "unknown_member_id"

    def _add_member_and_rebalance(
        self, group: Group, member_id: str, request: JoinRequest, now_ms: int,
        callback: JoinCallback,
    ) -> None:
        member = Member(
            member_id, request.group_instance_id, request.client_id, request.client_host,
            request.rebalance_timeout_ms, request.session_timeout_ms, request.protocol_type,
            list(request.protocols), is_new=True,
            # A new member cannot heartbeat until it has a generation; drop it if it never gets
            # one (its client gave up), rather than wait on it forever.
            heartbeat_deadline_ms=now_ms + NEW_MEMBER_JOIN_TIMEOUT_MS,
        )
        if group.is_(PREPARING) and group.generation_id == 0:
            group.new_member_added = True
        group.add(member, callback)
        log.info("group %s: member %s joins (instance %s, client %s)", group.group_id, member_id,
                 request.group_instance_id, request.client_id)
        self._maybe_prepare_rebalance(group, now_ms, f"new member {member_id} joined")

    def _update_member_and_rebalance(
        self, group: Group, member: Member, request: JoinRequest, now_ms: int,
        callback: JoinCallback,
    ) -> None:
        group.update_member(member, list(request.protocols), request.rebalance_timeout_ms,
                            request.session_timeout_ms, callback)
        self._maybe_prepare_rebalance(group, now_ms, f"member {member.member_id} rejoined")

    def _update_static_member_and_rebalance(
        self, group: Group, old_id: str, new_id: str, request: JoinRequest, now_ms: int,
        callback: JoinCallback,
    ) -> None:
        instance_id = request.group_instance_id
        assert instance_id is not None
        current_leader = group.leader_id
        member = group.replace_static_member(instance_id, old_id, new_id, self._fence)
        member.heartbeat_deadline_ms = now_ms + member.session_timeout_ms
        old_protocols = member.protocols
        old_timeouts = (member.rebalance_timeout_ms, member.session_timeout_ms)
        group.update_member(member, list(request.protocols), request.rebalance_timeout_ms,
                            request.session_timeout_ms, callback)
        log.info("group %s: static member %s rejoins as %s (was %s) in %s", group.group_id,
                 instance_id, new_id, old_id, group.state.value)
        if group.is_(STABLE):
            if group.protocol_name != group.select_protocol():
                self._maybe_prepare_rebalance(
                    group, now_ms, f"static member {instance_id} changed the group's protocol"
                )
                return
            # The new member id is answered once the group metadata naming it is committed.
            assignment = {m.member_id: m.assignment for m in group.members.values()}
            generation = group.generation_id

            def stored(error: str | None) -> None:
                if (not group.is_(STABLE) or group.generation_id != generation
                        or member.join_callback is not callback
                        or group.static_members.get(instance_id) != new_id):
                    return  # the group moved on meanwhile; its rebalance answers the member
                if error is not None:
                    # Undo the replacement: the old member id stays valid.
                    member.join_callback = None
                    member.protocols = old_protocols
                    member.rebalance_timeout_ms, member.session_timeout_ms = old_timeouts
                    group.replace_static_member(instance_id, new_id, old_id, lambda _m: None)
                    callback(JoinResult(error=error, member_id=UNKNOWN_MEMBER_ID,
                                        generation_id=group.generation_id,
                                        protocol_type=group.protocol_type,
                                        protocol_name=group.protocol_name,
                                        leader=current_leader or ""))
                    return
                if request.supports_skip_assignment:
                    is_leader = group.is_leader(new_id)
                    result = JoinResult(
                        error="none", member_id=new_id, generation_id=group.generation_id,
                        protocol_type=group.protocol_type, protocol_name=group.protocol_name,
                        leader=group.leader_id or "",
                        skip_assignment=is_leader,
                        members=tuple(group.current_member_metadata()) if is_leader else (),
                    )
                else:
                    # Before KIP-814 the leader is given the *old* leader id, so it does not
                    # believe itself leader and runs no assignor whose result a Stable group
                    # would ignore.
                    result = JoinResult(
                        error="none", member_id=new_id, generation_id=group.generation_id,
                        protocol_type=group.protocol_type, protocol_name=group.protocol_name,
                        leader=current_leader or "",
                    )
                member.invoke_join(result)

            self._store_group(group, assignment, now_ms, stored)
        elif group.is_(COMPLETING):
            # The leader may already be computing an assignment naming the old member id.
            self._prepare_rebalance(group, now_ms, f"static member {instance_id} rejoined")
        # PreparingRebalance: the member simply waits with everybody else.

    def _fence(self, member: Member) -> None:
        member.invoke_join(_join_error(member.member_id, "fenced_instance_id"))
        member.invoke_sync(SyncResult("fenced_instance_id"))

    # --- the rebalance ---------------------------------------------------------------------------

    def _maybe_prepare_rebalance(self, group: Group, now_ms: int, reason: str) -> None:
        if group.can_rebalance:
            self._prepare_rebalance(group, now_ms, reason)

    def _prepare_rebalance(self, group: Group, now_ms: int, reason: str) -> None:
        if group.is_(COMPLETING):
            self._reset_and_propagate_assignment_error(group, "rebalance_in_progress", now_ms)
        group.pending_sync.clear()
        group.sync_deadline_ms = None
        if group.is_(EMPTY):
            delay = self.config.initial_rebalance_delay_ms
            group.initial_delay_ms = delay
            group.initial_delay_remaining_ms = max(group.rebalance_timeout_ms - delay, 0)
            group.join_deadline_ms = now_ms + delay
        else:
            group.initial_delay_ms = None
            group.join_deadline_ms = now_ms + group.rebalance_timeout_ms
        group.transition_to(PREPARING, now_ms)
        log.info("group %s: preparing to rebalance from generation %d (%s)", group.group_id,
                 group.generation_id, reason)
        self._maybe_complete_join(group, now_ms)

    def _maybe_complete_join(self, group: Group, now_ms: int) -> None:
        # During the initial delay only the timer ends the join phase (KIP-134).
        if group.is_(PREPARING) and group.initial_delay_ms is None and group.has_all_members_joined:
            self._complete_join(group, now_ms)

    def _run_join_timer(self, group: Group, now_ms: int) -> None:
        # A loop, because a zero initial delay may re-arm itself at the same instant.
        for _ in range(4):
            deadline = group.join_deadline_ms
            if not group.is_(PREPARING) or deadline is None or now_ms < deadline:
                return
            if group.initial_delay_ms is not None:
                if group.new_member_added and group.initial_delay_remaining_ms != 0:
                    # Members are still arriving: wait one more delay (InitialDelayedJoin).
                    group.new_member_added = False
                    delay = min(self.config.initial_rebalance_delay_ms,
                                group.initial_delay_remaining_ms)
                    group.initial_delay_remaining_ms = max(
                        group.initial_delay_remaining_ms - group.initial_delay_ms, 0
                    )
                    group.initial_delay_ms = delay
                    group.join_deadline_ms = now_ms + delay
                    continue
                group.initial_delay_ms = None
            self._complete_join(group, now_ms)

    def _complete_join(self, group: Group, now_ms: int) -> None:
        """End the join phase (Kafka's onCompleteJoin)."""
        group.join_deadline_ms = None
        group.initial_delay_ms = None
        for member in list(group.members.values()):
            if not member.awaiting_join and not member.is_static:
                log.info("group %s: member %s did not rejoin in time; removing it",
                         group.group_id, member.member_id)
                self._answer_removed(member)
                group.remove(member.member_id)
        if group.is_(DEAD):
            return
        if not group.maybe_elect_new_joined_leader() and group.members:
            # Only static members that have not rejoined are left: wait for them (or for their
            # sessions to expire) for another rebalance timeout.
            group.join_deadline_ms = now_ms + group.rebalance_timeout_ms
            return
        group.generation_id += 1
        group.pending_sync.clear()
        if group.members:
            group.protocol_name = group.select_protocol()
            group.subscribed_topics = group.compute_subscribed_topics()
            group.transition_to(COMPLETING, now_ms)
        else:
            group.protocol_name = None
            group.subscribed_topics = None
            group.transition_to(EMPTY, now_ms)
        # Record the new generation before anyone hears of it, so that after a restart the
        # generation continues from here and (group, generation) never names two assignments.
        self._store_group_start(group, now_ms)
        if group.is_(EMPTY):
            log.info("group %s is empty at generation %d", group.group_id, group.generation_id)
            return
        log.info("group %s: generation %d with %d member(s), protocol %s, leader %s",
                 group.group_id, group.generation_id, group.size, group.protocol_name,
                 group.leader_id)
        for member in list(group.members.values()):
            member.invoke_join(
                self._current_generation(group, member.member_id, with_members=True)
            )
            member.heartbeat_deadline_ms = now_ms + member.session_timeout_ms
            member.is_new = False
            group.pending_sync.add(member.member_id)
        group.sync_deadline_ms = now_ms + group.rebalance_timeout_ms

    def _reset_and_propagate_assignment_error(self, group: Group, error: str, now_ms: int) -> None:
        for member in group.members.values():
            member.assignment = b""
        self._propagate_assignment(group, error, now_ms)

    def _propagate_assignment(self, group: Group, error: str, now_ms: int) -> None:
        ok = error == "none"
        for member in list(group.members.values()):
            result = SyncResult(
                error,
                group.protocol_type if ok else None,
                group.protocol_name if ok else None,
                member.assignment,
            )
            if member.invoke_sync(result):
                member.heartbeat_deadline_ms = now_ms + member.session_timeout_ms

    def _answer_removed(self, member: Member) -> None:
        """Answer whatever a member being removed still has parked."""
        member.invoke_join(_join_error(UNKNOWN_MEMBER_ID, "unknown_member_id"))
        member.invoke_sync(SyncResult("unknown_member_id"))

    def _remove_member_and_update_group(
        self, group: Group, member: Member, now_ms: int, reason: str
    ) -> None:
        log.info("group %s: removing member %s (%s)", group.group_id, member.member_id, reason)
        self._answer_removed(member)
        group.remove(member.member_id)
        if group.state in (STABLE, COMPLETING):
            self._maybe_prepare_rebalance(group, now_ms, reason)
        elif group.is_(PREPARING):
            self._maybe_complete_join(group, now_ms)

    # --- SyncGroup -------------------------------------------------------------------------------

    def sync_group(
        self,
        group_id: str,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None,
        protocol_type: str | None,
        protocol_name: str | None,
        assignments: Mapping[str, bytes],
        now_ms: int,
        callback: SyncCallback,
    ) -> None:
        """Collect the assignment: the leader brings it, followers wait for it."""
        if not group_id:
            callback(SyncResult("invalid_group_id"))
            return
        group = self._groups.get(group_id)
        if group is None:
            callback(SyncResult("unknown_member_id"))
            return
        error: str | None
        if group.is_(DEAD):
            error = "coordinator_not_available"
        else:
            error = self._validate_current_member(group, member_id, group_instance_id)
        if error is None:
            if generation_id != group.generation_id:
                error = "illegal_generation"
            elif protocol_type is not None and protocol_type != group.protocol_type:
                error = "inconsistent_group_protocol"
            elif protocol_name is not None and protocol_name != group.protocol_name:
                error = "inconsistent_group_protocol"
        if error is not None:
            callback(SyncResult(error))
            return
        if group.is_(EMPTY):
            callback(SyncResult("unknown_member_id"))
        elif group.is_(PREPARING):
            callback(SyncResult("rebalance_in_progress"))
        elif group.is_(COMPLETING):
            member = group.members[member_id]
            previous = member.sync_callback
            member.sync_callback = callback
            if previous is not None and previous is not callback:
                previous(None)  # a re-sent SyncGroup supersedes the parked one
            self._sync_received(group, member_id)
            if group.is_leader(member_id):
                self._complete_sync(group, assignments, now_ms)
        else:  # Stable: whoever asks gets the assignment of this generation again
            self._sync_received(group, member_id)
            member = group.members[member_id]
            callback(SyncResult("none", group.protocol_type, group.protocol_name,
                                member.assignment))
            member.heartbeat_deadline_ms = now_ms + member.session_timeout_ms

    def _sync_received(self, group: Group, member_id: str) -> None:
        group.pending_sync.discard(member_id)
        if not group.pending_sync:
            group.sync_deadline_ms = None

    def _complete_sync(self, group: Group, assignments: Mapping[str, bytes], now_ms: int) -> None:
        # Members the leader left out get an empty assignment (Kafka warns and does the same).
        assignment = {mid: assignments.get(mid, b"") for mid in group.members}
        missing = [mid for mid in group.members if mid not in assignments]
        if missing:
            log.warning("group %s generation %d: leader assigned nothing to %s", group.group_id,
                        group.generation_id, missing)
        generation = group.generation_id

        def stored(error: str | None) -> None:
            # As Kafka's doSyncGroup: only if the group is still waiting for this assignment
            # (a join, leave or timeout meanwhile has already answered the members).
            if (not group.is_(COMPLETING) or group.generation_id != generation
                    or self._groups.get(group.group_id) is not group):
                return
            when = max(now_ms, self._now_ms)
            if error is not None:
                self._reset_and_propagate_assignment_error(group, error, when)
                self._maybe_prepare_rebalance(group, when, f"cannot store the assignment: {error}")
                return
            for member in group.members.values():
                member.assignment = assignment.get(member.member_id, b"")
            group.transition_to(STABLE, when)
            log.info("group %s: generation %d is stable", group.group_id, group.generation_id)
            self._propagate_assignment(group, "none", when)

        self._store_group(group, assignment, now_ms, stored)

    # --- Heartbeat and LeaveGroup ---------------------------------------------------------------

    def heartbeat(
        self, group_id: str, generation_id: int, member_id: str, group_instance_id: str | None,
        now_ms: int,
    ) -> str:
        """Keep a member's session alive; the error tells it whether to rejoin."""
        if not group_id:
            return "invalid_group_id"
        group = self._groups.get(group_id)
        if group is None:
            return "unknown_member_id"
        if group.is_(DEAD):
            return "coordinator_not_available"
        error = self._validate_current_member(group, member_id, group_instance_id)
        if error is not None:
            return error
        if generation_id != group.generation_id:
            return "illegal_generation"
        if group.is_(EMPTY):
            return "unknown_member_id"
        member = group.members[member_id]
        member.heartbeat_deadline_ms = now_ms + member.session_timeout_ms
        return "rebalance_in_progress" if group.is_(PREPARING) else "none"

    def leave_group(
        self, group_id: str, members: Sequence[LeavingMember], now_ms: int
    ) -> tuple[str, list[str]]:
        """Remove members (by member id, or by instance id alone for admin tools, KIP-345);
        returns the top-level error and one error per member."""
        if not group_id:
            return "invalid_group_id", []
        group = self._groups.get(group_id)
        if group is None:
            return "none", ["unknown_member_id"] * len(members)
        if group.is_(DEAD):
            return "coordinator_not_available", []
        errors = []
        for leaving in members:
            reason = f"LeaveGroup ({leaving.reason or 'no reason given'})"
            if leaving.member_id == UNKNOWN_MEMBER_ID:
                current = (
                    group.static_members.get(leaving.group_instance_id)
                    if leaving.group_instance_id is not None else None
                )
                if current is None:
                    errors.append("unknown_member_id")
                else:
                    self._remove_member_and_update_group(
                        group, group.members[current], now_ms, reason
                    )
                    errors.append("none")
            elif leaving.member_id in group.pending_members:
                del group.pending_members[leaving.member_id]
                self._maybe_complete_join(group, now_ms)
                errors.append("none")
            else:
                error = self._validate_current_member(
                    group, leaving.member_id, leaving.group_instance_id
                )
                if error is None:
                    self._remove_member_and_update_group(
                        group, group.members[leaving.member_id], now_ms, reason
                    )
                    errors.append("none")
                else:
                    errors.append(error)
        return "none", errors

    # --- timers ----------------------------------------------------------------------------------

    def tick(self, now_ms: int) -> None:
        """Fire due timers: sessions, pending member ids, rebalance and sync timeouts, offset
        expiry. The driver calls this every few tens of milliseconds."""
        self._now_ms = max(self._now_ms, now_ms)
        for group in list(self._groups.values()):
            self._run_timers(group, now_ms)
        if now_ms >= self._next_expiry_check_ms:
            self._next_expiry_check_ms = now_ms + self.config.offsets_retention_check_interval_ms
            self.expire_offsets(now_ms)

    def _run_timers(self, group: Group, now_ms: int) -> None:
        for member_id, deadline in list(group.pending_members.items()):
            if now_ms >= deadline:
                log.info("group %s: pending member %s never rejoined; forgetting it",
                         group.group_id, member_id)
                del group.pending_members[member_id]
                self._maybe_complete_join(group, now_ms)
        for member in list(group.members.values()):
            if group.members.get(member.member_id) is not member:
                continue
            if now_ms >= member.heartbeat_deadline_ms and not self._heartbeat_excused(member):
                self._remove_member_and_update_group(
                    group, member, now_ms,
                    f"session timeout ({member.session_timeout_ms} ms) expired"
                    if not member.is_new else "new member never completed its join",
                )
        self._run_join_timer(group, now_ms)
        if group.sync_deadline_ms is not None and now_ms >= group.sync_deadline_ms:
            self._expire_pending_sync(group, now_ms)

    @staticmethod
    def _heartbeat_excused(member: Member) -> bool:
        # A member parked in JoinGroup or SyncGroup cannot heartbeat (its connection is busy),
        # except a new one, which is bounded by NEW_MEMBER_JOIN_TIMEOUT_MS instead.
        return not member.is_new and (member.awaiting_join or member.awaiting_sync)

    def _expire_pending_sync(self, group: Group, now_ms: int) -> None:
        group.sync_deadline_ms = None
        if group.state not in (COMPLETING, STABLE) or not group.pending_sync:
            return
        missing = sorted(group.pending_sync)
        for member_id in missing:
            member = group.members.get(member_id)
            if member is not None:
                self._answer_removed(member)
            group.remove(member_id)
        self._prepare_rebalance(group, now_ms, f"no SyncGroup from {missing} in time")

    # --- offsets ---------------------------------------------------------------------------------

    def commit_offsets(
        self,
        group_id: str,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None,
        offsets: Mapping[PartitionKey, OffsetValue],
        api_version: int,
        now_ms: int,
        callback: CommitCallback,
    ) -> None:
        """Commit offsets for a member of the current generation, or (generation -1) for a
        group without members. ``callback`` gets an error name per partition once the commit
        is replicated to the ISR (or has failed); it may run before this returns."""

        def every(error: str) -> None:
            callback({tp: error for tp in offsets})

        if _too_long(group_id):
            every("invalid_group_id")
            return
        group = self._groups.get(group_id)
        if group is None:
            if generation_id < 0:
                # A "simple" group: offsets stored by admin tools or manually assigned consumers.
                group = self._new_group(group_id, now_ms)
            elif api_version >= 9:
                every("group_id_not_found")
                return
            else:
                every("illegal_generation")
                return
        error = self._validate_offset_commit(group, generation_id, member_id, group_instance_id)
        if error is not None:
            every(error)
            return
        if group.is_(COMPLETING):
            # The member has its new generation but not its assignment yet.
            every("rebalance_in_progress")
            return
        member = group.members.get(member_id)
        if member is not None:
            member.heartbeat_deadline_ms = now_ms + member.session_timeout_ms
        self._store_offsets(group, offsets, now_ms, callback)

    def _validate_offset_commit(
        self, group: Group, generation_id: int, member_id: str, group_instance_id: str | None
    ) -> str | None:
        if group.is_(DEAD):
            return "coordinator_not_available"
        if generation_id < 0 and group.is_(EMPTY):
            return None
        if generation_id >= 0 or member_id != UNKNOWN_MEMBER_ID or group_instance_id is not None:
            error = self._validate_current_member(group, member_id, group_instance_id)
            if error is not None:
                return error
            return "illegal_generation" if generation_id != group.generation_id else None
        # Generation -1 from outside the group while it has members.
        return "unknown_member_id"

    def _store_offsets(
        self, group: Group, offsets: Mapping[PartitionKey, OffsetValue], now_ms: int,
        callback: CommitCallback,
    ) -> None:
        """Kafka's storeOffsets: the commit is pending until its records are committed, then
        visible to OffsetFetch; the client hears of it only then."""
        result: dict[PartitionKey, str] = {}
        valid: dict[PartitionKey, OffsetValue] = {}
        for tp, value in offsets.items():
            if len(value.metadata) > self.config.offset_metadata_max_bytes or _too_long(
                value.metadata
            ):
                result[tp] = "offset_metadata_too_large"
            else:
                valid[tp] = value
        if not valid:
            callback(result)
            return
        records = [
            (encode_offset_key(OffsetKey(group.group_id, topic, partition)),
             encode_offset_value(value))
            for (topic, partition), value in valid.items()
        ]

        def appended(error: str | None) -> None:
            if error is None:
                if not group.is_(DEAD):
                    for tp, value in valid.items():
                        group.on_offset_commit_committed(tp, value)
                result.update({tp: "none" for tp in valid})
            else:
                if not group.is_(DEAD):
                    for tp, value in valid.items():
                        group.fail_pending_offset_commit(tp, value)
                log.warning("cannot store offsets of group %s: %s", group.group_id, error)
                mapped = _STORE_OFFSETS_ERRORS.get(error, error)
                result.update({tp: mapped for tp in valid})
            callback(result)

        group.prepare_offset_commit(valid)
        self._append_committed(group.group_id, records, now_ms, appended)

    def fetch_offsets(
        self, group_id: str, partitions: Sequence[PartitionKey] | None
    ) -> list[tuple[PartitionKey, OffsetValue | None]]:
        """Committed offsets (None where nothing is committed); every one when ``partitions``
        is None. Any group may be asked, whatever its state, as Kafka allows."""
        group = self._groups.get(group_id)
        if group is None or group.is_(DEAD):
            return [] if partitions is None else [(tp, None) for tp in partitions]
        if partitions is None:
            return sorted(group.offsets.items())
        return [(tp, group.offsets.get(tp)) for tp in partitions]

    def delete_offsets(
        self, group_id: str, partitions: Sequence[PartitionKey], now_ms: int
    ) -> tuple[str, dict[PartitionKey, str]]:
        """OffsetDelete: allowed for an empty group, or for topics a consumer group does not
        subscribe to (KIP-496)."""
        if not group_id:
            return "invalid_group_id", {}
        group = self._groups.get(group_id)
        if group is None or group.is_(DEAD):
            return "group_id_not_found", {}
        errors: dict[PartitionKey, str] = {}
        if group.is_(EMPTY):
            eligible = list(partitions)
        elif group.protocol_type == CONSUMER_PROTOCOL_TYPE:
            eligible = []
            for tp in partitions:
                if group.is_subscribed_to(tp[0]):
                    errors[tp] = "group_subscribed_to_topic"
                else:
                    eligible.append(tp)
        else:
            return "non_empty_group", {}
        if eligible:
            error = self._remove_offsets(group, eligible, now_ms)
            errors.update({tp: error or "none" for tp in eligible})
        return "none", errors

    def _remove_offsets(
        self, group: Group, partitions: Iterable[PartitionKey], now_ms: int
    ) -> str | None:
        """Tombstone and forget offsets; an Empty group left with none is deleted (Kafka's
        cleanupGroupMetadata). Returns a client-facing error if the log refused the write."""
        removed = [
            tp for tp in dict.fromkeys(partitions)
            if tp in group.offsets or tp in group.pending_offsets
        ]
        records: list[KeyValue] = [
            (encode_offset_key(OffsetKey(group.group_id, topic, partition)), None)
            for topic, partition in removed
        ]
        left = (group.offsets.keys() | group.pending_offsets.keys()) - set(removed)
        dies = group.is_(EMPTY) and not left
        if dies and group.generation_id > 0:
            records.append((encode_group_key(GroupKey(group.group_id)), None))
        if records:
            # Tombstones first: if they cannot be written, memory keeps agreeing with the log.
            error = self._append(group.group_id, records, now_ms)
            if error is not None:
                log.warning("cannot delete offsets of group %s: %s", group.group_id, error)
                return _STORE_OFFSETS_ERRORS.get(error, error)
        group.remove_offsets(removed)
        if dies:
            group.transition_to(DEAD, now_ms)
            del self._groups[group.group_id]
            log.info("group %s is dead and removed (generation %d)", group.group_id,
                     group.generation_id)
        return None

    def expire_offsets(self, now_ms: int) -> int:
        """KIP-211 offset expiry (see the module docstring); returns offsets removed."""
        removed = 0
        for group in list(self._groups.values()):
            expired = self._expired_offsets(group, now_ms)
            if expired or (group.is_(EMPTY) and not group.has_offsets):
                if self._remove_offsets(group, expired, now_ms) is None:
                    removed += len(expired)
        if removed:
            log.info("expired %d committed offset(s)", removed)
        return removed

    def _expired_offsets(self, group: Group, now_ms: int) -> list[PartitionKey]:
        retention = self.config.offsets_retention_ms

        def expired(base: Callable[[OffsetValue], int],
                    keep_topics: frozenset[str] = frozenset()) -> list[PartitionKey]:
            out = []
            for tp, value in group.offsets.items():
                if tp[0] in keep_topics or tp in group.pending_offsets:
                    continue
                if value.expire_timestamp_ms is not None:
                    if now_ms >= value.expire_timestamp_ms:
                        out.append(tp)
                elif now_ms - base(value) >= retention:
                    out.append(tp)
            return out

        if group.protocol_type is not None and group.is_(EMPTY):
            since = group.state_timestamp_ms
            return expired(lambda v: since if since >= 0 else v.commit_timestamp_ms)
        if (group.protocol_type == CONSUMER_PROTOCOL_TYPE and group.is_(STABLE)
                and group.subscribed_topics is not None):
            return expired(lambda v: v.commit_timestamp_ms, group.subscribed_topics)
        if group.protocol_type is None:
            return expired(lambda v: v.commit_timestamp_ms)
        return []

    def remove_topic_offsets(self, topic: str, now_ms: int | None = None) -> None:
        """Forget committed offsets of a deleted topic (Kafka's handleDeletedPartitions)."""
        when = self._now_ms if now_ms is None else now_ms
        for group in list(self._groups.values()):
            gone = [tp for tp in (*group.offsets, *group.pending_offsets) if tp[0] == topic]
            if gone:
                self._remove_offsets(group, gone, when)

    # --- DescribeGroups, ListGroups, DeleteGroups -----------------------------------------------

    def describe_group(self, group_id: str) -> GroupSummary | None:
        group = self._groups.get(group_id)
        if group is None:
            return None
        stable = group.is_(STABLE) and group.protocol_name is not None
        members = tuple(
            MemberSummary(
                m.member_id, m.group_instance_id, m.client_id, m.client_host,
                m.metadata(group.protocol_name) if stable and group.protocol_name else b"",
                m.assignment if stable else b"",
            )
            for m in group.members.values()
        )
        return GroupSummary(
            group.group_id, group.state.value, group.protocol_type or "",
            (group.protocol_name or "") if stable else "", members,
        )

    def list_groups(
        self, states: Iterable[str] = (), types: Iterable[str] = ()
    ) -> list[GroupOverview]:
        """Groups, filtered by state and type names (case-insensitive; every group here is a
        "classic" group)."""
        wanted_states = {s.lower() for s in states}
        wanted_types = {t.lower() for t in types}
        if wanted_types and "classic" not in wanted_types:
            return []
        return [
            GroupOverview(g.group_id, g.protocol_type or "", g.state.value)
            for g in sorted(self._groups.values(), key=lambda g: g.group_id)
            if not wanted_states or g.state.value.lower() in wanted_states
        ]

    def delete_groups(self, group_ids: Iterable[str], now_ms: int) -> dict[str, str]:
        """DeleteGroups: only groups without members; their offsets go too."""
        errors: dict[str, str] = {}
        for group_id in group_ids:
            group = self._groups.get(group_id)
            if group is None or group.is_(DEAD):
                errors[group_id] = "group_id_not_found"
            elif not group.is_(EMPTY):
                errors[group_id] = "non_empty_group"
            else:
                # Removing every offset of an Empty group deletes the group itself.
                every = [*group.offsets, *group.pending_offsets]
                errors[group_id] = self._remove_offsets(group, every, now_ms) or "none"
        return errors
