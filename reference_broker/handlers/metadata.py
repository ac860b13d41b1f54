"""ApiVersions, Metadata and FindCoordinator: how clients discover the cluster.

ApiVersions answers the versions this broker's transaction version offers
(:func:`~reference_broker.protocol.api_versions.offered_versions`) and, from v3 on, its
features (:mod:`reference_broker.protocol.features`, KIP-584).

Metadata is answered from this broker's metadata image (KRaft's KRaftMetadataCache): the live
(unfenced) brokers with the address each *advertises* for the listener the request came in on
(Kafka's ``advertised.listeners``), and per partition its leader, leader epoch, replicas, ISR and
offline replicas (replicas on brokers that are fenced or unknown). A partition without a leader
is LEADER_NOT_AVAILABLE. A client connects to the bootstrap address, then only to advertised
ones, so an address the client cannot reach there makes it fail after bootstrap.

As in KRaft, the controller is not shown to clients: ``controller_id`` names a live broker
(this one when it is live). FindCoordinator names the leader of the group's
``__consumer_offsets`` partition, the broker that coordinates the group, or of the
transactional id's ``__transaction_state`` partition.
"""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from reference_broker.broker import Broker
from reference_broker.groups import OFFSETS_TOPIC, partition_for
from reference_broker.handlers.context import RequestContext
from reference_broker.metadata.records import NO_LEADER
from reference_broker.protocol.api_versions import api_versions_body, offered_versions
from reference_broker.protocol.features import features_body
from reference_broker.topic_admin import INTERNAL_TOPICS, BrokerError
from reference_broker.transactions import TRANSACTION_STATE_TOPIC

# Metadata v1+ sends null for "all topics"; v0 used an empty list for the same thing.
ALL_TOPICS_NULL_FROM_VERSION = 1
AUTO_CREATE_FLAG_FROM_VERSION = 4
TOPIC_IDS_FROM_VERSION = 10
NULLABLE_TOPIC_NAME_FROM_VERSION = 12
GROUP_KEY_TYPE = 0
TRANSACTION_KEY_TYPE = 1
BATCHED_COORDINATOR_KEYS_FROM_VERSION = 4  # KIP-699


def handle_api_versions(broker: Broker, ctx: RequestContext, request: Any, now_ms: int) -> Any:
    level = broker.transactions.config.transaction_version
    return {**api_versions_body(offered_versions(level)),
            **features_body(ctx.api_version, level, broker.image.offset)}


def _topic_entry(broker: Broker, name: str) -> dict[str, Any]:
    state = broker.image.topic(name)
    if state is None:
        return {"error_code": ErrorCode.unknown_topic_or_partition, "name": name, "partitions": []}
    live = set(broker.live_broker_ids())
    partitions = []
    for index in sorted(state.partitions):
        record = state.partitions[index]
        partitions.append(
            {
                "error_code": ErrorCode.none if record.leader != NO_LEADER else ErrorCode.leader_not_available,
                "partition_index": index,
                "leader_id": record.leader,
                "leader_epoch": record.leader_epoch,
                "replica_nodes": list(record.replicas),
                "isr_nodes": list(record.isr),
                "offline_replicas": [node for node in record.replicas if node not in live],
            }
        )
    return {
        "error_code": ErrorCode.none,
        "name": name,
        "topic_id": state.topic_id,
        "is_internal": name in INTERNAL_TOPICS,
        "partitions": partitions,
    }


def _requested_names(broker: Broker, ctx: RequestContext, request: Any) -> list[str | None] | None:
    """Topic names asked for, or None for every topic. Unknown ids come back as None entries
    (a topic named "" is a name like any other: it does not exist and cannot be created)."""
    if request.topics is None:
        return None
    if not request.topics and ctx.api_version < ALL_TOPICS_NULL_FROM_VERSION:
        return None
    names: list[str | None] = []
    for topic in request.topics:
        name = topic.name
        if name is None and ctx.api_version >= TOPIC_IDS_FROM_VERSION:
            record = broker.topics.by_id(topic.topic_id)
            name = record.name if record else None
        names.append(name)
    return names


def _brokers(broker: Broker, listener: str) -> list[dict[str, Any]]:
    brokers = []
    for node in broker.live_broker_ids():
        endpoint = broker.endpoint_of(node, listener)
        if endpoint is not None:
            brokers.append({"node_id": node, "host": endpoint[0], "port": endpoint[1],
                            "rack": None})
    return brokers


