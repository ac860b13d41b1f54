"""One consumer group's membership and committed offsets, and the table of legal state changes.

This module is bookkeeping only: who is in the group, what each member supports, who is leader,
which protocol was chosen, and what has been committed. When to change state, and what to answer,
is decided by :mod:`reference_broker.groups.membership` and :mod:`reference_broker.groups.offsets`.
Names follow Kafka's GroupMetadata / MemberMetadata (kafka.coordinator.group) so the two can be
read side by side.

Legal transitions (Kafka's ``GroupMetadata.validPreviousStates``; see the theory of operation in
:mod:`reference_broker.groups.membership` for what triggers each)::

    to \\ from           Empty  PreparingRebalance  CompletingRebalance  Stable  Dead
    PreparingRebalance   yes           -                  yes             yes     -
    CompletingRebalance   -           yes                  -               -      -
    Stable                -            -                  yes              -      -
    Empty                 -           yes                  -               -      -
    Dead                 yes          yes                 yes             yes    yes
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from reference_broker.groups.log_format import OffsetValue

CONSUMER_PROTOCOL_TYPE = "consumer"


class GroupState(enum.Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


VALID_PREVIOUS_STATES: dict[GroupState, frozenset[GroupState]] = {
    GroupState.PREPARING_REBALANCE: frozenset(
        {GroupState.EMPTY, GroupState.COMPLETING_REBALANCE, GroupState.STABLE}
    ),
    GroupState.COMPLETING_REBALANCE: frozenset({GroupState.PREPARING_REBALANCE}),
    GroupState.STABLE: frozenset({GroupState.COMPLETING_REBALANCE}),
    GroupState.EMPTY: frozenset({GroupState.PREPARING_REBALANCE}),
    GroupState.DEAD: frozenset(GroupState),
}


class IllegalTransition(RuntimeError):
    """A state change the table forbids: a coordinator bug, never a client's fault."""


Callback = Callable[[Any], None]


@attrs.define(eq=False)
class Member:
    """A member of a group (Kafka's MemberMetadata)."""

    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]  # (name, metadata) in the member's preference order
    assignment: bytes = b""
    join_callback: Callback | None = None  # a parked JoinGroup
    sync_callback: Callback | None = None  # a parked SyncGroup
    is_new: bool = False  # joined but not yet through a completed join phase
    heartbeat_deadline_ms: int = 0  # removed when this passes (see Membership.tick)

    @property
    def is_static(self) -> bool:
        return self.group_instance_id is not None

    @property
    def awaiting_join(self) -> bool:
        return self.join_callback is not None

    @property
    def awaiting_sync(self) -> bool:
        return self.sync_callback is not None

    @property
    def protocol_names(self) -> list[str]:
        return [name for name, _ in self.protocols]

    def metadata(self, protocol: str) -> bytes:
        for name, metadata in self.protocols:
            if name == protocol:
                return metadata
        raise KeyError(protocol)

    def matches(self, protocols: list[tuple[str, bytes]]) -> bool:
        """Same protocols with the same metadata, in the same order (MemberMetadata.matches)."""
        return self.protocols == protocols

    def vote(self, candidates: Iterable[str]) -> str:
        """The first of this member's protocols that every member supports."""
        allowed = set(candidates)
        for name in self.protocol_names:
            if name in allowed:
                return name
        raise IllegalTransition(f"member {self.member_id} supports none of {sorted(allowed)}")

    def invoke_join(self, result: Any) -> bool:
        """Answer a parked JoinGroup, if there is one; whether there was."""
        callback, self.join_callback = self.join_callback, None
        return _answer(callback, result)

    def invoke_sync(self, result: Any) -> bool:
        """Answer a parked SyncGroup, if there is one; whether there was."""
        callback, self.sync_callback = self.sync_callback, None
        return _answer(callback, result)


def _answer(callback: Callback | None, result: Any) -> bool:
    if callback is None:
        return False
    callback(result)
    return True


PartitionKey = tuple[str, int]


@attrs.define(eq=False)
class PendingTxnOffset:
    """A transactional offset commit waiting for its transaction to end (an entry of Kafka's
    pendingTransactionalOffsetCommits): the value, and the offset of its record in
    ``__consumer_offsets`` once that record is committed (None until then)."""

    value: OffsetValue
    record_offset: int | None = None
    # The producer's earlier commit of the partition that this one replaced, back in place if
    # this one's write fails: its record is in the log and will count at the marker (Kafka 4
    # rolls a failed write's state back the same way).
    replaced: PendingTxnOffset | None = None


