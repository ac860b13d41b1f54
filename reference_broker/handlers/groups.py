"""Consumer-group APIs: JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit,
TxnOffsetCommit, OffsetFetch, DescribeGroups, ListGroups, DeleteGroups and OffsetDelete.

These handlers only translate between wire versions and the coordinator
(:mod:`reference_broker.groups.coordinator`, whose modules hold every rule). JoinGroup and
SyncGroup may have to wait for other members, and OffsetCommit, TxnOffsetCommit and SyncGroup
for their records to be replicated to the ISR of the group's ``__consumer_offsets`` partition:
their handlers return a :class:`~reference_broker.handlers.context.Deferred` that the
coordinator resolves when the rebalance or the replication gets there (the driver keeps that
connection's later requests queued meanwhile, as Kafka does).

Version differences handled here (Kafka protocol guide):

* JoinGroup v0 has no rebalance timeout (the session timeout is used); v4+ may get
  MEMBER_ID_REQUIRED (KIP-394); v5+ carries ``group.instance.id`` (KIP-345); v7+ names the
  protocol type in the answer; v9+ may be told to skip the assignment (KIP-814).
* LeaveGroup v0-v2 name one member and carry its error at the top level; v3+ name several.
* OffsetCommit v2-v4 may ask for a retention time; v9+ answers GROUP_ID_NOT_FOUND instead of
  ILLEGAL_GENERATION for a group that does not exist; v10 addresses topics by id.
* TxnOffsetCommit (KIP-98) v2 adds the leader epoch; v3 the member id, generation and
  instance id (KIP-447), checked as an OffsetCommit's; v4 is v3 (it may answer
  TRANSACTION_ABORTABLE, which only KIP-890's verification produces). v5 comes from a client
  of transaction version 2 (KIP-890 part 2), which sends no AddOffsetsToTxn: the group
  coordinator first has the transaction coordinator add the group's offsets partition to the
  transaction (as a partition leader does for a Produce v12), then writes the offsets; a
  refusal is every partition's error.
* OffsetFetch v1 has no top-level error; v2+ may ask for all topics (null); v7+ may set
  ``require_stable`` (KIP-447): a partition with a commit still pending (a transactional one
  whose transaction has not ended, or one not yet replicated) answers UNSTABLE_OFFSET_COMMIT;
  v8+ asks for several groups at once; v10 addresses topics by id.
* DescribeGroups v6 answers GROUP_ID_NOT_FOUND for a group that does not exist; earlier
  versions describe it as Dead.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kio.schema.errors import ErrorCode

from reference_broker.broker import Broker
from reference_broker.groups import (
    OFFSETS_TOPIC,
    JoinRequest,
    JoinResult,
    LeavingMember,
    OffsetValue,
    SyncResult,
    TxnProducer,
    partition_for,
)
from reference_broker.groups.log_format import NO_LEADER_EPOCH
from reference_broker.groups.membership import NO_GENERATION
from reference_broker.handlers.context import Later, RequestContext, milliseconds
from reference_broker.handlers.transactions import offsets_partition_count
from reference_broker.transactions.verification import txn_offset_commit_error

NO_OFFSET = -1
DEFAULT_RETENTION_MS = -1
RETENTION_TIME_UNTIL_VERSION = 4
TOPIC_IDS_FROM_VERSION = 10
ADD_PARTITION_FROM_TXN_OFFSET_COMMIT_VERSION = 5  # transaction version 2 (KIP-890 part 2)
# Kafka's AclOperation codes READ (3), DELETE (6) and DESCRIBE (8): what anyone may do to a
# group on a broker without an authorizer.
GROUP_AUTHORIZED_OPERATIONS = (1 << 3) | (1 << 6) | (1 << 8)
AUTHORIZED_OPERATIONS_OMITTED = -(2**31)



def _client_host(peer: str) -> str:
    # Kafka shows the client's InetAddress, which prints as "/127.0.0.1".
    return "/" + peer.rsplit(":", 1)[0]


# --- JoinGroup / SyncGroup / Heartbeat / LeaveGroup ------------------------------------------------


def _join_response(result: JoinResult, version: int) -> dict[str, Any]:
    return {
        "error_code": result.error,
        "generation_id": result.generation_id,
        "protocol_type": result.protocol_type,
        # Non-nullable before v7: Kafka sends "" there.
        "protocol_name": result.protocol_name if version >= 7 else (result.protocol_name or ""),
        "leader": result.leader,
        "skip_assignment": result.skip_assignment,
        "member_id": result.member_id,
        "members": [
            {"member_id": member_id, "group_instance_id": instance_id, "metadata": metadata}
            for member_id, instance_id, metadata in result.members
        ],
    }


def _not_here(broker: Broker, group_id: str, now_ms: int) -> ErrorCode | None:
    """NOT_COORDINATOR / COORDINATOR_NOT_AVAILABLE when this broker does not lead the group's
    __consumer_offsets partition (an empty group id is left to the coordinator to refuse)."""
    if not group_id:
        return None
    return broker.groups.coordinator_error(group_id, now_ms)


def handle_join_group(broker: Broker, ctx: RequestContext, request: Any, now_ms: int) -> Any:
    version = ctx.api_version
    error = _not_here(broker, request.group_id, now_ms)
    if error is not None:
        return _join_response(JoinResult(error, request.member_id), version)
    session_timeout = milliseconds(request.session_timeout)
    join = JoinRequest(
        group_id=request.group_id,
        member_id=request.member_id,
        group_instance_id=getattr(request, "group_instance_id", None),
        protocol_type=request.protocol_type,
        protocols=tuple((p.name, bytes(p.metadata)) for p in request.protocols),
        session_timeout_ms=session_timeout,
        rebalance_timeout_ms=milliseconds(request.rebalance_timeout) if version >= 1 else session_timeout,
        client_id=ctx.client_id or "",
        client_host=_client_host(ctx.peer),
        require_known_member_id=version >= 4,
        supports_skip_assignment=version >= 9,
        reason=getattr(request, "reason", None),
    )
    later = Later(lambda result: _join_response(result, version))
    broker.groups.join_group(join, now_ms, later.callback)
    return later.response()


def _sync_response(result: SyncResult) -> dict[str, Any]:
    return {
        "error_code": result.error,
        "protocol_type": result.protocol_type,
        "protocol_name": result.protocol_name,
        "assignment": result.assignment,
    }


def handle_sync_group(broker: Broker, ctx: RequestContext, request: Any, now_ms: int) -> Any:
    error = _not_here(broker, request.group_id, now_ms)
    if error is not None:
        return _sync_response(SyncResult(error))
    later = Later(_sync_response)
    broker.groups.sync_group(
        request.group_id,
        request.generation_id,
        request.member_id,
        getattr(request, "group_instance_id", None),
        getattr(request, "protocol_type", None),
        getattr(request, "protocol_name", None),
        {a.member_id: bytes(a.assignment) for a in request.assignments},
        now_ms,
        later.callback,
    )
    return later.response()


def handle_heartbeat(broker: Broker, ctx: RequestContext, request: Any, now_ms: int) -> Any:
    not_here = _not_here(broker, request.group_id, now_ms)
    if not_here is not None:
        return {"error_code": not_here}
    error = broker.groups.heartbeat(
        request.group_id, request.generation_id, request.member_id,
        getattr(request, "group_instance_id", None), now_ms,
    )
    return {"error_code": error}


def handle_leave_group(broker: Broker, ctx: RequestContext, request: Any, now_ms: int) -> Any:
    batched = ctx.api_version >= 3
    if batched:
        leaving = [
            LeavingMember(m.member_id, m.group_instance_id, getattr(m, "reason", None))
            for m in request.members
        ]
    else:
        leaving = [LeavingMember(request.member_id)]
    not_here = _not_here(broker, request.group_id, now_ms)
    if not_here is not None:
        return {"error_code": not_here, "members": []}
    error, member_errors = broker.groups.leave_group(request.group_id, leaving, now_ms)
    if not batched:
        # v0-v2 carry the one member's error at the top level.
        return {"error_code": member_errors[0] if error is ErrorCode.none and member_errors else error}
    if error is not ErrorCode.none:  # a group-level error comes with no per-member answers
        return {"error_code": error, "members": []}
    return {
        "error_code": error,
        "members": [
            {"member_id": m.member_id, "group_instance_id": m.group_instance_id,
             "error_code": member_error}
            for m, member_error in zip(leaving, member_errors, strict=True)
        ],
    }


# --- OffsetCommit / OffsetFetch / OffsetDelete -----------------------------------------------------


def _resolve_topic(
    broker: Broker, topic: Any, by_id: bool
) -> tuple[str | None, int, ErrorCode]:
    """(name or None if unknown, partition count, error for an unknown topic)."""
    if by_id:
        record = broker.topics.by_id(topic.topic_id)
        return (record.name, record.partitions, ErrorCode.unknown_topic_id) if record else (
            None, 0, ErrorCode.unknown_topic_id
        )
    record = broker.topics.get(topic.name)
    return topic.name, (record.partitions if record else 0), ErrorCode.unknown_topic_or_partition


def _topic_key(topic: Any, by_id: bool) -> dict[str, Any]:
    return {"topic_id": topic.topic_id} if by_id else {"name": topic.name}


class _CommitPlan:
    """The partitions of an OffsetCommit or TxnOffsetCommit: the offsets to commit, and how to
    answer every partition the request named, in its order (unknown topics and partitions
    answered at once, the others with what the coordinator says)."""

    def __init__(
        self, broker: Broker, topics: Iterable[Any], by_id: bool, now_ms: int,
        expire_ms: int | None = None,
    ) -> None:
        self.by_id = by_id
        self.offsets: dict[tuple[str, int], OffsetValue] = {}
        # Per request entry: (topic, partition index, key into offsets, or the error it has)
        self._entries: list[tuple[Any, int, tuple[str, int] | None, ErrorCode]] = []
        for topic in topics:
            name, count, unknown = _resolve_topic(broker, topic, by_id)
            for part in topic.partitions:
                if name is None or not 0 <= part.partition_index < count:
                    error = unknown if name is None else ErrorCode.unknown_topic_or_partition
                    self._entries.append((topic, part.partition_index, None, error))
                    continue
                key = (name, part.partition_index)
                self.offsets[key] = OffsetValue(
                    offset=part.committed_offset,
                    leader_epoch=getattr(part, "committed_leader_epoch", NO_LEADER_EPOCH),
                    metadata=part.committed_metadata or "",
                    commit_timestamp_ms=now_ms,
                    expire_timestamp_ms=expire_ms,
                )
                self._entries.append((topic, part.partition_index, key, ErrorCode.none))

    def render(self, results: dict[tuple[str, int], ErrorCode]) -> dict[str, Any]:
        topics_out: list[dict[str, Any]] = []
        by_topic: dict[int, dict[str, Any]] = {}
        for topic, index, tp, error in self._entries:
            entry = by_topic.get(id(topic))
            if entry is None:
                entry = {**_topic_key(topic, by_id=self.by_id), "partitions": []}
                by_topic[id(topic)] = entry
                topics_out.append(entry)
            entry["partitions"].append(
                {"partition_index": index, "error_code": results[tp] if tp is not None else error}
            )
        return {"topics": topics_out}

    def refused(self, broker: Broker, group_id: str, now_ms: int) -> dict[str, Any] | None:
        """The answer when there is nothing to commit, or another broker coordinates the
        group (every partition NOT_COORDINATOR / COORDINATOR_NOT_AVAILABLE); else None."""
        not_here = _not_here(broker, group_id, now_ms) if self.offsets else None
        if self.offsets and not_here is None:
            return None
        return self.render({tp: not_here or ErrorCode.none for tp in self.offsets})


def handle_offset_commit(broker: Broker, ctx: RequestContext, request: Any, now_ms: int) -> Any:
    version = ctx.api_version
    expire_ms = None
    if version <= RETENTION_TIME_UNTIL_VERSION:
        retention_ms = milliseconds(request.retention_time)
        if retention_ms != DEFAULT_RETENTION_MS:
            expire_ms = now_ms + retention_ms
    plan = _CommitPlan(broker, request.topics, version >= TOPIC_IDS_FROM_VERSION, now_ms, expire_ms)
    refused = plan.refused(broker, request.group_id, now_ms)
    if refused is not None:
        return refused
    # Answered once the commit is replicated to the ISR of the offsets partition (or failed).
    later = Later(plan.render)
    broker.groups.commit_offsets(
        request.group_id, request.generation_id_or_member_epoch, request.member_id,
        getattr(request, "group_instance_id", None), plan.offsets, version, now_ms,
        later.callback,
    )
    return later.response()


def handle_txn_offset_commit(broker: Broker, ctx: RequestContext, request: Any, now_ms: int) -> Any:
    """TxnOffsetCommit (KIP-98): the offsets go into the producer's transaction, answered once
    replicated; they become visible when its COMMIT marker reaches the offsets partition.
    Before v3 there is no member (generation -1, empty member id: not validated, KIP-447)."""
    plan = _CommitPlan(broker, request.topics, False, now_ms)
    refused = plan.refused(broker, request.group_id, now_ms)
    if refused is not None:
        return refused
    later = Later(plan.render)
    producer = TxnProducer(int(request.producer_id), int(request.producer_epoch))

    def commit() -> None:
        broker.groups.commit_txn_offsets(
            request.group_id, producer, getattr(request, "generation_id", NO_GENERATION),
            getattr(request, "member_id", ""), getattr(request, "group_instance_id", None),
            plan.offsets, now_ms, later.callback,
        )

    if ctx.api_version < ADD_PARTITION_FROM_TXN_OFFSET_COMMIT_VERSION:
        commit()
        return later.response()
    partition = (OFFSETS_TOPIC, partition_for(request.group_id, offsets_partition_count(broker)))

    def added(answers: dict[tuple[str, int], ErrorCode]) -> None:
        error = txn_offset_commit_error(answers[partition])
        if error is ErrorCode.none:
            commit()
        else:
            later.callback(dict.fromkeys(plan.offsets, error))

    broker.verify_transaction(request.transactional_id, producer.producer_id, producer.producer_epoch,
                              [partition], True, now_ms, added)
    return later.response()


def _offset_entry(index: int, value: OffsetValue | None, error: ErrorCode = ErrorCode.none) -> dict[str, Any]:
    return {
        "partition_index": index,
        "committed_offset": value.offset if value is not None else NO_OFFSET,
        "committed_leader_epoch": value.leader_epoch if value is not None else NO_LEADER_EPOCH,
        "metadata": value.metadata if value is not None else "",
        "error_code": error,
    }


def _fetched(
    broker: Broker, group_id: str, partitions: list[tuple[str, int]] | None, require_stable: bool
) -> list[tuple[tuple[str, int], OffsetValue | None, ErrorCode]]:
    """The group's committed offsets of ``partitions`` (all when None), each with its error:
    with ``require_stable`` (v7+, KIP-447) a pending commit makes UNSTABLE_OFFSET_COMMIT."""
    if require_stable:
        return broker.groups.fetch_stable_offsets(group_id, partitions)
    return [(tp, value, ErrorCode.none) for tp, value in broker.groups.fetch_offsets(group_id, partitions)]


def _fetch_group(
    broker: Broker, group_id: str, topics: Iterable[Any] | None, by_id: bool,
    require_stable: bool, error: ErrorCode | None = None,
) -> list[dict[str, Any]]:
    """The ``topics`` of one group's OffsetFetch answer (every partition carrying ``error``
    when this broker cannot answer for the group)."""
    out: list[dict[str, Any]] = []
    if error is not None:
        for topic in topics or ():
            out.append({**_topic_key(topic, by_id), "partitions": [
                _offset_entry(i, None, error) for i in topic.partition_indexes]})
        return out
    if topics is None:
        by_name: dict[str, list[dict[str, Any]]] = {}
        for (name, index), value, partition_error in _fetched(broker, group_id, None, require_stable):
            by_name.setdefault(name, []).append(_offset_entry(index, value, partition_error))
        for name, partitions in by_name.items():
            if by_id:
                record = broker.topics.get(name)
                if record is None:  # offsets of a topic that no longer exists have no id
                    continue
                out.append({"topic_id": record.topic_id, "partitions": partitions})
            else:
                out.append({"name": name, "partitions": partitions})
        return out
    for topic in topics:
        key = _topic_key(topic, by_id)
        if by_id:
            record = broker.topics.by_id(topic.topic_id)
            if record is None:
                out.append({**key, "partitions": [
                    _offset_entry(i, None, ErrorCode.unknown_topic_id) for i in topic.partition_indexes
                ]})
                continue
            name = record.name
        else:
            name = topic.name
        found = _fetched(broker, group_id, [(name, i) for i in topic.partition_indexes], require_stable)
        out.append({**key, "partitions": [_offset_entry(i, v, e) for (_, i), v, e in found]})
    return out


def handle_offset_fetch(broker: Broker, ctx: RequestContext, request: Any, now_ms: int) -> Any:
    version = ctx.api_version
    by_id = version >= TOPIC_IDS_FROM_VERSION
    stable = bool(getattr(request, "require_stable", False))
    if hasattr(request, "groups"):  # v8+: several groups per request
        groups = []
        for group in request.groups:
            error = _not_here(broker, group.group_id, now_ms)
            groups.append({"group_id": group.group_id, "error_code": error or ErrorCode.none,
                           "topics": [] if error else _fetch_group(broker, group.group_id,
                                                                   group.topics, by_id, stable)})
        return {"groups": groups}
    error = _not_here(broker, request.group_id, now_ms)
    return {
        # v1 has no top-level error: its partitions carry it.
        "error_code": error or ErrorCode.none,
        "topics": _fetch_group(broker, request.group_id, request.topics, by_id, stable,
                               error if ctx.api_version < 2 else None)
        if error is None or ctx.api_version < 2 else [],
    }


def handle_offset_delete(broker: Broker, ctx: RequestContext, request: Any, now_ms: int) -> Any:
    wanted: list[tuple[str, int]] = []
    unknown: set[tuple[str, int]] = set()
    for topic in request.topics:
        record = broker.topics.get(topic.name)
        for part in topic.partitions:
            tp = (topic.name, part.partition_index)
            if record is None or not 0 <= part.partition_index < record.partitions:
                unknown.add(tp)
            else:
                wanted.append(tp)
    not_here = _not_here(broker, request.group_id, now_ms)
    if not_here is not None:
        return {"error_code": not_here, "topics": []}
    error, results = broker.groups.delete_offsets(request.group_id, wanted, now_ms)
    if error is not ErrorCode.none:
        return {"error_code": error, "topics": []}
    return {
        "error_code": ErrorCode.none,
        "topics": [
            {
                "name": topic.name,
                "partitions": [
                    {
                        "partition_index": part.partition_index,
                        "error_code": ErrorCode.unknown_topic_or_partition
                        if (topic.name, part.partition_index) in unknown
                        else results.get((topic.name, part.partition_index), ErrorCode.none),
                    }
                    for part in topic.partitions
                ],
            }
            for topic in request.topics
        ],
    }


# --- DescribeGroups / ListGroups / DeleteGroups -----------------------------------------------------


def handle_describe_groups(broker: Broker, ctx: RequestContext, request: Any, now_ms: int) -> Any:
    operations = (
        GROUP_AUTHORIZED_OPERATIONS
        if getattr(request, "include_authorized_operations", False)
        else AUTHORIZED_OPERATIONS_OMITTED
    )
    groups = []
    for group_id in request.groups:
        not_here = _not_here(broker, group_id, now_ms)
        if not_here is not None:
            groups.append({"error_code": not_here, "group_id": group_id, "group_state": "",
                           "protocol_type": "", "protocol_data": "", "members": [],
                           "authorized_operations": operations})
            continue
        summary = broker.groups.describe_group(group_id)
        if summary is None:
            not_found = ctx.api_version >= 6
            groups.append({
                "error_code": ErrorCode.group_id_not_found if not_found else ErrorCode.none,
                "error_message": f"Group {group_id} not found." if not_found else None,
                "group_id": group_id,
                "group_state": "Dead",
                "protocol_type": "",
                "protocol_data": "",
                "members": [],
                "authorized_operations": operations,
            })
            continue
        groups.append({
            "error_code": ErrorCode.none,
            "group_id": group_id,
            "group_state": summary.state,
            "protocol_type": summary.protocol_type,
            "protocol_data": summary.protocol,
            "members": [
                {
                    "member_id": m.member_id,
                    "group_instance_id": m.group_instance_id,
                    "client_id": m.client_id,
                    "client_host": m.client_host,
                    "member_metadata": m.metadata,
                    "member_assignment": m.assignment,
                }
                for m in summary.members
            ],
            "authorized_operations": operations,
        })
    return {"groups": groups}


def handle_list_groups(broker: Broker, ctx: RequestContext, request: Any, now_ms: int) -> Any:
    groups = broker.groups.list_groups(
        getattr(request, "states_filter", ()), getattr(request, "types_filter", ())
    )
    return {
        "error_code": ErrorCode.none,
        "groups": [
            {"group_id": g.group_id, "protocol_type": g.protocol_type, "group_state": g.state,
             "group_type": "classic"}
            for g in groups
        ],
    }


def handle_delete_groups(broker: Broker, ctx: RequestContext, request: Any, now_ms: int) -> Any:
    names = list(dict.fromkeys(request.groups_names))
    refused = {name: error for name in names
               if (error := _not_here(broker, name, now_ms)) is not None}
    errors = broker.groups.delete_groups([n for n in names if n not in refused], now_ms)
    errors.update(refused)
    return {"results": [{"group_id": name, "error_code": errors[name]} for name in names]}

