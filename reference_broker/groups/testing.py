"""Helpers for driving a :class:`GroupCoordinator` in tests: a fake clock, in-memory storage,
captured callbacks, and the consumer protocol's subscription/assignment encodings.

Nothing here touches sockets or the wall clock, so a test can walk a group through rebalances,
session timeouts and restarts in microseconds, and a Hypothesis machine can replay any sequence.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, ParamSpec, TypeVar

from kio.schema.errors import ErrorCode

from reference_broker.groups.config import GroupConfig
from reference_broker.groups.coordinator import GroupCoordinator
from reference_broker.groups.group import Group
from reference_broker.groups.log_format import OffsetValue, partition_for
from reference_broker.groups.membership import JoinRequest, JoinResult, LeavingMember, SyncResult
from reference_broker.groups.storage import MemoryOffsetsLog, TxnProducer

T = TypeVar("T")
P = ParamSpec("P")

# Generous defaults so that only what a test changes matters.
TEST_CONFIG = GroupConfig(min_session_timeout_ms=1, initial_rebalance_delay_ms=0)
SESSION_MS = 10_000
REBALANCE_MS = 30_000


class Reply(Generic[T]):
    """Collects what a coordinator callback was called with."""

    def __init__(self) -> None:
        self.calls: list[T | None] = []

    def __call__(self, result: T | None) -> None:
        self.calls.append(result)

    @property
    def done(self) -> bool:
        return bool(self.calls)

    @property
    def result(self) -> T:
        """The one answer; fails if there is none yet, more than one, or a "no response"."""
        assert len(self.calls) == 1, f"expected one answer, got {self.calls!r}"
        value = self.calls[0]
        assert value is not None, "the request was answered with no response"
        return value


def consumer_subscription(topics: Iterable[str]) -> bytes:
    """A ConsumerProtocolSubscription v0: the topics, no user data."""
    names = sorted(topics)
    out = struct.pack(">hi", 0, len(names))
    for name in names:
        out += struct.pack(">h", len(name)) + name.encode()
    return out + struct.pack(">i", -1)


def consumer_assignment(partitions: Mapping[str, Sequence[int]]) -> bytes:
    """A ConsumerProtocolAssignment v0: partitions per topic, no user data."""
    out = struct.pack(">hi", 0, len(partitions))
    for topic, indexes in sorted(partitions.items()):
        out += struct.pack(">h", len(topic)) + topic.encode()
        out += struct.pack(">i", len(indexes)) + b"".join(struct.pack(">i", i) for i in indexes)
    return out + struct.pack(">i", -1)


def decode_assignment(data: bytes) -> set[tuple[str, int]]:
    """(topic, partition) pairs of a ConsumerProtocolAssignment (empty bytes: nothing)."""
    if not data:
        return set()
    pos = 2
    (count,) = struct.unpack_from(">i", data, pos)
    pos += 4
    owned = set()
    for _ in range(count):
        (length,) = struct.unpack_from(">h", data, pos)
        pos += 2
        topic = data[pos : pos + length].decode()
        pos += length
        (n,) = struct.unpack_from(">i", data, pos)
        pos += 4
        for _ in range(n):
            owned.add((topic, struct.unpack_from(">i", data, pos)[0]))
            pos += 4
    return owned


def _answered_at_once(send: Callable[P, Reply[T]]) -> Callable[P, T]:
    """A request that must be answered before it returns, as its answer."""

    def answered(*args: P.args, **kwargs: P.kwargs) -> T:
        return send(*args, **kwargs).result

    return answered


class CoordinatorDriver:
    """A coordinator over :class:`MemoryOffsetsLog` with a clock the test moves."""

    def __init__(self, config: GroupConfig = TEST_CONFIG, partitions: int = 5) -> None:
        self.config = config
        self.now_ms = 1_000_000
        self.storage = MemoryOffsetsLog(partitions)
        self._ids = itertools.count(1)
        self.coordinator = self._new_coordinator()

    def _new_coordinator(self) -> GroupCoordinator:
        return GroupCoordinator(
            self.config, self.storage, self.now_ms, new_member_suffix=lambda: str(next(self._ids))
        )

    def restart(self) -> GroupCoordinator:
        """A new coordinator replaying the same storage, as after a broker restart (whatever
        the old one had parked is lost with it, as with closed connections)."""
        self.coordinator = self._new_coordinator()
        return self.coordinator

    def advance(self, ms: int) -> None:
        self.now_ms += ms
        self.coordinator.tick(self.now_ms)

    def group(self, group_id: str = "g") -> Group:
        group = self.coordinator.group(group_id)
        assert group is not None, f"no group {group_id!r}"
        return group

    # --- requests --------------------------------------------------------------------------

    def join(
        self,
        member_id: str = "",
        group_id: str = "g",
        instance_id: str | None = None,
        protocols: Sequence[tuple[str, bytes]] = (("range", b"sub"),),
        session_ms: int = SESSION_MS,
        rebalance_ms: int = REBALANCE_MS,
        client_id: str = "client",
        version: int = 9,
        protocol_type: str = "consumer",
    ) -> Reply[JoinResult]:
        reply: Reply[JoinResult] = Reply()
        self.coordinator.join_group(
            JoinRequest(
                group_id=group_id, member_id=member_id, group_instance_id=instance_id,
                protocol_type=protocol_type, protocols=tuple(protocols),
                session_timeout_ms=session_ms, rebalance_timeout_ms=rebalance_ms,
                client_id=client_id, client_host="/127.0.0.1",
                require_known_member_id=version >= 4, supports_skip_assignment=version >= 9,
            ),
            self.now_ms,
            reply,
        )
        return reply

    def join_new(self, group_id: str = "g", **kwargs: Any) -> Reply[JoinResult]:
        """Join as a brand-new dynamic member: MEMBER_ID_REQUIRED, then again with that id."""
        first = self.join("", group_id, **kwargs)
        result = first.result
        assert result.error is ErrorCode.member_id_required, result
        return self.join(result.member_id, group_id, **kwargs)

    def sync(
        self,
        member_id: str,
        generation: int,
        assignments: Mapping[str, bytes] | None = None,
        group_id: str = "g",
        instance_id: str | None = None,
        protocol_type: str | None = None,
        protocol_name: str | None = None,
    ) -> Reply[SyncResult]:
        reply: Reply[SyncResult] = Reply()
        self.coordinator.sync_group(
            group_id, generation, member_id, instance_id, protocol_type, protocol_name,
            dict(assignments or {}), self.now_ms, reply,
        )
        return reply

    def heartbeat(self, member_id: str, generation: int, group_id: str = "g",
                  instance_id: str | None = None) -> ErrorCode:
        return self.coordinator.heartbeat(group_id, generation, member_id, instance_id,
                                          self.now_ms)

    def leave(self, member_id: str, group_id: str = "g", instance_id: str | None = None) -> ErrorCode:
        error, errors = self.coordinator.leave_group(
            group_id, [LeavingMember(member_id, instance_id)], self.now_ms
        )
        return errors[0] if error is ErrorCode.none else error

    def commit_later(
        self,
        offsets: Mapping[tuple[str, int], int],
        member_id: str = "",
        generation: int = -1,
        group_id: str = "g",
        instance_id: str | None = None,
        metadata: str = "",
        api_version: int = 9,
    ) -> Reply[dict[tuple[str, int], ErrorCode]]:
        """OffsetCommit; the reply is filled once the commit is replicated (at once unless the
        storage holds appends)."""
        reply: Reply[dict[tuple[str, int], ErrorCode]] = Reply()
        self.coordinator.commit_offsets(
            group_id, generation, member_id, instance_id,
            {tp: OffsetValue(offset, metadata=metadata, commit_timestamp_ms=self.now_ms)
             for tp, offset in offsets.items()},
            api_version, self.now_ms, reply,
        )
        return reply

    # OffsetCommit answered at once (the storage must not be holding appends).
    commit = _answered_at_once(commit_later)

    def txn_commit_later(
        self,
        offsets: Mapping[tuple[str, int], int],
        producer_id: int = 7000,
        producer_epoch: int = 0,
        member_id: str = "",
        generation: int = -1,
        group_id: str = "g",
        instance_id: str | None = None,
    ) -> Reply[dict[tuple[str, int], ErrorCode]]:
        """TxnOffsetCommit for ``producer_id``'s transaction; the reply is filled once the
        records are replicated (the offsets stay pending until :meth:`end_txn`)."""
        reply: Reply[dict[tuple[str, int], ErrorCode]] = Reply()
        self.coordinator.commit_txn_offsets(
            group_id, TxnProducer(producer_id, producer_epoch), generation, member_id,
            instance_id,
            {tp: OffsetValue(offset, commit_timestamp_ms=self.now_ms) for tp, offset in offsets.items()},
            self.now_ms, reply,
        )
        return reply

    # TxnOffsetCommit answered at once (the storage must not be holding appends).
    txn_commit = _answered_at_once(txn_commit_later)

    def end_txn(self, producer_id: int = 7000, commit: bool = True, group_id: str = "g") -> int:
        """What WriteTxnMarkers does to the group's offsets partition: append the marker, then
        tell the coordinator; returns how many groups had offsets in the transaction."""
        partition = partition_for(group_id, self.storage.partitions)
        self.storage.append_marker(partition, producer_id, commit)
        return self.coordinator.complete_transaction(partition, producer_id, commit, self.now_ms)

    def stable(self, group_id: str = "g",
               partitions: Sequence[tuple[str, int]] | None = None) -> dict[tuple[str, int], Any]:
        """OffsetFetch with require_stable: the offset (-1: none), or the error, per
        partition."""
        return {
            tp: error if error is not ErrorCode.none else -1 if offset is None else offset.offset
            for tp, offset, error in self.coordinator.fetch_stable_offsets(group_id, partitions)
        }

    def committed(self, group_id: str = "g") -> dict[tuple[str, int], int]:
        return {
            tp: value.offset
            for tp, value in self.coordinator.fetch_offsets(group_id, None)
            if value is not None
        }