@attrs.define(eq=False)
class Group:
    """A group's state, members and committed offsets (Kafka's GroupMetadata)."""

    group_id: str
    state: GroupState = GroupState.EMPTY
    state_timestamp_ms: int = -1
    generation_id: int = 0
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader_id: str | None = None
    members: dict[str, Member] = attrs.field(factory=dict)  # insertion ordered
    static_members: dict[str, str] = attrs.field(factory=dict)  # instance id -> member id
    pending_members: dict[str, int] = attrs.field(factory=dict)  # member id -> expiry (ms)
    pending_sync: set[str] = attrs.field(factory=set)
    # Committed offsets: OffsetFetch sees these. A commit waits in pending_offsets until its
    # record is replicated to the ISR (Kafka's pendingOffsetCommits; the latest staged commit
    # per partition).
    offsets: dict[PartitionKey, OffsetValue] = attrs.field(factory=dict)
    pending_offsets: dict[PartitionKey, OffsetValue] = attrs.field(factory=dict)
    # Where the record of each committed offset sits in __consumer_offsets (Kafka's
    # appendedBatchOffset): when transactional and plain commits of a partition mix, the one
    # written later wins, whichever completes last.
    record_offsets: dict[PartitionKey, int] = attrs.field(factory=dict)
    # Transactional offset commits (TxnOffsetCommit, KIP-98) per producer id, invisible to
    # OffsetFetch until the producer's transaction commits (Kafka's
    # pendingTransactionalOffsetCommits); an abort drops them.
    pending_txn_offsets: dict[int, dict[PartitionKey, PendingTxnOffset]] = attrs.field(factory=dict)
    subscribed_topics: frozenset[str] | None = None
    # Rebalance timers: the join phase ends at join_deadline_ms (or when everyone has joined,
    # unless initial_delay_ms is set: then only the deadline ends it, KIP-134).
    join_deadline_ms: int | None = None
    initial_delay_ms: int | None = None
    initial_delay_remaining_ms: int = 0
    new_member_added: bool = False
    sync_deadline_ms: int | None = None

    # --- state -----------------------------------------------------------------------------

    def is_(self, state: GroupState) -> bool:
        return self.state is state

    def transition_to(self, state: GroupState, now_ms: int) -> None:
        if self.state not in VALID_PREVIOUS_STATES[state]:
            raise IllegalTransition(
                f"group {self.group_id!r} cannot move from {self.state.value} to {state.value}"
            )
        self.state = state
        self.state_timestamp_ms = now_ms

    @property
    def can_rebalance(self) -> bool:
        return self.state in VALID_PREVIOUS_STATES[GroupState.PREPARING_REBALANCE]

    @property
    def has_offsets(self) -> bool:
        """Committed or pending offsets, transactional ones included (Kafka's
        GroupMetadata.hasOffsets): a group that has any is not cleaned up."""
        return bool(self.offsets or self.pending_offsets or self.pending_txn_offsets)

    @property
    def pending_txn_partitions(self) -> set[PartitionKey]:
        """Partitions with a transactional offset commit of some producer still pending."""
        return {tp for pending in self.pending_txn_offsets.values() for tp in pending}

    def has_pending_offsets(self, tp: PartitionKey) -> bool:
        """A commit of ``tp`` is not settled yet: a plain one not yet replicated, or a
        transactional one whose transaction has not ended (Kafka's
        hasPendingOffsetCommitsForTopicPartition)."""
        return tp in self.pending_offsets or any(
            tp in pending for pending in self.pending_txn_offsets.values()
        )

    # --- offsets (Kafka's prepareOffsetCommit / onOffsetCommitAppend / failPendingOffsetWrite) -

    def prepare_offset_commit(self, offsets: dict[PartitionKey, OffsetValue]) -> None:
        self.pending_offsets.update(offsets)

    def _commit(self, tp: PartitionKey, value: OffsetValue, record_offset: int | None) -> None:
        """Make ``value`` (whose record is at ``record_offset``) the committed offset of ``tp``,
        unless the committed one was written later (Kafka's CommitRecordMetadataAndOffset
        .olderThan; None: unknown, taken as the latest)."""
        current = self.record_offsets.get(tp)
        if record_offset is not None and current is not None and current > record_offset:
            return
        self.offsets[tp] = value
        if record_offset is None:
            self.record_offsets.pop(tp, None)
        else:
            self.record_offsets[tp] = record_offset

    def on_offset_commit_committed(
        self, tp: PartitionKey, value: OffsetValue, record_offset: int | None = None
    ) -> None:
        """The commit of ``value`` (its record at ``record_offset``) is replicated: it becomes
        visible, unless the partition's offsets were deleted meanwhile (then nothing is pending
        for it any more)."""
        if tp in self.pending_offsets:
            self._commit(tp, value, record_offset)
            if self.pending_offsets[tp] is value:
                del self.pending_offsets[tp]

    def fail_pending_offset_commit(self, tp: PartitionKey, value: OffsetValue) -> None:
        if self.pending_offsets.get(tp) is value:
            del self.pending_offsets[tp]

    # --- transactional offsets (Kafka's prepareTxnOffsetCommit, onTxnOffsetCommitAppend,
    # failPendingTxnOffsetCommit and completePendingTxnOffsetCommit) ------------------------------

    def prepare_txn_offset_commit(
        self, producer_id: int, offsets: dict[PartitionKey, OffsetValue]
    ) -> dict[PartitionKey, PendingTxnOffset]:
        """Hold ``offsets`` for ``producer_id``'s transaction (a later commit of a partition by
        the same producer replaces the earlier one); returns the entries, which the caller
        settles once the write is done."""
        pending = self.pending_txn_offsets.setdefault(producer_id, {})
        entries = {tp: PendingTxnOffset(value, replaced=pending.get(tp)) for tp, value in offsets.items()}
        pending.update(entries)
        return entries

    @staticmethod
    def on_txn_offset_commit_append(
        entries: dict[PartitionKey, PendingTxnOffset], record_offset: int | None
    ) -> None:
        """The records of ``entries`` are committed at ``record_offset``."""
        for entry in entries.values():
            entry.record_offset = record_offset
            entry.replaced = None

    def fail_pending_txn_offset_commit(
        self, producer_id: int, entries: dict[PartitionKey, PendingTxnOffset]
    ) -> None:
        """The write of ``entries`` failed: forget those still pending (the client retries),
        putting back what each replaced."""
        pending = self.pending_txn_offsets.get(producer_id)
        if pending is None:
            return
        for tp, entry in entries.items():
            if pending.get(tp) is not entry:
                continue
            if entry.replaced is None:
                del pending[tp]
            else:
                pending[tp] = entry.replaced
        if not pending:
            del self.pending_txn_offsets[producer_id]

    def complete_pending_txn_offset_commit(self, producer_id: int, commit: bool) -> bool:
        """``producer_id``'s transaction ended: on commit its offsets become the committed ones
        (each unless a commit written later is already there), on abort they are dropped.
        Returns whether the producer had any pending here."""
        pending = self.pending_txn_offsets.pop(producer_id, None)
        if pending is None:
            return False
        if commit:
            for tp, entry in pending.items():
                if entry.record_offset is not None:  # else its record was never committed
                    self._commit(tp, entry.value, entry.record_offset)
        return True

    def remove_offsets(self, partitions: Iterable[PartitionKey]) -> None:
        """Forget committed and pending offsets of ``partitions``, transactional ones too."""
        gone = set(partitions)
        for tp in gone:
            self.offsets.pop(tp, None)
            self.pending_offsets.pop(tp, None)
            self.record_offsets.pop(tp, None)
        for producer_id, pending in list(self.pending_txn_offsets.items()):
            for tp in gone.intersection(pending):
                del pending[tp]
            if not pending:
                del self.pending_txn_offsets[producer_id]

    # --- members -----------------------------------------------------------------------------

    def has(self, member_id: str) -> bool:
        return member_id in self.members

    def is_leader(self, member_id: str) -> bool:
        return self.leader_id == member_id

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def num_awaiting_join(self) -> int:
        return sum(1 for member in self.members.values() if member.awaiting_join)

    @property
    def has_all_members_joined(self) -> bool:
        return (
            len(self.members) == self.num_awaiting_join and not self.pending_members
        )

    @property
    def rebalance_timeout_ms(self) -> int:
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    def add(self, member: Member, callback: Callback | None) -> None:
        if member.group_instance_id is not None:
            if member.group_instance_id in self.static_members:
                raise IllegalTransition(f"static member {member.group_instance_id} already present")
            self.static_members[member.group_instance_id] = member.member_id
        if not self.members:
            self.protocol_type = member.protocol_type
        if self.leader_id is None:
            self.leader_id = member.member_id
        member.join_callback = callback
        self.members[member.member_id] = member
        self.pending_members.pop(member.member_id, None)

    def remove(self, member_id: str) -> Member | None:
        member = self.members.pop(member_id, None)
        if member is not None and member.group_instance_id is not None:
            self.static_members.pop(member.group_instance_id, None)
        if self.leader_id == member_id:
            self.leader_id = next(iter(self.members), None)
        self.pending_members.pop(member_id, None)
        self.pending_sync.discard(member_id)
        return member

    def update_member(
        self, member: Member, protocols: list[tuple[str, bytes]], rebalance_timeout_ms: int,
        session_timeout_ms: int, callback: Callback | None,
    ) -> None:
        member.protocols = protocols
        member.rebalance_timeout_ms = rebalance_timeout_ms
        member.session_timeout_ms = session_timeout_ms
        old = member.join_callback
        member.join_callback = callback
        if old is not None and old is not callback:
            # Kafka drops the callback of a JoinGroup the member has re-sent (it was on a
            # connection the client gave up on). Answer it with nothing so that connection is
            # not blocked forever.
            old(None)

    def replace_static_member(self, instance_id: str, old_id: str, new_id: str,
                              fenced: Callable[[Member], None]) -> Member:
        """Give a static member's slot to a new member id; ``fenced`` answers whatever the old
        id still has parked (with FENCED_INSTANCE_ID, KIP-345)."""
        member = self.members.pop(old_id)
        fenced(member)
        member.member_id = new_id
        self.members[new_id] = member
        if self.leader_id == old_id:
            self.leader_id = new_id
        self.static_members[instance_id] = new_id
        self.pending_sync.discard(old_id)
        return member

    def maybe_elect_new_joined_leader(self) -> bool:
        """Keep the leader if it rejoined, else pick any member that did; False if none did."""
        if self.leader_id is None:
            return False
        if self.members[self.leader_id].awaiting_join:
            return True
        for member in self.members.values():
            if member.awaiting_join:
                self.leader_id = member.member_id
                return True
        return False

    # --- protocols ---------------------------------------------------------------------------

    def candidate_protocols(self) -> set[str]:
        members = list(self.members.values())
        common = set(members[0].protocol_names) if members else set()
        for member in members[1:]:
            common &= set(member.protocol_names)
        return common

    def supports_protocols(self, protocol_type: str, protocols: list[str]) -> bool:
        """Kafka's GroupMetadata.supportsProtocols: an empty group takes any non-empty protocol
        type and list; otherwise the type must match and one protocol must be supported by all."""
        if self.is_(GroupState.EMPTY):
            return bool(protocol_type) and bool(protocols)
        # "Supported by every member" holds vacuously while a rebalancing group has no members.
        return protocol_type == self.protocol_type and any(
            all(name in m.protocol_names for m in self.members.values()) for name in protocols
        )

    def select_protocol(self) -> str:
        """Each member votes for its first protocol that all support; most votes wins (ties go
        to the protocol voted for first, in join order: Kafka leaves ties to hash order)."""
        if not self.members:
            raise IllegalTransition("cannot select a protocol for an empty group")
        candidates = self.candidate_protocols()
        votes: dict[str, int] = {}
        for member in self.members.values():
            choice = member.vote(candidates)
            votes[choice] = votes.get(choice, 0) + 1
        best = max(votes.values())
        return next(name for name, count in votes.items() if count == best)

    def current_member_metadata(self) -> list[tuple[str, str | None, bytes]]:
        """(member id, instance id, metadata for the chosen protocol) for the leader."""
        assert self.protocol_name is not None
        return [
            (m.member_id, m.group_instance_id, m.metadata(self.protocol_name))
            for m in self.members.values()
        ]

    def compute_subscribed_topics(self) -> frozenset[str] | None:
        """Topics the members subscribe to, for a "consumer" group whose subscriptions parse."""
        if self.protocol_type != CONSUMER_PROTOCOL_TYPE or self.protocol_name is None:
            return None
        topics: set[str] = set()
        for member in self.members.values():
            parsed = subscription_topics(member.metadata(self.protocol_name))
            if parsed is None:
                return None
            topics |= parsed
        return frozenset(topics)

    def is_subscribed_to(self, topic: str) -> bool:
        # Unknown subscriptions count as subscribed (Kafka: isSubscribedToTopic).
        return self.subscribed_topics is None or topic in self.subscribed_topics


def subscription_topics(metadata: bytes) -> set[str] | None:
    """The topics of a ConsumerProtocolSubscription (int16 version, then an array of strings;
    the same prefix in every version), or None when it does not parse."""
    try:
        (version, count) = struct.unpack_from(">hi", metadata, 0)
        if version < 0 or count < 0 or count > len(metadata):
            return None
        pos = 6
        topics = set()
        for _ in range(count):
            (length,) = struct.unpack_from(">h", metadata, pos)
            pos += 2
            if length < 0 or pos + length > len(metadata):
                return None
            topics.add(metadata[pos : pos + length].decode())
            pos += length
        return topics
    except (struct.error, UnicodeDecodeError):
        return None
