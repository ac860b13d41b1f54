"""Synchronous topic operations on a whole broker in combined mode, for tests.

In combined mode (``process.roles=broker,controller``) the controller answers at once, so a
test can create, delete, grow and reconfigure topics in one call and get the controller's
error as a :class:`~reference_broker.topic_admin.BrokerError`. The broker itself only ever asks
the controller and handles its answer later (its handlers do); these helpers are not part of
it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from kio.schema.errors import ErrorCode

from reference_broker.broker import Broker
from reference_broker.controller_client import config_change, new_partitions
from reference_broker.topic_admin import METADATA_WAIT, BrokerError
from reference_broker.topic_configs import OP_DELETE, OP_SET, RESOURCE_TOPIC
from reference_broker.topics import TopicInfo


def create_topic(
    broker: Broker, name: str, partitions: int, replication_factor: int, configs: Mapping[str, str],
    now_ms: int,
) -> TopicInfo:
    """Create a topic and return it (combined mode: the controller answers at once).
    Raises BrokerError with the controller's error."""
    outcome: list[tuple[ErrorCode, str]] = []
    broker.admin.request_topic_creation(name, partitions, replication_factor, configs, now_ms,
                                  lambda error, message: outcome.append((error, message)))
    if not outcome:
        raise BrokerError(ErrorCode.request_timed_out, "the controller has not answered yet")
    error, message = outcome[0]
    if error is not ErrorCode.none:
        raise BrokerError(error, message)
    created = broker.topics.get(name)
    if created is None:
        raise BrokerError(ErrorCode.request_timed_out, f"topic {name} is not in this broker's metadata yet")
    return created


def delete_topic(broker: Broker, name: str) -> None:
    """Delete a topic (combined mode); raises BrokerError with the controller's error."""
    outcome: list[ErrorCode] = []

    def answered(response: Any) -> None:
        outcome.append(ErrorCode.request_timed_out if response is None
                       else ErrorCode(response.responses[0].error_code))

    broker.controller_client.delete_topics([(name, uuid.UUID(int=0))], METADATA_WAIT, answered, 0)
    if not outcome or outcome[0] is not ErrorCode.none:
        raise BrokerError(outcome[0] if outcome else ErrorCode.request_timed_out, f"cannot delete {name}")


def add_partitions(broker: Broker, name: str, total: int, now_ms: int, validate_only: bool) -> None:
    """Grow a topic to ``total`` partitions (combined mode); raises BrokerError."""
    record = broker.topics.get(name)
    if record is None:
        raise BrokerError(ErrorCode.unknown_topic_or_partition, f"Topic '{name}' does not exist.")
    if total > record.partitions:
        broker.admin.check_partition_limits(total, total - record.partitions)
    outcome: list[tuple[ErrorCode, str]] = []

    def answered(response: Any) -> None:
        if response is None:
            outcome.append((ErrorCode.request_timed_out, "the controller did not answer"))
        else:
            result = response.results[0]
            outcome.append((ErrorCode(result.error_code), result.error_message or ""))

    broker.controller_client.create_partitions([new_partitions(name, total)], METADATA_WAIT, validate_only,
                                               answered, now_ms)
    if not outcome or outcome[0][0] is not ErrorCode.none:
        raise BrokerError(*(outcome[0] if outcome else (ErrorCode.request_timed_out, "no answer")))


def set_topic_configs(broker: Broker, name: str, configs: Mapping[str, str]) -> None:
    """Replace a topic's config overrides (combined mode); raises BrokerError."""
    current = broker.topics.get(name)
    if current is None:
        raise BrokerError(ErrorCode.unknown_topic_or_partition, f"Topic '{name}' does not exist.")
    ops: list[tuple[str, int, str | None]] = [(key, OP_DELETE, None) for key in current.configs if key not in configs]
    ops += [(key, OP_SET, value) for key, value in configs.items()]
    outcome: list[ErrorCode] = []

    def answered(response: Any) -> None:
        outcome.append(ErrorCode.request_timed_out if response is None
                       else ErrorCode(response.responses[0].error_code))

    broker.controller_client.incremental_alter_configs([config_change(RESOURCE_TOPIC, name, ops)], False, answered, 0)
    if not outcome or outcome[0] is not ErrorCode.none:
        raise BrokerError(outcome[0] if outcome else ErrorCode.request_timed_out,
                          f"cannot alter configs of {name}")

