"""ApiVersions, Metadata and FindCoordinator: how clients discover what this broker is.

Metadata answers with the address *advertised* for the listener the request came in on (Kafka's
``advertised.listeners``): a client connects to the bootstrap address, then uses only the
advertised one, so an address the client cannot reach there makes it fail after bootstrap.
"""

from __future__ import annotations

from typing import Any

from reference_broker.broker import Broker, BrokerError
from reference_broker.groups import OFFSETS_TOPIC
from reference_broker.handlers.context import RequestContext
from reference_broker.protocol.api_versions import API_VERSIONS

# Metadata v1+ sends null for "all topics"; v0 used an empty list for the same thing.
ALL_TOPICS_NULL_FROM_VERSION = 1
AUTO_CREATE_FLAG_FROM_VERSION = 4
TOPIC_IDS_FROM_VERSION = 10
NULLABLE_TOPIC_NAME_FROM_VERSION = 12
GROUP_KEY_TYPE = 0
TRANSACTION_KEY_TYPE = 1
BATCHED_COORDINATOR_KEYS_FROM_VERSION = 4  # KIP-699


def api_versions_body(error: str = "none") -> dict[str, Any]:
    return {
        "error_code": error,
        "api_keys": [
            {"api_key": key, "min_version": low, "max_version": high}
            for key, (low, high) in sorted(API_VERSIONS.items())
        ],
    }


def handle_api_versions(broker: Broker, ctx: RequestContext, request: Any, now_ms: int) -> Any:
    return api_versions_body()


def _topic_entry(broker: Broker, name: str) -> dict[str, Any]:
    record = broker.topics.get(name)
    if record is None:
        return {"error_code": "unknown_topic_or_partition", "name": name, "partitions": []}
    partitions = []
    for index in range(record.partitions):
        partition = broker.partition(name, index)
        partitions.append(
            {
                "error_code": "none",
                "partition_index": index,
                "leader_id": broker.node_id,
                "leader_epoch": partition.leader_epoch if partition else 0,
                "replica_nodes": [broker.node_id],
                "isr_nodes": [broker.node_id],
                "offline_replicas": [],
            }
        )
    return {
        "error_code": "none",
        "name": name,
        "topic_id": record.topic_id,
        "is_internal": name == OFFSETS_TOPIC,
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


def handle_metadata(broker: Broker, ctx: RequestContext, request: Any, now_ms: int) -> Any:
    names = _requested_names(broker, ctx, request)
    allow_create = (
        ctx.api_version < AUTO_CREATE_FLAG_FROM_VERSION or request.allow_auto_topic_creation
    ) and broker.auto_create_enabled
    topics: list[dict[str, Any]] = []
    for name in names if names is not None else sorted(r.name for r in broker.topics):
        if name is None:
            # The response's topic name is nullable only from v12; v10-11 get "" instead.
            null_name = None if ctx.api_version >= NULLABLE_TOPIC_NAME_FROM_VERSION else ""
            topics.append({"error_code": "unknown_topic_id", "name": null_name, "partitions": []})
            continue
        if broker.topics.get(name) is None and allow_create:
            try:
                broker.auto_create_topic(name, now_ms)
            except BrokerError as exc:
                topics.append({"error_code": exc.error, "name": name, "partitions": []})
                continue
        topics.append(_topic_entry(broker, name))
    host, port = broker.advertised_endpoint(ctx.listener)
    return {
        "brokers": [{"node_id": broker.node_id, "host": host, "port": port, "rack": None}],
        "cluster_id": broker.cluster_id,
        "controller_id": broker.node_id,
        "topics": topics,
    }


def _coordinator(
    broker: Broker, ctx: RequestContext, key_type: int, key: str, now_ms: int
) -> dict[str, Any]:
    if key_type == GROUP_KEY_TYPE:
        # Like Kafka, the first FindCoordinator for a group creates __consumer_offsets.
        error = broker.groups.ensure_storage(now_ms)
        if error is None:
            host, port = broker.advertised_endpoint(ctx.listener)
            return {"key": key, "node_id": broker.node_id, "host": host, "port": port,
                    "error_code": "none", "error_message": None}
        message = f"{OFFSETS_TOPIC} cannot be created (see offsets.topic.replication.factor)"
    elif key_type == TRANSACTION_KEY_TYPE:
        error, message = "coordinator_not_available", "the reference broker has no transaction coordinator yet"
    else:
        error, message = "invalid_request", f"unknown coordinator key type {key_type}"
    return {"key": key, "node_id": -1, "host": "", "port": -1, "error_code": error,
            "error_message": message}


def handle_find_coordinator(broker: Broker, ctx: RequestContext, request: Any, now_ms: int) -> Any:
    """This node coordinates every group; transactions (key type 1) have no coordinator yet,
    which is answered promptly so clients retry instead of hanging."""
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