def handle_metadata(broker: Broker, ctx: RequestContext, request: Any, now_ms: int) -> Any:
    names = _requested_names(broker, ctx, request)
    allow_create = (
        ctx.api_version < AUTO_CREATE_FLAG_FROM_VERSION or request.allow_auto_topic_creation
    ) and broker.admin.auto_create_enabled
    topics: list[dict[str, Any]] = []
    for name in names if names is not None else sorted(r.name for r in broker.topics):
        if name is None:
            # The response's topic name is nullable only from v12; v10-11 get "" instead.
            null_name = None if ctx.api_version >= NULLABLE_TOPIC_NAME_FROM_VERSION else ""
            topics.append({"error_code": ErrorCode.unknown_topic_id, "name": null_name, "partitions": []})
            continue
        if broker.topics.get(name) is None and allow_create:
            try:
                broker.admin.auto_create_topic(name, now_ms)
            except BrokerError as exc:
                topics.append({"error_code": exc.error, "name": name, "partitions": []})
                continue
            if broker.topics.get(name) is None:
                # Being created by the controller: Kafka answers LEADER_NOT_AVAILABLE, and the
                # client asks again.
                topics.append({"error_code": ErrorCode.leader_not_available, "name": name,
                               "partitions": []})
                continue
        topics.append(_topic_entry(broker, name))
    live = broker.live_broker_ids()
    controller_id = broker.node_id if broker.node_id in live else (live[0] if live else -1)
    return {
        "brokers": _brokers(broker, ctx.listener),
        "cluster_id": broker.cluster_id,
        "controller_id": controller_id,
        "topics": topics,
    }


def _no_coordinator(key: str, error: ErrorCode, message: str) -> dict[str, Any]:
    return {"key": key, "node_id": -1, "host": "", "port": -1, "error_code": error,
            "error_message": message}


def _coordinator(
    broker: Broker, ctx: RequestContext, key_type: int, key: str, now_ms: int
) -> dict[str, Any]:
    if key_type == GROUP_KEY_TYPE:
        topic = OFFSETS_TOPIC
    elif key_type == TRANSACTION_KEY_TYPE:
        topic = TRANSACTION_STATE_TOPIC
    else:
        return _no_coordinator(key, ErrorCode.invalid_request, f"unknown coordinator key type {key_type}")
    # Like Kafka, the first FindCoordinator for a group (a transactional id) creates the topic.
    if broker.admin.ensure_internal_topic(topic, now_ms) is not None:
        setting = INTERNAL_TOPICS[topic]
        return _no_coordinator(
            key, ErrorCode.coordinator_not_available,
            f"{topic} does not exist yet or cannot be created (see {setting}.replication.factor)",
        )
    state = broker.image.topic(topic)
    assert state is not None
    index = (partition_for(key, len(state.partitions)) if topic == OFFSETS_TOPIC
             else broker.transactions.partition_for(key))
    record = state.partitions.get(index)
    leader = record.leader if record is not None else NO_LEADER
    endpoint = broker.endpoint_of(leader, ctx.listener) if leader != NO_LEADER else None
    if endpoint is None or leader not in broker.live_broker_ids():
        return _no_coordinator(key, ErrorCode.coordinator_not_available,
                               f"the key's {topic} partition has no leader")
    return {"key": key, "node_id": leader, "host": endpoint[0], "port": endpoint[1],
            "error_code": ErrorCode.none, "error_message": None}


def handle_find_coordinator(broker: Broker, ctx: RequestContext, request: Any, now_ms: int) -> Any:
    """A group's coordinator is the leader of its __consumer_offsets partition, a transactional
    id's (key type 1) the leader of its __transaction_state partition."""
    key_type = getattr(request, "key_type", GROUP_KEY_TYPE)  # v0 knows only groups
    if ctx.api_version >= BATCHED_COORDINATOR_KEYS_FROM_VERSION:
        return {
            "coordinators": [
                _coordinator(broker, ctx, key_type, key, now_ms) for key in request.coordinator_keys
            ]
        }
    answer = _coordinator(broker, ctx, key_type, request.key, now_ms)
    del answer["key"]
    return answer
