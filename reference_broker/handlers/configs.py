"""DescribeConfigs and IncrementalAlterConfigs for topics (and a read-only view of the broker).

Each topic key reports where its value comes from, with Kafka's ConfigSource numbers: an
override set on the topic (TOPIC_CONFIG), the broker synonym set by the operator
(STATIC_BROKER_CONFIG), or Kafka's default (DEFAULT_CONFIG). Broker configs are static here:
altering them is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reference_broker.broker import Broker
from reference_broker.config import (
    BROKER_KEYS,
    TOPIC_KEYS,
    ConfigError,
    format_config_value,
    topic_config_value,
    validate_topic_configs,
)
from reference_broker.handlers.context import RequestContext

RESOURCE_TOPIC = 2
RESOURCE_BROKER = 4
SOURCE_TOPIC = 1
SOURCE_STATIC_BROKER = 4
SOURCE_DEFAULT = 5
CONFIG_TYPES = {"BOOLEAN": 1, "STRING": 2, "INT": 3, "SHORT": 4, "LONG": 5, "DOUBLE": 6, "LIST": 7}
OP_SET, OP_DELETE, OP_APPEND, OP_SUBTRACT = 0, 1, 2, 3


def describe_topic_configs(
    broker: Broker,
    overrides: Mapping[str, str],
    keys: tuple[str, ...] | None,
    include_synonyms: bool,
    include_documentation: bool,
) -> list[dict[str, Any]]:
    entries = []
    for name, spec in sorted(TOPIC_KEYS.items()):
        if keys and name not in keys:
            continue
        broker_value = format_config_value(broker.config.broker_default(spec.broker_synonym))
        broker_source = (
            SOURCE_STATIC_BROKER if broker.config.synonym_is_set(spec.broker_synonym) else SOURCE_DEFAULT
        )
        synonyms = []
        if name in overrides:
            synonyms.append({"name": name, "value": overrides[name], "source": SOURCE_TOPIC})
        synonyms.append({"name": spec.broker_synonym, "value": broker_value, "source": broker_source})
        entries.append(
            {
                "name": name,
                "value": format_config_value(topic_config_value(broker.config, overrides, name)),
                "read_only": False,
                "is_default": name not in overrides and broker_source == SOURCE_DEFAULT,
                "config_source": synonyms[0]["source"],
                "is_sensitive": False,
                "synonyms": synonyms if include_synonyms else [],
                "config_type": CONFIG_TYPES[spec.kafka_type],
                "documentation": BROKER_KEYS[spec.broker_synonym].doc if include_documentation else None,
            }
        )
    return entries


def _describe_broker(broker: Broker, keys: tuple[str, ...] | None, docs: bool) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for name, spec in sorted(BROKER_KEYS.items()):
        if keys and name not in keys:
            continue
        value = broker.config.get(name)
        source = SOURCE_STATIC_BROKER if broker.config.is_set(name) else SOURCE_DEFAULT
        entries.append(
            {
                "name": name,
                "value": None if value is None else format_config_value(value),
                "read_only": True,
                "is_default": source == SOURCE_DEFAULT,
                "config_source": source,
                "is_sensitive": False,
                "synonyms": [],
                "documentation": spec.doc if docs else None,
            }
        )
    return entries


def handle_describe_configs(broker: Broker, ctx: RequestContext, request: Any, now_ms: int) -> Any:
    results = []
    include_synonyms = getattr(request, "include_synonyms", False)
    include_docs = getattr(request, "include_documentation", False)
    for resource in request.resources:
        result: dict[str, Any] = {
            "resource_type": resource.resource_type,
            "resource_name": resource.resource_name,
            "error_code": "none",
            "error_message": None,
            "configs": [],
        }
        keys = tuple(resource.configuration_keys) if resource.configuration_keys else None
        if resource.resource_type == RESOURCE_TOPIC:
            record = broker.topics.get(resource.resource_name)
            if record is None:
                result.update(error_code="unknown_topic_or_partition",
                              error_message=f"Topic '{resource.resource_name}' does not exist.")
            else:
                result["configs"] = describe_topic_configs(
                    broker, record.configs, keys, include_synonyms, include_docs
                )
        elif resource.resource_type == RESOURCE_BROKER and resource.resource_name in (
            "", str(broker.node_id)
        ):
            result["configs"] = _describe_broker(broker, keys, include_docs)
        else:
            result.update(error_code="invalid_request",
                          error_message=f"Unsupported resource type {resource.resource_type} "
                          f"or unknown resource {resource.resource_name!r}.")
        results.append(result)
    return {"results": results}


def _apply_ops(broker: Broker, current: dict[str, str], ops: Any) -> dict[str, str]:
    """The topic's overrides after applying every op; raises ConfigError naming the bad key.

    APPEND and SUBTRACT start from the effective value (the broker default when the topic has
    no override), as Kafka's ConfigAdminManager does.
    """
    updated = dict(current)
    for op in ops:
        spec = TOPIC_KEYS.get(op.name)
        if spec is None:
            raise ConfigError(f"unknown topic configuration {op.name}")
        if op.config_operation == OP_SET:
            if op.value is None:
                raise ConfigError(f"null value for configuration {op.name}")
            updated[op.name] = op.value
        elif op.config_operation == OP_DELETE:
            updated.pop(op.name, None)
        elif op.config_operation in (OP_APPEND, OP_SUBTRACT):
            if spec.kafka_type != "LIST":
                raise ConfigError(
                    f"configuration {op.name} is not a list, so APPEND/SUBTRACT do not apply"
                )
            effective = format_config_value(topic_config_value(broker.config, updated, op.name))
            items = [i for i in effective.split(",") if i]
            given = [i.strip() for i in (op.value or "").split(",") if i.strip()]
            if op.config_operation == OP_APPEND:
                items += [i for i in given if i not in items]
            else:
                items = [i for i in items if i not in given]
            updated[op.name] = ",".join(items)
        else:
            raise ConfigError(f"unknown config operation {op.config_operation} for {op.name}")
    return validate_topic_configs(updated)


def handle_incremental_alter_configs(
    broker: Broker, ctx: RequestContext, request: Any, now_ms: int
) -> Any:
    responses = []
    for resource in request.resources:
        response = {
            "resource_type": resource.resource_type,
            "resource_name": resource.resource_name,
            "error_code": "none",
            "error_message": None,
        }
        responses.append(response)
        if resource.resource_type != RESOURCE_TOPIC:
            response.update(error_code="invalid_request",
                            error_message="Only topic configurations can be altered; broker "
                            "configurations of the reference broker are static.")
            continue
        record = broker.topics.get(resource.resource_name)
        if record is None:
            response.update(error_code="unknown_topic_or_partition",
                            error_message=f"Topic '{resource.resource_name}' does not exist.")
            continue
        try:
            updated = _apply_ops(broker, record.configs, resource.configs)
        except ConfigError as exc:
            response.update(error_code="invalid_config", error_message=str(exc))
            continue
        if not request.validate_only:
            broker.set_topic_configs(record.name, updated)
    return {"responses": responses}
