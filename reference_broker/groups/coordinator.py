"""The group coordinator: the classic consumer-group protocol as a sans-I/O state machine.

This is Kafka's classic group coordinator (``kafka.coordinator.group.GroupCoordinator``, and the
"classic group" of the KIP-848 coordinator that replaced it in Kafka 4), without threads,
sockets or clocks. Every operation takes ``now_ms``; operations that Kafka answers later
(JoinGroup, SyncGroup, OffsetCommit) take a callback and call it exactly once, possibly during a
later call or :meth:`GroupCoordinator.tick`.

:class:`GroupCoordinator` is the one object the broker's request handlers, the broker and the
tests talk to; it holds the groups this node coordinates and hands each call to the module
whose rules it follows (read their docstrings for the theory of operation):

* :mod:`~reference_broker.groups.membership`: JoinGroup, SyncGroup, Heartbeat, LeaveGroup, the
  rebalance, static members and the timers: the group states and what moves a group between
  them;
* :mod:`~reference_broker.groups.offsets`: OffsetCommit validation, OffsetFetch, OffsetDelete,
  DeleteGroups and offset expiry (KIP-211); transactional offset commits (TxnOffsetCommit,
  KIP-98 and KIP-447), pending per producer until the transaction's marker reaches the group's
  offsets partition (:meth:`GroupCoordinator.complete_transaction`);
* :mod:`~reference_broker.groups.persistence`: the records of groups and offsets in
  ``__consumer_offsets``, what a failed write becomes for the client, and loading or unloading
  the groups of a partition as this node gains or loses its leadership.

The first two are pure decisions over :class:`~reference_broker.groups.group.Group` state and
ask the third for every write, as :mod:`reference_broker.controller.core` asks its ``append``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping

import attrs

from reference_broker.groups.config import GroupConfig
from reference_broker.groups.group import Group, GroupState
from reference_broker.groups.membership import (
    NEW_MEMBER_JOIN_TIMEOUT_MS,
    JoinRequest,
    JoinResult,
    LeavingMember,
    Membership,
    SyncResult,
)
from reference_broker.groups.offsets import Offsets
from reference_broker.groups.persistence import GroupPersistence
from reference_broker.groups.storage import OffsetsLog

# The names callers import from here, wherever they are defined now.
__all__ = [
    "NEW_MEMBER_JOIN_TIMEOUT_MS",
    "GroupConfig",
    "GroupCoordinator",
    "GroupOverview",
    "GroupSummary",
    "JoinRequest",
    "JoinResult",
    "LeavingMember",
    "MemberSummary",
    "SyncResult",
]


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
        self._groups: dict[str, Group] = {}
        self._next_expiry_check_ms = now_ms + config.offsets_retention_check_interval_ms
        self._now_ms = now_ms  # the latest time seen, for the few calls that carry none
        self._persistence = GroupPersistence(
            storage, self._groups, config.offsets_commit_timeout_ms, owned
        )
        self._membership = Membership(
            config, self._groups, self._persistence,
            new_member_suffix or (lambda: str(uuid.uuid4())), self._latest_ms,
        )
        self._offsets = Offsets(config, self._groups, self._persistence, self._latest_ms)
        self._persistence.load_all(now_ms, self._membership.loaded)
        # The requests, each answered by the module whose rules it follows.
        self.ensure_storage = self._persistence.ensure_storage
        self.coordinator_error = self._persistence.coordinator_error
        self.join_group = self._membership.join_group
        self.sync_group = self._membership.sync_group
        self.heartbeat = self._membership.heartbeat
        self.leave_group = self._membership.leave_group
        self.commit_offsets = self._offsets.commit_offsets
        self.commit_txn_offsets = self._offsets.commit_txn_offsets
        self.fetch_offsets = self._offsets.fetch_offsets
        self.fetch_stable_offsets = self._offsets.fetch_stable_offsets
        self.delete_offsets = self._offsets.delete_offsets
        self.delete_groups = self._offsets.delete_groups
        self.expire_offsets = self._offsets.expire_offsets
        self.remove_topic_offsets = self._offsets.remove_topic_offsets

    def _latest_ms(self) -> int:
        return self._now_ms

    # --- inspection (tests, DescribeGroups) --------------------------------------------------

    def group(self, group_id: str) -> Group | None:
        return self._groups.get(group_id)

    @property
    def groups(self) -> Mapping[str, Group]:
        return self._groups

    # --- which groups are ours -----------------------------------------------------------------

    def load_partition(self, partition: int, now_ms: int) -> None:
        """Become coordinator of the groups of offsets partition ``partition`` (this node now
        leads it): rebuild them from its records."""
        self._persistence.load_partition(partition, now_ms, self._membership.loaded)

    def unload_partition(self, partition: int) -> None:
        """Stop coordinating the groups of offsets partition ``partition`` (another broker
        leads it now): forget them; requests parked in JoinGroup or SyncGroup get
        NOT_COORDINATOR so their members find the new coordinator."""
        self._persistence.unload_partition(partition, self._membership.unloaded)

    # --- transactions ---------------------------------------------------------------------------

    def complete_transaction(
        self, offsets_partition: int, producer_id: int, commit: bool, now_ms: int
    ) -> int:
        """A COMMIT (``commit``) or ABORT marker of ``producer_id``'s transaction is committed
        in offsets partition ``offsets_partition``: the transactional offsets the producer
        committed for that partition's groups become visible, or are dropped (Kafka's
        GroupCoordinator.scheduleHandleTxnCompletion, which WriteTxnMarkers calls once the
        marker's acks=-1 append is done). Returns how many groups had some."""
        self._now_ms = max(self._now_ms, now_ms)
        return self._offsets.complete_transaction(
            self._persistence.groups_in_partition(offsets_partition), producer_id, commit
        )

    # --- timers --------------------------------------------------------------------------------

    def tick(self, now_ms: int) -> None:
        """Fire due timers: sessions, pending member ids, rebalance and sync timeouts, offset
        expiry. The driver calls this every few tens of milliseconds."""
        self._now_ms = max(self._now_ms, now_ms)
        self._membership.tick(now_ms)
        if now_ms >= self._next_expiry_check_ms:
            self._next_expiry_check_ms = now_ms + self.config.offsets_retention_check_interval_ms
            self.expire_offsets(now_ms)

    # --- DescribeGroups, ListGroups -------------------------------------------------------------

    def describe_group(self, group_id: str) -> GroupSummary | None:
        group = self._groups.get(group_id)
        if group is None:
            return None
        stable = group.is_(GroupState.STABLE) and group.protocol_name is not None
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
