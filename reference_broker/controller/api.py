"""The requests a controller answers, as handlers over a
:class:`~reference_broker.controller.node.ControllerNode`.

Brokers send BrokerRegistration, BrokerHeartbeat, AlterPartition and AllocateProducerIds (the
KRaft broker-to-controller APIs, KIP-631, KIP-497, KIP-730); admin requests a broker receives
(CreateTopics, DeleteTopics, CreatePartitions, IncrementalAlterConfigs) are forwarded here, as
Kafka brokers forward them to the active controller (KIP-590). Every handler takes the request
as kio decoded it (any supported version) and returns the response as a dict for
:func:`~reference_broker.protocol.codec.build_response`.

Validation that needs no cluster state (topic names, config values) happens here too, so a
request forwarded by a broker and one sent straight to the controller get the same answer.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from reference_broker.config import ConfigError, validate_topic_configs
from reference_broker.controller.core import ControllerError
from reference_broker.metadata.records import Endpoint
from reference_broker.topic_configs import RESOURCE_TOPIC, apply_config_ops, describe_topic_configs, resource_answer
from reference_broker.topics import InvalidTopicError, validate_topic_name

if TYPE_CHECKING:
    from reference_broker.controller.node import ControllerNode

DEFAULT = -1  # num_partitions / replication_factor of -1 mean "the broker default" (KIP-464)
RESOURCE_BROKER = 4
# Reference-broker guard, not a Kafka rule (see reference_broker.broker.MAX_PARTITIONS_PER_TOPIC).
MAX_PARTITIONS_PER_TOPIC = 10_000


class _Refused(Exception):
    def __init__(self, error: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.error = error
        self.message = message


# --- broker lifecycle --------------------------------------------------------------------------


def handle_broker_registration(node: ControllerNode, request: Any, now_ms: int) -> dict[str, Any]:
    """Register a broker (fenced until its metadata has caught up); the answer is its epoch."""
    if request.cluster_id != node.cluster_id:
        return {"error_code": ErrorCode.inconsistent_cluster_id, "broker_epoch": -1}
    if request.broker_id == node.node_id and not node.config.is_combined:
        return {"error_code": ErrorCode.invalid_request, "broker_epoch": -1}
    incarnation = str(request.incarnation_id)
    endpoints = [Endpoint(listener.name.upper(), listener.host, int(listener.port))
                 for listener in request.listeners]
    epoch = node.core.register_broker(request.broker_id, incarnation, endpoints, now_ms)
    return {"error_code": ErrorCode.none, "broker_epoch": epoch}


def handle_broker_heartbeat(node: ControllerNode, request: Any, now_ms: int) -> dict[str, Any]:
    try:
        result = node.core.heartbeat(
            request.broker_id, request.broker_epoch, request.current_metadata_offset,
            request.want_shut_down, now_ms,
        )
    except ControllerError as exc:
        return {"error_code": exc.error, "is_caught_up": False, "is_fenced": True,
                "should_shut_down": False}
    return {"error_code": ErrorCode.none, "is_caught_up": result.is_caught_up,
            "is_fenced": result.is_fenced, "should_shut_down": result.should_shut_down}


def handle_unregister_broker(node: ControllerNode, request: Any, now_ms: int) -> dict[str, Any]:
    # Decommissioning brokers is not supported; the answer says so instead of pretending.
    return {"error_code": ErrorCode.unsupported_version,
            "error_message": "the reference controller does not unregister brokers"}


def handle_alter_partition(node: ControllerNode, request: Any, now_ms: int) -> dict[str, Any]:
    """ISR changes from partition leaders (KIP-497); each partition answered on its own."""
    topics = []
    for topic in request.topics:
        partitions = []
        for part in topic.partitions:
            if hasattr(part, "new_isr_with_epochs"):
                isr = [member.broker_id for member in part.new_isr_with_epochs]
            else:
                isr = list(part.new_isr)
            entry: dict[str, Any] = {"partition_index": part.partition_index}
            try:
                updated = node.core.alter_partition(
                    request.broker_id, request.broker_epoch, topic.topic_id,
                    part.partition_index, part.leader_epoch, part.partition_epoch, isr,
                )
            except ControllerError as exc:
                entry.update(error_code=exc.error, leader_id=-1, leader_epoch=-1, isr=[],
                             partition_epoch=-1)
            else:
                entry.update(error_code=ErrorCode.none, leader_id=updated.leader,
                             leader_epoch=updated.leader_epoch, isr=list(updated.isr),
                             partition_epoch=updated.partition_epoch)
            partitions.append(entry)
        topics.append({"topic_id": topic.topic_id, "partitions": partitions})
    return {"error_code": ErrorCode.none, "topics": topics}


def handle_allocate_producer_ids(node: ControllerNode, request: Any, now_ms: int) -> dict[str, Any]:
    try:
        start, length = node.core.allocate_producer_ids(request.broker_id, request.broker_epoch)
    except ControllerError as exc:
        return {"error_code": exc.error, "producer_id_start": -1, "producer_id_len": 0}
    return {"error_code": ErrorCode.none, "producer_id_start": start, "producer_id_len": length}


# --- topics ------------------------------------------------------------------------------------


def _create_one(node: ControllerNode, topic: Any, validate_only: bool) -> dict[str, Any]:
    try:
        validate_topic_name(topic.name)
    except InvalidTopicError as exc:
        raise _Refused(ErrorCode.invalid_topic_exception, str(exc)) from None
    partitions = topic.num_partitions
    replication = topic.replication_factor
    assignments: list[list[int]] | None = None
    if topic.assignments:
        if partitions != DEFAULT or replication != DEFAULT:
            raise _Refused(
                ErrorCode.invalid_request,
                "Both numPartitions or replicationFactor and replicasAssignments were set.",
            )
        ordered = sorted(topic.assignments, key=lambda a: a.partition_index)
        if [a.partition_index for a in ordered] != list(range(len(ordered))):
            raise _Refused(ErrorCode.invalid_replica_assignment,
                           "Partitions must be numbered consecutively from 0.")
        assignments = [list(a.broker_ids) for a in ordered]
        if len({len(nodes) for nodes in assignments}) != 1:
            raise _Refused(ErrorCode.invalid_replica_assignment,
                           "All partitions must have the same number of replicas.")
        partitions = len(assignments)
        replication = len(assignments[0])
    if partitions == DEFAULT:
        partitions = int(node.config.get("num.partitions"))
    if replication == DEFAULT:
        replication = int(node.config.get("default.replication.factor"))
    if node.image.topic(topic.name) is not None:
        raise _Refused(ErrorCode.topic_already_exists, f"Topic '{topic.name}' already exists.")
    if partitions <= 0:
        raise _Refused(ErrorCode.invalid_partitions,
                       f"Number of partitions must be positive, got {partitions}.")
    if partitions > MAX_PARTITIONS_PER_TOPIC:
        raise _Refused(
            ErrorCode.invalid_partitions,
            f"{partitions} partitions requested; the reference broker allows at most "
            f"{MAX_PARTITIONS_PER_TOPIC} per topic.",
        )
    if replication <= 0:
        raise _Refused(ErrorCode.invalid_replication_factor,
                       f"Replication factor must be positive, got {replication}.")
    try:
        configs = validate_topic_configs({c.name: c.value for c in topic.configs})
    except ConfigError as exc:
        raise _Refused(ErrorCode.invalid_config, str(exc)) from None
    try:
        created = node.core.create_topic(topic.name, partitions, replication, configs,
                                         assignments, validate_only)
    except ControllerError as exc:
        raise _Refused(exc.error, exc.message) from None
    return {
        "name": topic.name,
        "topic_id": created.topic_id if created is not None else None,
        "error_code": ErrorCode.none,
        "num_partitions": partitions,
        "replication_factor": replication,
        "configs": [
            {"name": e["name"], "value": e["value"], "read_only": e["read_only"],
             "config_source": e["config_source"], "is_sensitive": False}
            for e in describe_topic_configs(node.config, configs, None, False, False)
        ],
    }


def handle_create_topics(node: ControllerNode, request: Any, now_ms: int) -> dict[str, Any]:
    results = []
    seen: set[str] = set()
    for topic in request.topics:
        if topic.name in seen:
            results.append({"name": topic.name, "error_code": ErrorCode.invalid_request,
                            "error_message": f"Topic '{topic.name}' appears more than once in "
                            "the request."})
            continue
        seen.add(topic.name)
        try:
            results.append(_create_one(node, topic, request.validate_only))
        except _Refused as exc:
            results.append({"name": topic.name, "error_code": exc.error,
                            "error_message": exc.message})
    return {"topics": results}


def handle_delete_topics(node: ControllerNode, request: Any, now_ms: int) -> dict[str, Any]:
    if hasattr(request, "topic_names"):
        wanted: list[tuple[str | None, uuid.UUID | None]] = [
            (name, None) for name in request.topic_names
        ]
    else:
        wanted = [(topic.name, topic.topic_id) for topic in request.topics]
    responses = []
    enabled = bool(node.config.get("delete.topic.enable"))
    for name, topic_id in wanted:
        if name is None:
            state = node.image.topics_by_id.get(topic_id) if topic_id is not None else None
            missing = ErrorCode.unknown_topic_id
        else:
            state = node.image.topic(name)
            missing = ErrorCode.unknown_topic_or_partition
        if state is None:
            responses.append({"name": name, "topic_id": topic_id, "error_code": missing,
                              "error_message": "This server does not host this topic."})
        elif not enabled:
            responses.append({"name": state.name, "topic_id": state.topic_id,
                              "error_code": ErrorCode.topic_deletion_disabled,
                              "error_message": "Topic deletion is disabled."})
        else:
            node.core.delete_topic(state)
            responses.append({"name": state.name, "topic_id": state.topic_id,
                              "error_code": ErrorCode.none})
    return {"responses": responses}


def handle_create_partitions(node: ControllerNode, request: Any, now_ms: int) -> dict[str, Any]:
    results = []
    for topic in request.topics:
        state = node.image.topic(topic.name)
        try:
            if state is None:
                raise _Refused(ErrorCode.unknown_topic_or_partition, f"Topic '{topic.name}' does not exist.")
            if topic.count > MAX_PARTITIONS_PER_TOPIC:
                raise _Refused(
                    ErrorCode.invalid_partitions,
                    f"{topic.count} partitions requested; the reference broker allows at most "
                    f"{MAX_PARTITIONS_PER_TOPIC} per topic.",
                )
            assignments = [list(a.broker_ids) for a in topic.assignments or ()] or None
            if assignments is not None and len(assignments) != topic.count - len(state.partitions):
                raise _Refused(ErrorCode.invalid_replica_assignment,
                               f"{len(assignments)} assignments for "
                               f"{topic.count - len(state.partitions)} new partitions.")
            try:
                node.core.create_partitions(state, topic.count, assignments, request.validate_only)
            except ControllerError as exc:
                raise _Refused(exc.error, exc.message) from None
        except _Refused as exc:
            results.append({"name": topic.name, "error_code": exc.error,
                            "error_message": exc.message})
            continue
        results.append({"name": topic.name, "error_code": ErrorCode.none})
    return {"results": results}


# --- configs -----------------------------------------------------------------------------------


def handle_incremental_alter_configs(
    node: ControllerNode, request: Any, now_ms: int
) -> dict[str, Any]:
    responses = []
    for resource in request.resources:
        response = resource_answer(resource)
        responses.append(response)
        if resource.resource_type != RESOURCE_TOPIC:
            response.update(error_code=ErrorCode.invalid_request,
                            error_message="Only topic configurations can be altered; broker "
                            "configurations of the reference broker are static.")
            continue
        state = node.image.topic(resource.resource_name)
        if state is None:
            response.update(error_code=ErrorCode.unknown_topic_or_partition,
                            error_message=f"Topic '{resource.resource_name}' does not exist.")
            continue
        try:
            updated = apply_config_ops(node.config, state.configs, resource.configs)
        except ConfigError as exc:
            response.update(error_code=ErrorCode.invalid_config, error_message=str(exc))
            continue
        if not request.validate_only:
            node.core.set_topic_configs(state, updated)
    return {"responses": responses}


def handle_describe_configs(node: ControllerNode, request: Any, now_ms: int) -> dict[str, Any]:
    """Topic configs as the controller knows them (brokers answer clients themselves)."""
    results = []
    for resource in request.resources:
        result = resource_answer(resource, configs=[])
        keys = tuple(resource.configuration_keys) if resource.configuration_keys else None
        state = node.image.topic(resource.resource_name)
        if resource.resource_type != RESOURCE_TOPIC:
            result.update(error_code=ErrorCode.invalid_request,
                          error_message="The controller describes topic configurations only.")
        elif state is None:
            result.update(error_code=ErrorCode.unknown_topic_or_partition,
                          error_message=f"Topic '{resource.resource_name}' does not exist.")
        else:
            result["configs"] = describe_topic_configs(
                node.config, state.configs, keys, getattr(request, "include_synonyms", False),
                getattr(request, "include_documentation", False),
            )
        results.append(result)
    return {"results": results}

