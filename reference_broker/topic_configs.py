"""Topic configuration overrides as DescribeConfigs shows them and IncrementalAlterConfigs
changes them; pure functions over a :class:`~reference_broker.config.BrokerConfig`, shared by the
broker (DescribeConfigs) and the controller (CreateTopics answers, IncrementalAlterConfigs).

Each topic key reports where its value comes from, with Kafka's ConfigSource numbers: an
override set on the topic (TOPIC_CONFIG), the broker synonym set by the operator
(STATIC_BROKER_CONFIG), or Kafka's default (DEFAULT_CONFIG).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kio.schema.errors import ErrorCode

from reference_broker.config import (
    BROKER_KEYS,
    TOPIC_KEYS,
    BrokerConfig,
    ConfigError,
    format_config_value,
    topic_config_value,
    validate_topic_configs,
)

SOURCE_TOPIC = 1
SOURCE_STATIC_BROKER = 4
SOURCE_DEFAULT = 5
CONFIG_TYPES = {"BOOLEAN": 1, "STRING": 2, "INT": 3, "SHORT": 4, "LONG": 5, "DOUBLE": 6, "LIST": 7}
OP_SET, OP_DELETE, OP_APPEND, OP_SUBTRACT = 0, 1, 2, 3
RESOURCE_TOPIC, RESOURCE_BROKER = 2, 4  # ConfigResource types


def resource_answer(resource: Any, **fields: Any) -> dict[str, Any]:
    """The answer to one resource of DescribeConfigs or IncrementalAlterConfigs, without an
    error until one is set (``fields`` adds the rest, e.g. ``configs``)."""
    return {"resource_type": resource.resource_type, "resource_name": resource.resource_name,
            "error_code": ErrorCode.none, "error_message": None, **fields}


def describe_topic_configs(
    config: BrokerConfig,
    overrides: Mapping[str, str],
    keys: tuple[str, ...] | None,
    include_synonyms: bool,
    include_documentation: bool,
) -> list[dict[str, Any]]:
    entries = []
    for name, spec in sorted(TOPIC_KEYS.items()):
        if keys and name not in keys:
            continue
        broker_value = format_config_value(config.broker_default(spec.broker_synonym))
        broker_source = (
            SOURCE_STATIC_BROKER if config.synonym_is_set(spec.broker_synonym) else SOURCE_DEFAULT
        )
        synonyms = []
        if name in overrides:
            synonyms.append({"name": name, "value": overrides[name], "source": SOURCE_TOPIC})
        synonyms.append({"name": spec.broker_synonym, "value": broker_value, "source": broker_source})
        entries.append(
            {
                "name": name,
                "value": format_config_value(topic_config_value(config, overrides, name)),
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


def apply_config_ops(
    config: BrokerConfig, current: Mapping[str, str], ops: Iterable[Any]
) -> dict[str, str]:
    """The topic's overrides after applying every IncrementalAlterConfigs op (objects with
    ``name``, ``config_operation`` and ``value``); raises ConfigError naming the bad key.

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
            effective = format_config_value(topic_config_value(config, updated, op.name))
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
