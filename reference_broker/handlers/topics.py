"""CreateTopics, DeleteTopics and CreatePartitions on a single node."""

from __future__ import annotations

from typing import Any

from reference_broker.broker import Broker, BrokerError
from reference_broker.handlers.configs import describe_topic_configs
from reference_broker.handlers.context import RequestContext

DEFAULT = -1  # num_partitions / replication_factor of -1 mean "the broker default" (KIP-464)


def _create_one(broker: Broker, topic: Any, validate_only: bool, now_ms: int) -> dict[str, Any]:
    partitions = topic.num_partitions
    replication = topic.replication_factor
    if topic.assignments:
        if partitions != DEFAULT or replication != DEFAULT:
            raise BrokerError(
                "invalid_request",
                "Both numPartitions or replicationFactor and replicasAssignments were set.",
            )
        partitions = len(topic.assignments)
        replication = len(topic.assignments[0].broker_ids)
        for assignment in topic.assignments:
            if any(node != broker.node_id for node in assignment.broker_ids):
                raise BrokerError(
                    "invalid_replica_assignment",
                    f"Partition {assignment.partition_index} is assigned to a broker other than "
                    f"{broker.node_id}, the only one in this cluster.",
                )
    if partitions == DEFAULT:
        partitions = int(broker.config.get("num.partitions"))
    if replication == DEFAULT:
        replication = int(broker.config.get("default.replication.factor"))
    configs = broker.check_new_topic(
        topic.name, partitions, replication, {c.name: c.value for c in topic.configs}
    )
    if validate_only:
        topic_id = None
    else:
        topic_id = broker.create_topic(topic.name, partitions, replication, configs, now_ms).topic_id
    return {
        "name": topic.name,
        "topic_id": topic_id,
        "error_code": "none",
        "num_partitions": partitions,
        "replication_factor": replication,
        "configs": [
            {
                "name": entry["name"],
                "value": entry["value"],
                "read_only": entry["read_only"],
                "config_source": entry["config_source"],
                "is_sensitive": False,
            }
            for entry in describe_topic_configs(broker, configs, None, False, False)
        ],
    }


def handle_create_topics(broker: Broker, ctx: RequestContext, request: Any, now_ms: int) -> Any:
    results = []
    seen: set[str] = set()
    for topic in request.topics:
        if topic.name in seen:
            results.append(
                {"name": topic.name, "error_code": "invalid_request",
                 "error_message": f"Topic '{topic.name}' appears more than once in the request."}
            )
            continue
        seen.add(topic.name)
        try:
            results.append(_create_one(broker, topic, request.validate_only, now_ms))
        except BrokerError as exc:
            results.append({"name": topic.name, "error_code": exc.error, "error_message": exc.message})
    return {"topics": results}


def handle_delete_topics(broker: Broker, ctx: RequestContext, request: Any, now_ms: int) -> Any:
    if hasattr(request, "topic_names"):
        wanted: list[tuple[str | None, Any]] = [(name, None) for name in request.topic_names]
    else:
        wanted = [(topic.name, topic.topic_id) for topic in request.topics]
    responses = []
    for name, topic_id in wanted:
        if name is None:
            record = broker.topics.by_id(topic_id)
            missing = "unknown_topic_id"
        else:
            record = broker.topics.get(name)
            missing = "unknown_topic_or_partition"
        if record is None:
            responses.append({"name": name, "topic_id": topic_id, "error_code": missing,
                              "error_message": "This server does not host this topic."})
            continue
        try:
            broker.delete_topic(record.name)
        except BrokerError as exc:
            responses.append({"name": record.name, "topic_id": record.topic_id,
                              "error_code": exc.error, "error_message": exc.message})
            continue
        responses.append({"name": record.name, "topic_id": record.topic_id, "error_code": "none"})
    return {"responses": responses}


def handle_create_partitions(broker: Broker, ctx: RequestContext, request: Any, now_ms: int) -> Any:
    results = []
    for topic in request.topics:
        try:
            for assignment in topic.assignments or ():
                if any(node != broker.node_id for node in assignment.broker_ids):
                    raise BrokerError(
                        "invalid_replica_assignment",
                        f"Assignment names a broker other than {broker.node_id}.",
                    )
            broker.add_partitions(topic.name, topic.count, now_ms, request.validate_only)
        except BrokerError as exc:
            results.append({"name": topic.name, "error_code": exc.error, "error_message": exc.message})
            continue
        results.append({"name": topic.name, "error_code": "none"})
    return {"results": results}
