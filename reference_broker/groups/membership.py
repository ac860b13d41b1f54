"""Membership of classic groups: JoinGroup, SyncGroup, Heartbeat, LeaveGroup, the rebalance and
its timers, as pure decisions over :class:`~reference_broker.groups.group.Group` state.

Nothing here writes to ``__consumer_offsets`` or reads a clock: every operation takes
``now_ms``, operations that Kafka answers later (JoinGroup, SyncGroup) take a callback and call
it exactly once, possibly during a later call or :meth:`Membership.tick`, and the two writes
membership needs (the start of a generation, a group's assignment) go through a
:class:`GroupWriter` (:mod:`~reference_broker.groups.persistence` in the broker). Returning
``None`` to a callback means "send no response" (a request superseded by a retry from the same
member). Partition assignment is not done here: the members' client-side assignor (range,
round-robin, sticky, ...) runs in the *leader*, and the coordinator passes the leader's
assignment to each member through SyncGroup.

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
:func:`validate_current_member` is that check; :mod:`~reference_broker.groups.offsets` uses it
for OffsetCommit too.

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
* A SyncGroup's assignment is handed out only once its record is committed (see
  :mod:`~reference_broker.groups.persistence`). The group stays CompletingRebalance while its
  assignment is being replicated; whatever changes the group meanwhile (a join, a leave, a
  timeout) wins and the late write result is ignored (Kafka's doSyncGroup checks state and
  generation the same way).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Protocol

import attrs
from kio.schema.errors import ErrorCode

from reference_broker.groups.config import GroupConfig, too_long
from reference_broker.groups.group import Group, GroupState, Member

log = logging.getLogger(__name__)

EMPTY = GroupState.EMPTY
PREPARING = GroupState.PREPARING_REBALANCE
COMPLETING = GroupState.COMPLETING_REBALANCE
STABLE = GroupState.STABLE
DEAD = GroupState.DEAD

NEW_MEMBER_JOIN_TIMEOUT_MS = 5 * 60 * 1000  # Kafka's GroupCoordinator.NewMemberJoinTimeoutMs
UNKNOWN_MEMBER_ID = ""
NO_GENERATION = -1


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
    error: ErrorCode
    member_id: str
    generation_id: int = NO_GENERATION
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str = ""
    skip_assignment: bool = False
    members: tuple[tuple[str, str | None, bytes], ...] = ()  # only the leader gets them


@attrs.frozen(slots=True)
class SyncResult:
    error: ErrorCode
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignment: bytes = b""


@attrs.frozen(slots=True)
class LeavingMember:
    member_id: str
    group_instance_id: str | None = None
    reason: str | None = None


JoinCallback = Callable[[JoinResult | None], None]
SyncCallback = Callable[[SyncResult | None], None]
StoreCallback = Callable[[ErrorCode | None], None]  # None, or the client-facing error


class GroupWriter(Protocol):
    """The writes membership asks for (Kafka's GroupMetadataManager.storeGroup)."""

    def store_group_start(self, group: Group, now_ms: int) -> None:
        """Record a new generation (without members), not waiting for the followers."""

    def store_group(
        self, group: Group, assignment: Mapping[str, bytes], now_ms: int, callback: StoreCallback
    ) -> None:
        """Write the group with its members and ``assignment``; ``callback`` gets None once it
        is committed, else the client-facing error (maybe before this returns)."""


def join_error(member_id: str, error: ErrorCode) -> JoinResult:
    return JoinResult(error=error, member_id=member_id)


def generation_result(
    group: Group, member_id: str, leader: str | None,
    members: tuple[tuple[str, str | None, bytes], ...] = (), skip_assignment: bool = False,
    error: ErrorCode = ErrorCode.none,
) -> JoinResult:
    """A JoinGroup answer naming the group's current generation and protocol."""
    return JoinResult(
        error=error, member_id=member_id, generation_id=group.generation_id,
        protocol_type=group.protocol_type, protocol_name=group.protocol_name,
        leader=leader or "", skip_assignment=skip_assignment, members=members,
    )


def new_group(groups: MutableMapping[str, Group], group_id: str, now_ms: int) -> Group:
    """Start coordinating a group nobody has used yet (Empty, generation 0)."""
    group = Group(group_id, state_timestamp_ms=now_ms)
    groups[group_id] = group
    return group


def validate_current_member(
    group: Group, member_id: str, group_instance_id: str | None
) -> ErrorCode | None:
    """UNKNOWN_MEMBER_ID / FENCED_INSTANCE_ID, as Kafka's validateCurrentMember."""
    if group_instance_id is not None:
        current = group.static_members.get(group_instance_id)
        if current is None:
            return ErrorCode.unknown_member_id
        if current != member_id:
            log.info("group %s: member %s of static instance %s is fenced by member %s",
                     group.group_id, member_id, group_instance_id, current)
            return ErrorCode.fenced_instance_id
        return None
    return None if group.has(member_id) else ErrorCode.unknown_member_id


class Membership:
    """Joins, syncs, heartbeats, leaves and rebalances of the groups in ``groups`` (shared with
    the rest of the coordinator); see the module docstring.

    ``latest_ms`` is the latest time the coordinator has seen, for answers that a write's
    completion triggers (they carry no time of their own).
    """

    def __init__(
        self,
        config: GroupConfig,
        groups: MutableMapping[str, Group],
        writer: GroupWriter,
        new_member_suffix: Callable[[], str],
        latest_ms: Callable[[], int],
    ) -> None:
        self.config = config
        self._groups = groups
        self._writer = writer
        self._suffix = new_member_suffix
        self._latest_ms = latest_ms

    # --- coordination starts and stops --------------------------------------------------------

    def loaded(self, groups: Sequence[Group], now_ms: int) -> None:
        """Groups rebuilt from ``__consumer_offsets``: one over ``group.max.size`` (the setting
        was lowered) rebalances, so that the members over the limit are turned away."""
        for group in groups:
            if group.size > self.config.max_size:
                self._prepare_rebalance(group, now_ms, "loaded group is over group.max.size")

    def unloaded(self, group: Group) -> None:
        """Another broker coordinates ``group`` now: whatever its members have parked gets
        NOT_COORDINATOR, so they look the new coordinator up."""
        for member in group.members.values():
            member.invoke_join(join_error(member.member_id, ErrorCode.not_coordinator))
            member.invoke_sync(SyncResult(ErrorCode.not_coordinator))

    # --- JoinGroup -------------------------------------------------------------------------------

    def join_group(self, request: JoinRequest, now_ms: int, callback: JoinCallback) -> None:
        """Join (or rejoin) a group; ``callback`` gets the answer, maybe only after a rebalance."""
        if not request.group_id or too_long(request.group_id):
            callback(join_error(request.member_id, ErrorCode.invalid_group_id))
            return
        if too_long(request.group_instance_id) or too_long(request.client_id):
            callback(join_error(request.member_id, ErrorCode.invalid_request))
            return
        if not (
            self.config.min_session_timeout_ms
            <= request.session_timeout_ms
            <= self.config.max_session_timeout_ms
        ):
            callback(join_error(request.member_id, ErrorCode.invalid_session_timeout))
            return
        is_unknown = request.member_id == UNKNOWN_MEMBER_ID
        group = self._groups.get(request.group_id)
        if group is None:
            if not is_unknown:
                callback(join_error(request.member_id, ErrorCode.unknown_member_id))
                return
            group = new_group(self._groups, request.group_id, now_ms)
        if not self._accept_joining_member(group, request.member_id):
            removed = group.remove(request.member_id)
            if removed is not None:
                self._answer_removed(removed)
            callback(join_error(UNKNOWN_MEMBER_ID, ErrorCode.group_max_size_reached))
        elif (error := self._join_refusal(group, request)) is not None:
            callback(join_error(request.member_id, error))
        elif is_unknown:
            self._join_new_member(group, request, now_ms, callback)
        else:
            self._join_current_member(group, request, now_ms, callback)
        if group.is_(PREPARING):
            self._maybe_complete_join(group, now_ms)
            self._run_join_timer(group, now_ms)

    def _accept_joining_member(self, group: Group, member_id: str) -> bool:
        if group.state in (EMPTY, DEAD):
            return True
        if group.is_(PREPARING):
            existing = group.members.get(member_id)
            return (existing is not None and existing.awaiting_join) or (
                group.num_awaiting_join < self.config.max_size
            )
        return group.has(member_id) or group.size < self.config.max_size

    @staticmethod
    def _join_refusal(group: Group, request: JoinRequest) -> ErrorCode | None:
        """Why a group that has room cannot take this JoinGroup at all, if it cannot."""
        if group.is_(DEAD):
            return ErrorCode.coordinator_not_available
        names = [name for name, _ in request.protocols]
        if not group.supports_protocols(request.protocol_type, names):
            return ErrorCode.inconsistent_group_protocol
        return None

    def _join_new_member(
        self, group: Group, request: JoinRequest, now_ms: int, callback: JoinCallback
    ) -> None:
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
            callback(join_error(new_id, ErrorCode.member_id_required))
        else:
            self._add_member_and_rebalance(group, new_id, request, now_ms, callback)

    def _join_current_member(
        self, group: Group, request: JoinRequest, now_ms: int, callback: JoinCallback
    ) -> None:
        member_id = request.member_id
        if member_id in group.pending_members:
            if request.group_instance_id is not None:
                # Pending ids are only handed to dynamic members (Kafka raises here).
                callback(join_error(member_id, ErrorCode.unknown_member_id))
                return
            self._add_member_and_rebalance(group, member_id, request, now_ms, callback)
            return
        error = validate_current_member(group, member_id, request.group_instance_id)
        if error is not None:
            callback(join_error(member_id, error))
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
            callback(join_error(member_id, ErrorCode.unknown_member_id))

    def _current_generation(self, group: Group, member_id: str, with_members: bool) -> JoinResult:
        members = (
            tuple(group.current_member_metadata())
            if with_members and group.is_leader(member_id) else ()
        )
        return generation_result(group, member_id, group.leader_id, members)

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

            def stored(error: ErrorCode | None) -> None:
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
                    callback(generation_result(group, UNKNOWN_MEMBER_ID, current_leader,
                                               error=error))
                    return
                if request.supports_skip_assignment:
                    is_leader = group.is_leader(new_id)
                    result = generation_result(
                        group, new_id, group.leader_id,
                        tuple(group.current_member_metadata()) if is_leader else (),
                        skip_assignment=is_leader,
                    )
                else:
                    # Before KIP-814 the leader is given the *old* leader id, so it does not
                    # believe itself leader and runs no assignor whose result a Stable group
                    # would ignore.
                    result = generation_result(group, new_id, current_leader)
                member.invoke_join(result)

            self._writer.store_group(group, assignment, now_ms, stored)
        elif group.is_(COMPLETING):
            # The leader may already be computing an assignment naming the old member id.
            self._prepare_rebalance(group, now_ms, f"static member {instance_id} rejoined")
        # PreparingRebalance: the member simply waits with everybody else.

    def _fence(self, member: Member) -> None:
        member.invoke_join(join_error(member.member_id, ErrorCode.fenced_instance_id))
        member.invoke_sync(SyncResult(ErrorCode.fenced_instance_id))

    # --- the rebalance ---------------------------------------------------------------------------

    def _maybe_prepare_rebalance(self, group: Group, now_ms: int, reason: str) -> None:
        if group.can_rebalance:
            self._prepare_rebalance(group, now_ms, reason)

    def _prepare_rebalance(self, group: Group, now_ms: int, reason: str) -> None:
        if group.is_(COMPLETING):
            self._reset_and_propagate_assignment_error(group, ErrorCode.rebalance_in_progress, now_ms)
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
        self._writer.store_group_start(group, now_ms)
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

    def _reset_and_propagate_assignment_error(self, group: Group, error: ErrorCode, now_ms: int) -> None:
        for member in group.members.values():
            member.assignment = b""
        self._propagate_assignment(group, error, now_ms)

    def _propagate_assignment(self, group: Group, error: ErrorCode, now_ms: int) -> None:
        ok = error is ErrorCode.none
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
        member.invoke_join(join_error(UNKNOWN_MEMBER_ID, ErrorCode.unknown_member_id))
        member.invoke_sync(SyncResult(ErrorCode.unknown_member_id))

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
            callback(SyncResult(ErrorCode.invalid_group_id))
            return
        group = self._groups.get(group_id)
        if group is None:
            callback(SyncResult(ErrorCode.unknown_member_id))
            return
        error: ErrorCode | None
        if group.is_(DEAD):
            error = ErrorCode.coordinator_not_available
        else:
            error = validate_current_member(group, member_id, group_instance_id)
        if error is None:
            if generation_id != group.generation_id:
                error = ErrorCode.illegal_generation
            elif protocol_type is not None and protocol_type != group.protocol_type:
                error = ErrorCode.inconsistent_group_protocol
            elif protocol_name is not None and protocol_name != group.protocol_name:
                error = ErrorCode.inconsistent_group_protocol
        if error is not None:
            callback(SyncResult(error))
            return
        if group.is_(EMPTY):
            callback(SyncResult(ErrorCode.unknown_member_id))
        elif group.is_(PREPARING):
            callback(SyncResult(ErrorCode.rebalance_in_progress))
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
            callback(SyncResult(ErrorCode.none, group.protocol_type, group.protocol_name,
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

        def stored(error: ErrorCode | None) -> None:
            # As Kafka's doSyncGroup: only if the group is still waiting for this assignment
            # (a join, leave or timeout meanwhile has already answered the members).
            if (not group.is_(COMPLETING) or group.generation_id != generation
                    or self._groups.get(group.group_id) is not group):
                return
            when = max(now_ms, self._latest_ms())
            if error is not None:
                self._reset_and_propagate_assignment_error(group, error, when)
                self._maybe_prepare_rebalance(group, when, f"cannot store the assignment: {error.name}")
                return
            for member in group.members.values():
                member.assignment = assignment.get(member.member_id, b"")
            group.transition_to(STABLE, when)
            log.info("group %s: generation %d is stable", group.group_id, group.generation_id)
            self._propagate_assignment(group, ErrorCode.none, when)

        self._writer.store_group(group, assignment, now_ms, stored)

    # --- Heartbeat and LeaveGroup ---------------------------------------------------------------

    def heartbeat(
        self, group_id: str, generation_id: int, member_id: str, group_instance_id: str | None,
        now_ms: int,
    ) -> ErrorCode:
        """Keep a member's session alive; the error tells it whether to rejoin."""
        if not group_id:
            return ErrorCode.invalid_group_id
        group = self._groups.get(group_id)
        if group is None:
            return ErrorCode.unknown_member_id
        if group.is_(DEAD):
            return ErrorCode.coordinator_not_available
        error = validate_current_member(group, member_id, group_instance_id)
        if error is not None:
            return error
        if generation_id != group.generation_id:
            return ErrorCode.illegal_generation
        if group.is_(EMPTY):
            return ErrorCode.unknown_member_id
        member = group.members[member_id]
        member.heartbeat_deadline_ms = now_ms + member.session_timeout_ms
        return ErrorCode.rebalance_in_progress if group.is_(PREPARING) else ErrorCode.none

    def leave_group(
        self, group_id: str, members: Sequence[LeavingMember], now_ms: int
    ) -> tuple[ErrorCode, list[ErrorCode]]:
        """Remove members (by member id, or by instance id alone for admin tools, KIP-345);
        returns the top-level error and one error per member."""
        if not group_id:
            return ErrorCode.invalid_group_id, []
        group = self._groups.get(group_id)
        if group is None:
            return ErrorCode.none, [ErrorCode.unknown_member_id] * len(members)
        if group.is_(DEAD):
            return ErrorCode.coordinator_not_available, []
        errors: list[ErrorCode] = []
        for leaving in members:
            reason = f"LeaveGroup ({leaving.reason or 'no reason given'})"
            if leaving.member_id == UNKNOWN_MEMBER_ID:
                current = (
                    group.static_members.get(leaving.group_instance_id)
                    if leaving.group_instance_id is not None else None
                )
                if current is None:
                    errors.append(ErrorCode.unknown_member_id)
                else:
                    self._remove_member_and_update_group(
                        group, group.members[current], now_ms, reason
                    )
                    errors.append(ErrorCode.none)
            elif leaving.member_id in group.pending_members:
                del group.pending_members[leaving.member_id]
                self._maybe_complete_join(group, now_ms)
                errors.append(ErrorCode.none)
            else:
                error = validate_current_member(
                    group, leaving.member_id, leaving.group_instance_id
                )
                if error is None:
                    self._remove_member_and_update_group(
                        group, group.members[leaving.member_id], now_ms, reason
                    )
                    errors.append(ErrorCode.none)
                else:
                    errors.append(error)
        return ErrorCode.none, errors

    # --- timers ----------------------------------------------------------------------------------

    def tick(self, now_ms: int) -> None:
        """Fire due timers: sessions, pending member ids, rebalance and sync timeouts."""
        for group in list(self._groups.values()):
            self._run_timers(group, now_ms)

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
