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
  An offset with a commit still pending does not expire.

Transactional offset commits (TxnOffsetCommit; KIP-98, KIP-447 for the member fields), as
Kafka's GroupCoordinator.handleTxnCommitOffsets and GroupMetadata (classic groups; Kafka 4's
OffsetMetadataManager keeps the same rules):

* Validation is OffsetCommit's, with two differences: generation -1 without a member id is
  accepted whatever the group's state (TxnOffsetCommit before v3 carries no member, and a
  producer may commit for a group it is not a member of), and CompletingRebalance is no
  obstacle. A group that does not exist is created by a generation -1 commit and answers
  ILLEGAL_GENERATION to one with a generation (Kafka 4's validateTransactionalOffsetCommit).
* The records are written as the producer's transactional batch and answered once committed,
  but then stay *pending per producer id* (Kafka's pendingTransactionalOffsetCommits):
  OffsetFetch does not show them, and with ``require_stable`` (KIP-447) answers
  UNSTABLE_OFFSET_COMMIT for their partitions. When the transaction's COMMIT marker is written
  to the group's ``__consumer_offsets`` partition (:meth:`Offsets.complete_transaction`) they
  become the committed offsets, each unless a commit whose record lies later in the log is
  already committed (Kafka compares the records' offsets: the later write wins, whichever
  completes last); an ABORT marker drops them.
* Pending transactional offsets keep a group from being cleaned up (Kafka's hasOffsets), and
  their partitions from expiring; deleting offsets (OffsetDelete, DeleteGroups, a deleted topic)
  drops them with the committed ones, as Kafka 4's tombstones do.
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
from reference_broker.groups.storage import AppendedCallback, TxnProducer
from reference_broker.records import NO_PRODUCER_ID

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
        callback: StoreCallback, producer: TxnProducer | None = None,
        appended: AppendedCallback | None = None,
    ) -> None:
        """Write committed offsets (as ``producer``'s transactional batch if given);
        ``callback`` gets None once they are committed, else the client-facing error (maybe
        before this returns); ``appended`` the offset of their batch once it is in the log."""

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

    def commit_txn_offsets(
        self,
        group_id: str,
        producer: TxnProducer,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None,
        offsets: Mapping[PartitionKey, OffsetValue],
        now_ms: int,
        callback: CommitCallback,
    ) -> None:
        """TxnOffsetCommit: write ``offsets`` into ``producer``'s transaction (see the module
        docstring). ``callback`` gets an error per partition once the records are replicated
        to the ISR (or have failed); the offsets stay pending until the transaction ends."""

        def every(error: ErrorCode) -> None:
            callback({tp: error for tp in offsets})

        # Unlike OffsetCommit, an empty group id is refused (Kafka's validateGroupStatus for
        # TXN_OFFSET_COMMIT; Kafka 4's GroupCoordinatorService.commitTransactionalOffsets).
        if not group_id or too_long(group_id):
            every(ErrorCode.invalid_group_id)
            return
        group = self._groups.get(group_id)
        if group is None:
            if generation_id >= 0:
                every(ErrorCode.illegal_generation)
                return
            group = new_group(self._groups, group_id, now_ms)
        error = self._validate_offset_commit(
            group, generation_id, member_id, group_instance_id, transactional=True
        )
        if error is not None:
            every(error)
            return
        # Kafka tells a transactional commit by its producer id (storeOffsets' isTxnOffsetCommit;
        # Kafka 4's replay too): without one it is stored as a plain commit.
        transactional = producer.producer_id != NO_PRODUCER_ID
        self._store_offsets(group, offsets, now_ms, callback, producer if transactional else None)

    def _validate_offset_commit(
        self, group: Group, generation_id: int, member_id: str, group_instance_id: str | None,
        transactional: bool = False,
    ) -> ErrorCode | None:
        """Kafka's validateOffsetCommit (ClassicGroup.validateOffsetCommit in Kafka 4)."""
        if group.is_(DEAD):
            return ErrorCode.coordinator_not_available
        if generation_id < 0 and group.is_(EMPTY):
            return None
        if generation_id >= 0 or member_id != UNKNOWN_MEMBER_ID or group_instance_id is not None:
            # KIP-447: a TxnOffsetCommit v3+ naming a member is fenced like an OffsetCommit.
            error = validate_current_member(group, member_id, group_instance_id)
            if error is not None:
                return error
            return ErrorCode.illegal_generation if generation_id != group.generation_id else None
        # Generation -1 from outside the group while it has members: refused for OffsetCommit
        # (only members commit then); TxnOffsetCommit before v3 carries no member at all.
        return None if transactional else ErrorCode.unknown_member_id

    def _store_offsets(
        self, group: Group, offsets: Mapping[PartitionKey, OffsetValue], now_ms: int,
        callback: CommitCallback, producer: TxnProducer | None = None,
    ) -> None:
        """Kafka's storeOffsets: the commit is pending until its records are committed, then
        visible to OffsetFetch (a transactional one only once its transaction commits); the
        client hears of it once the records are committed."""
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
        appended_at: list[int] = []  # the batch's offset, once it is in the log

        if producer is None:
            group.prepare_offset_commit(valid)

            def settle(committed: bool, record_offset: int | None) -> None:
                for tp, value in valid.items():
                    if committed:
                        group.on_offset_commit_committed(tp, value, record_offset)
                    else:
                        group.fail_pending_offset_commit(tp, value)
        else:
            entries = group.prepare_txn_offset_commit(producer.producer_id, valid)

            def settle(committed: bool, record_offset: int | None) -> None:
                if committed:
                    group.on_txn_offset_commit_append(entries, record_offset)
                else:
                    group.fail_pending_txn_offset_commit(producer.producer_id, entries)

        def stored(error: ErrorCode | None) -> None:
            if not group.is_(DEAD):
                settle(error is None, appended_at[-1] if appended_at else None)
            result.update({tp: error or ErrorCode.none for tp in valid})
            callback(result)

        self._writer.store_offsets(
            group.group_id, valid, now_ms, stored, producer, appended_at.append
        )

    def complete_transaction(self, groups: Iterable[Group], producer_id: int, commit: bool) -> int:
        """``producer_id``'s transaction ended with a marker in the offsets partition holding
        ``groups`` (Kafka's handleTxnCompletion): its pending offsets there become committed
        (``commit``) or are dropped. Returns how many groups had some."""
        completed = 0
        for group in groups:
            if not group.is_(DEAD) and group.complete_pending_txn_offset_commit(producer_id, commit):
                completed += 1
        if completed:
            log.debug("transaction of producer id %d %s: offsets of %d group(s)", producer_id,
                      "committed" if commit else "aborted", completed)
        return completed

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

    def fetch_stable_offsets(
        self, group_id: str, partitions: Sequence[PartitionKey] | None
    ) -> list[tuple[PartitionKey, OffsetValue | None, ErrorCode]]:
        """OffsetFetch with ``require_stable`` (v7+, KIP-447): as :meth:`fetch_offsets`, but a
        partition whose commit is still pending, a transactional one above all, answers
        UNSTABLE_OFFSET_COMMIT without an offset, which the consumer retries (Kafka's
        getOffsets with requireStable and hasPendingOffsetCommitsForTopicPartition)."""
        group = self._groups.get(group_id)
        return [
            (tp, None, ErrorCode.unstable_offset_commit)
            if group is not None and group.has_pending_offsets(tp)
            else (tp, value, ErrorCode.none)
            for tp, value in self.fetch_offsets(group_id, partitions)
        ]

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
        held = group.offsets.keys() | group.pending_offsets.keys() | group.pending_txn_partitions
        removed = [tp for tp in dict.fromkeys(partitions) if tp in held]
        left = held - set(removed)
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
                if tp[0] in keep_topics or group.has_pending_offsets(tp):
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
            held = (*group.offsets, *group.pending_offsets, *group.pending_txn_partitions)
            gone = [tp for tp in held if tp[0] == topic]
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
                # Removing every offset of an Empty group deletes the group itself; pending
                # transactional offsets go too (Kafka 4's deleteAllOffsets tombstones them).
                every = [*group.offsets, *group.pending_offsets, *group.pending_txn_partitions]
                errors[group_id] = self._remove_offsets(group, every, now_ms) or ErrorCode.none
        return errors
