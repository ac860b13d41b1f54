"""DescribeConfigs and IncrementalAlterConfigs for topics (and a read-only view of the broker).

DescribeConfigs is answered from this broker's metadata (see
:mod:`reference_broker.topic_configs` for where each value comes from). IncrementalAlterConfigs
is forwarded to the controller, which owns topic configs (KIP-590); broker configs are static
here: altering them is refused.
"""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from reference_broker.broker import Broker
from reference_broker.config import BROKER_KEYS, ConfigError, format_config_value
from reference_broker.controller_client import config_change
from reference_broker.handlers.context import Later, RequestContext
from reference_broker.handlers.topics import as_dict
from reference_broker.topic_configs import (
    RESOURCE_BROKER,
    RESOURCE_TOPIC,
    SOURCE_DEFAULT,
    SOURCE_STATIC_BROKER,
    apply_config_ops,
    describe_topic_configs,
    resource_answer,
)

__all__ = ["describe_topic_configs", "handle_describe_configs", "handle_incremental_alter_configs"]


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
        result = resource_answer(resource, configs=[])
        keys = tuple(resource.configuration_keys) if resource.configuration_keys else None
        if resource.resource_type == RESOURCE_TOPIC:
            record = broker.topics.get(resource.resource_name)
            if record is None:
                result.update(error_code=ErrorCode.unknown_topic_or_partition,
                              error_message=f"Topic '{resource.resource_name}' does not exist.")
            else:
                result["configs"] = describe_topic_configs(
                    broker.config, record.configs, keys, include_synonyms, include_docs
                )
        elif resource.resource_type == RESOURCE_BROKER and resource.resource_name in (
            "", str(broker.node_id)
        ):
            result["configs"] = _describe_broker(broker, keys, include_docs)
        else:
            result.update(error_code=ErrorCode.invalid_request,
                          error_message=f"Unsupported resource type {resource.resource_type} "
                          f"or unknown resource {resource.resource_name!r}.")
        results.append(result)
    return {"results": results}


def handle_incremental_alter_configs(
    broker: Broker, ctx: RequestContext, request: Any, now_ms: int
) -> Any:
    later = Later(lambda response: response)
    resources = list(request.resources)

    def expected() -> dict[str, dict[str, str]]:
        """The overrides each altered topic should end up with (computed as the controller
        does), so the answer can wait until this broker's metadata shows them."""
        wanted: dict[str, dict[str, str]] = {}
        for resource in resources:
            current = broker.topics.get(resource.resource_name)
            if resource.resource_type != RESOURCE_TOPIC or current is None:
                continue
            try:
                wanted[resource.resource_name] = apply_config_ops(
                    broker.config, current.configs, resource.configs)
            except ConfigError:
                continue
        return wanted

    targets = {} if request.validate_only else expected()

    def answered(response: Any) -> None:
        if response is None:
            later.resolve({"responses": [
                {"resource_type": r.resource_type, "resource_name": r.resource_name,
                 "error_code": ErrorCode.request_timed_out, "error_message": None}
                for r in resources]})
            return
        results = [as_dict(result) for result in response.responses]
        done = {r["resource_name"] for r in results if r["error_code"] is ErrorCode.none}

        def visible() -> bool:
            return all((info := broker.topics.get(name)) is None or dict(info.configs) == configs
                       for name, configs in targets.items() if name in done)

        broker.after_metadata(visible, lambda: later.resolve({"responses": results}), now_ms)

    broker.controller_client.incremental_alter_configs(
        [config_change(r.resource_type, r.resource_name,
                       [(c.name, c.config_operation, c.value) for c in r.configs]) for r in resources],
        request.validate_only, answered, now_ms)
    return later.response()
