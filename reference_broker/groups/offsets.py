"""Committed offsets of classic groups: OffsetCommit validation, storing, OffsetFetch,
OffsetDelete, DeleteGroups and expiry, as pure decisions over
:class:`~reference_broker.groups.group.Group` state.

The records go through an :class:`OffsetWriter` (:mod:`~reference_broker.groups.persistence`
in the broker); nothing here reads a clock or touches the log.

* An OffsetCommit is validated as the member's SyncGroup and Heartbeat are (member id,
  generation, static instance; see :mod:`~reference_broker.groups.membership`). A group without
  members takes commits with generation -1 (admin tools, manually assigned consumers): such a
  "simple" group is created by its first commit. CompletingRebalance answers
  REBALANCE_IN_PROGRESS: the member has its new generation but not its assignment yet.
* A commit is answered only once its records are committed (below the high watermark of the
  group's ``__consumer_offsets`` partition). Meanwhile it is *pending* (Kafka's
  ``pendingOffsetCommits``): OffsetFetch does not show it, expiry skips it, a deletion drops it.
* Deleting offsets (OffsetDelete, DeleteGroups, expiry, a deleted topic) writes tombstones
  first, so memory keeps agreeing with the log when they cannot be written; an Empty group left
  with no offsets is deleted with them (Kafka's cleanupGroupMetadata).
* KIP-211 expiry: all offsets of a group that has been Empty for ``offsets.retention.ms``; in a
  Stable consumer group, those of topics nobody subscribes to, ``offsets.retention.ms`` after
  their commit; in a group never used for membership, each offset that long after its commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from typing import Protocol

from kio.schema.errors import ErrorCode

from reference_broker.groups.config import GroupConfig, too_long
from reference_broker.groups.group import CONSUMER_PROTOCOL_TYPE, Group, GroupState, PartitionKey
from reference_broker.groups.log_format import OffsetValue
from reference_broker.groups.membership import (
    UNKNOWN_MEMBER_ID,
    StoreCallback,
    new_group,
    validate_current_member,
)

log = logging.getLogger(__name__)

EMPTY = GroupState.EMPTY
COMPLETING = GroupState.COMPLETING_REBALANCE
STABLE = GroupState.STABLE
DEAD = GroupState.DEAD

CommitCallback = Callable[[dict[PartitionKey, ErrorCode]], None]


class OffsetWriter(Protocol):
    """The writes offsets ask for (Kafka's GroupMetadataManager.storeOffsets and the tombstones
    of cleanupGroupMetadata)."""

    def store_offsets(
        self, group_id: str, offsets: Mapping[PartitionKey, OffsetValue], now_ms: int,
        callback: StoreCallback,
    ) -> None:
        """Write committed offsets; ``callback`` gets None once they are committed, else the
        client-facing error (maybe before this returns)."""

    def remove_offsets(
        self, group_id: str, partitions: Sequence[PartitionKey], with_group: bool, now_ms: int
    ) -> ErrorCode | None:
        """Tombstone offsets (and the group's metadata if ``with_group``) without waiting; a
        client-facing error if the log refused them."""


class Offsets:
    """The committed offsets of the groups in ``groups`` (shared with the rest of the
    coordinator); see the module docstring. ``latest_ms`` is the latest time the coordinator
    has seen, for the calls that carry none."""

    def __init__(
        self,
        config: GroupConfig,
        groups: MutableMapping[str, Group],
        writer: OffsetWriter,
        latest_ms: Callable[[], int],
    ) -> None:
        self.config = config
        self._groups = groups
        self._writer = writer
        self._latest_ms = latest_ms

    # --- OffsetCommit ----------------------------------------------------------------------------

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
        group without members. ``callback`` gets an error per partition once the commit
        is replicated to the ISR (or has failed); it may run before this returns."""

        def every(error: ErrorCode) -> None:
            callback({tp: error for tp in offsets})

        if too_long(group_id):
            every(ErrorCode.invalid_group_id)
            return
        group = self._groups.get(group_id)
        if group is None:
            if generation_id < 0:
                # A "simple" group: offsets stored by admin tools or manually assigned consumers.
                group = new_group(self._groups, group_id, now_ms)
            elif api_version >= 9:
                every(ErrorCode.group_id_not_found)
                return
            else:
                every(ErrorCode.illegal_generation)
                return
        error = self._validate_offset_commit(group, generation_id, member_id, group_instance_id)
        if error is not None:
            every(error)
            return
        if group.is_(COMPLETING):
            # The member has its new generation but not its assignment yet.
            every(ErrorCode.rebalance_in_progress)
            return
        member = group.members.get(member_id)
        if member is not None:
            member.heartbeat_deadline_ms = now_ms + member.session_timeout_ms
        self._store_offsets(group, offsets, now_ms, callback)

    def _validate_offset_commit(
        self, group: Group, generation_id: int, member_id: str, group_instance_id: str | None
    ) -> ErrorCode | None:
        if group.is_(DEAD):
            return ErrorCode.coordinator_not_available
        if generation_id < 0 and group.is_(EMPTY):
            return None
        if generation_id >= 0 or member_id != UNKNOWN_MEMBER_ID or group_instance_id is not None:
            error = validate_current_member(group, member_id, group_instance_id)
            if error is not None:
                return error
            return ErrorCode.illegal_generation if generation_id != group.generation_id else None
        # Generation -1 from outside the group while it has members.
        return ErrorCode.unknown_member_id

    def _store_offsets(
        self, group: Group, offsets: Mapping[PartitionKey, OffsetValue], now_ms: int,
        callback: CommitCallback,
    ) -> None:
        """Kafka's storeOffsets: the commit is pending until its records are committed, then
        visible to OffsetFetch; the client hears of it only then."""
        result: dict[PartitionKey, ErrorCode] = {}
        valid: dict[PartitionKey, OffsetValue] = {}
        for tp, value in offsets.items():
            if len(value.metadata) > self.config.offset_metadata_max_bytes or too_long(
                value.metadata
            ):
                result[tp] = ErrorCode.offset_metadata_too_large
            else:
                valid[tp] = value
        if not valid:
            callback(result)
            return

        def stored(error: ErrorCode | None) -> None:
            if error is None:
                if not group.is_(DEAD):
                    for tp, value in valid.items():
                        group.on_offset_commit_committed(tp, value)
                result.update({tp: ErrorCode.none for tp in valid})
            else:
                if not group.is_(DEAD):
                    for tp, value in valid.items():
                        group.fail_pending_offset_commit(tp, value)
                result.update({tp: error for tp in valid})
            callback(result)

        group.prepare_offset_commit(valid)
        self._writer.store_offsets(group.group_id, valid, now_ms, stored)

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
    ) -> tuple[ErrorCode, dict[PartitionKey, ErrorCode]]:
        """OffsetDelete: allowed for an empty group, or for topics a consumer group does not
        subscribe to (KIP-496)."""
        if not group_id:
            return ErrorCode.invalid_group_id, {}
        group = self._groups.get(group_id)
        if group is None or group.is_(DEAD):
            return ErrorCode.group_id_not_found, {}
        errors: dict[PartitionKey, ErrorCode] = {}
        if group.is_(EMPTY):
            eligible = list(partitions)
        elif group.protocol_type == CONSUMER_PROTOCOL_TYPE:
            eligible = []
            for tp in partitions:
                if group.is_subscribed_to(tp[0]):
                    errors[tp] = ErrorCode.group_subscribed_to_topic
                else:
                    eligible.append(tp)
        else:
            return ErrorCode.non_empty_group, {}
        if eligible:
            error = self._remove_offsets(group, eligible, now_ms)
            errors.update({tp: error or ErrorCode.none for tp in eligible})
        return ErrorCode.none, errors

    def _remove_offsets(
        self, group: Group, partitions: Iterable[PartitionKey], now_ms: int
    ) -> ErrorCode | None:
        """Tombstone and forget offsets; an Empty group left with none is deleted (Kafka's
        cleanupGroupMetadata). Returns a client-facing error if the log refused the write."""
        removed = [
            tp for tp in dict.fromkeys(partitions)
            if tp in group.offsets or tp in group.pending_offsets
        ]
        left = (group.offsets.keys() | group.pending_offsets.keys()) - set(removed)
        dies = group.is_(EMPTY) and not left
        # Tombstones first: if they cannot be written, memory keeps agreeing with the log.
        error = self._writer.remove_offsets(
            group.group_id, removed, dies and group.generation_id > 0, now_ms
        )
        if error is not None:
            return error
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
        when = self._latest_ms() if now_ms is None else now_ms
        for group in list(self._groups.values()):
            gone = [tp for tp in (*group.offsets, *group.pending_offsets) if tp[0] == topic]
            if gone:
                self._remove_offsets(group, gone, when)

    # --- DeleteGroups ----------------------------------------------------------------------------

    def delete_groups(self, group_ids: Iterable[str], now_ms: int) -> dict[str, ErrorCode]:
        """DeleteGroups: only groups without members; their offsets go too."""
        errors: dict[str, ErrorCode] = {}
        for group_id in group_ids:
            group = self._groups.get(group_id)
            if group is None or group.is_(DEAD):
                errors[group_id] = ErrorCode.group_id_not_found
            elif not group.is_(EMPTY):
                errors[group_id] = ErrorCode.non_empty_group
            else:
                # Removing every offset of an Empty group deletes the group itself.
                every = [*group.offsets, *group.pending_offsets]
                errors[group_id] = self._remove_offsets(group, every, now_ms) or ErrorCode.none
        return errors
