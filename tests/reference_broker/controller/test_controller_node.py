"""The controller node: its request handlers over the durable metadata log (no sockets)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from reference_broker.config import load_broker_config
from reference_broker.controller.node import ControllerNode
from reference_broker.controller_channel import controller_request, controller_version
from reference_broker.protocol.codec import build_response

CLUSTER = "test-cluster"


def call(node: ControllerNode, api_key: int, fields: Mapping[str, Any], now: int = 0) -> Any:
    """One request at the version brokers send, answered as the response dataclass."""
    response = node.handle(api_key, controller_request(api_key, fields), now)
    return build_response(api_key, controller_version(api_key), response)


def open_node(directory: Path, **overrides: str) -> ControllerNode:
    config = load_broker_config(overrides={"process.roles": "controller", "listeners":
                                           "CONTROLLER://127.0.0.1:0",
                                           "broker.session.timeout.ms": "1000",
                                           "broker.heartbeat.interval.ms": "100",
                                           **overrides}.items())
    return ControllerNode(config, directory, CLUSTER, 0)


def register(node: ControllerNode, broker: int, now: int = 0) -> int:
    answer = call(node, 62, {"broker_id": broker, "cluster_id": CLUSTER,
                             "incarnation_id": uuid.uuid4(),
                             "listeners": [{"name": "PLAINTEXT", "host": "h", "port": 9000 + broker,
                                            "security_protocol": 0}]}, now)
    assert answer.error_code == ErrorCode.none
    heartbeat = call(node, 63, {"broker_id": broker, "broker_epoch": answer.broker_epoch,
                                "current_metadata_offset": node.image.offset}, now)
    assert not heartbeat.is_fenced
    return int(answer.broker_epoch)


def create(node: ControllerNode, name: str, partitions: int = 1, replication: int = 1,
           configs: Mapping[str, str | None] | None = None,
           assignments: list[list[int]] | None = None) -> Any:
    topic: dict[str, Any] = {"name": name, "num_partitions": partitions,
                             "replication_factor": replication,
                             "configs": [{"name": k, "value": v} for k, v in (configs or {}).items()]}
    if assignments is not None:
        topic["assignments"] = [{"partition_index": i, "broker_ids": nodes}
                                for i, nodes in enumerate(assignments)]
    return call(node, 19, {"topics": [topic], "timeout": 1000}).topics[0]


@pytest.fixture
def node(tmp_path: Path) -> ControllerNode:
    controller = open_node(tmp_path)
    for broker in (1, 2, 3):
        register(controller, broker)
    return controller


def test_registration_checks_the_cluster_id(tmp_path: Path) -> None:
    """A broker formatted for another cluster is refused (INCONSISTENT_CLUSTER_ID)."""
    controller = open_node(tmp_path)
    answer = call(controller, 62, {"broker_id": 1, "cluster_id": "other", "incarnation_id":
                                   uuid.uuid4(), "listeners": []})
    assert answer.error_code == ErrorCode.inconsistent_cluster_id
    assert 1 not in controller.image.brokers


@pytest.mark.parametrize(("name", "partitions", "replication", "configs", "assignments", "error"), [
    ("bad/name", 1, 1, None, None, ErrorCode.invalid_topic_exception),
    ("t", 0, 1, None, None, ErrorCode.invalid_partitions),
    ("t", 1, 4, None, None, ErrorCode.invalid_replication_factor),
    ("t", 1, 1, {"retention.ms": "soon"}, None, ErrorCode.invalid_config),
    ("t", 1, 1, {"no.such.key": "1"}, None, ErrorCode.invalid_config),
    ("t", -1, -1, None, [[1, 9]], ErrorCode.invalid_replica_assignment),
    ("t", -1, -1, None, [[1, 2], [3]], ErrorCode.invalid_replica_assignment),
    ("t", 2, -1, None, [[1]], ErrorCode.invalid_request),
])
def test_create_topics_refuses_what_kafka_refuses(
    node: ControllerNode, name: str, partitions: int, replication: int,
    configs: dict[str, str] | None, assignments: list[list[int]] | None, error: ErrorCode,
) -> None:
    """Bad names, counts, replication factors, configs and assignments get Kafka's errors and
    create nothing."""
    result = create(node, name, partitions, replication, configs, assignments)
    assert result.error_code == error
    assert node.image.topic(name) is None


def test_topics_are_created_spread_altered_and_deleted(node: ControllerNode) -> None:
    """A created topic gets an id and replicas on distinct live brokers; a duplicate is
    TOPIC_ALREADY_EXISTS; configs change by incremental ops; partitions grow; deletion
    removes it."""
    result = create(node, "t", 3, 2, {"retention.ms": "1000"})
    assert result.error_code == ErrorCode.none and result.num_partitions == 3
    state = node.image.topic("t")
    assert state is not None and state.topic_id == result.topic_id
    assert all(len(set(p.replicas)) == 2 for p in state.partitions.values())
    assert {p.leader for p in state.partitions.values()} <= {1, 2, 3}
    assert create(node, "t").error_code == ErrorCode.topic_already_exists
    altered = call(node, 44, {"resources": [{"resource_type": 2, "resource_name": "t", "configs": [
        {"name": "cleanup.policy", "config_operation": 2, "value": "compact"},
        {"name": "retention.ms", "config_operation": 1, "value": None}]}]})
    assert altered.responses[0].error_code == ErrorCode.none
    assert node.image.topics_by_name["t"].configs == {"cleanup.policy": "delete,compact"}
    grown = call(node, 37, {"topics": [{"name": "t", "count": 5, "assignments": None}]})
    assert grown.results[0].error_code == ErrorCode.none
    assert len(node.image.topics_by_name["t"].partitions) == 5
    deleted = call(node, 20, {"topics": [{"name": "t", "topic_id": uuid.UUID(int=0)}]})
    assert deleted.responses[0].error_code == ErrorCode.none
    assert node.image.topic("t") is None


def test_a_restarted_controller_has_the_same_image(tmp_path: Path) -> None:
    """Everything the controller decided is in its log: a new controller over the same
    directory has the same brokers, topics, partitions and producer id blocks."""
    first = open_node(tmp_path)
    epoch = register(first, 1)
    create(first, "t", 2, 1, {"retention.ms": "5"})
    block = call(first, 67, {"broker_id": 1, "broker_epoch": epoch})
    first.close()
    second = open_node(tmp_path)
    assert second.image.offset == first.image.offset
    assert second.image.brokers == first.image.brokers
    assert second.image.topics_by_name["t"].partitions == first.image.topics_by_name["t"].partitions
    again = call(second, 67, {"broker_id": 1, "broker_epoch": epoch})
    assert again.producer_id_start == block.producer_id_start + block.producer_id_len
    second.close()


def test_alter_partition_fences_a_stale_leader(node: ControllerNode) -> None:
    """AlterPartition from the leader at the current epochs changes the ISR; the same request
    again (now a stale partition epoch) is refused, and so is one from a non-leader."""
    create(node, "t", 1, 3)
    part = node.image.topics_by_name["t"].partitions[0]
    epoch = node.image.brokers[part.leader].broker_epoch
    follower = next(n for n in part.replicas if n != part.leader)

    def alter(broker: int, partition_epoch: int) -> Any:
        return call(node, 56, {"broker_id": broker, "broker_epoch":
                               node.image.brokers[broker].broker_epoch, "topics": [{
                                   "topic_id": part.topic_id, "partitions": [{
                                       "partition_index": 0, "leader_epoch": part.leader_epoch,
                                       "partition_epoch": partition_epoch,
                                       "new_isr_with_epochs": [{"broker_id": part.leader,
                                                                "broker_epoch": epoch}]}]}]},
                    ).topics[0].partitions[0]

    changed = alter(part.leader, part.partition_epoch)
    assert changed.error_code == ErrorCode.none and tuple(changed.isr) == (part.leader,)
    assert alter(part.leader, part.partition_epoch).error_code == ErrorCode.invalid_update_version
    assert alter(follower, changed.partition_epoch).error_code == ErrorCode.fenced_leader_epoch


def test_heartbeats_keep_brokers_unfenced_and_silence_fences_them(node: ControllerNode) -> None:
    """A broker that stops heartbeating for broker.session.timeout.ms is fenced on a tick and
    loses its leaderships; a stale broker epoch is refused."""
    create(node, "t", 1, 3)
    leader = node.image.topics_by_name["t"].partitions[0].leader
    for broker in (1, 2, 3):
        if broker != leader:
            call(node, 63, {"broker_id": broker, "broker_epoch":
                            node.image.brokers[broker].broker_epoch,
                            "current_metadata_offset": node.image.offset}, 900)
    node.tick(1500)
    assert node.image.brokers[leader].fenced
    assert node.image.topics_by_name["t"].partitions[0].leader not in (leader, -1)
    stale = call(node, 63, {"broker_id": leader, "broker_epoch": 12345,
                            "current_metadata_offset": 0}, 1600)
    assert stale.error_code == ErrorCode.stale_broker_epoch
