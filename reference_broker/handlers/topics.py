"""CreateTopics, DeleteTopics and CreatePartitions: forwarded to the controller (KIP-590).

The controller validates and decides (:mod:`reference_broker.controller.api`); the broker only
applies its own guard first (the partitions its open-file limit can hold), forwards the request
and answers the client with the controller's answer, in the client's version. Combined mode
answers at once. With a remote controller the answer waits (a few seconds at most) until this
broker's metadata shows the change, so a client that creates a topic and then asks this broker
about it finds it.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from typing import Any

from kio.schema.errors import ErrorCode

from reference_broker.broker import Broker
from reference_broker.controller_client import new_partitions, new_topic
from reference_broker.handlers.context import Later, RequestContext
from reference_broker.topic_admin import BrokerError

DEFAULT = -1  # num_partitions / replication_factor of -1 mean "the broker default" (KIP-464)
NO_TOPIC_ID = uuid.UUID(int=0)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return as_dict(value)
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


def as_dict(entity: Any) -> dict[str, Any]:
    """A kio response entity (of the controller's version) as the dict a handler returns, so
    build() can shape it for the client's version; nested entities become dicts too."""
    return {field.name: _plain(getattr(entity, field.name))
            for field in dataclasses.fields(entity)}


def _guard(broker: Broker, topic: Any) -> None:
    """This node's partition guard, before the request goes to the controller."""
    partitions = topic.num_partitions
    if topic.assignments:
        partitions = len(topic.assignments)
    elif partitions == DEFAULT:
        partitions = int(broker.config.get("num.partitions"))
    if partitions > 0:
        broker.admin.check_partition_limits(partitions, partitions)


class _Split:
    """A request's topics split into those this node refuses itself (its guard raised) and those
    it forwards to the controller; `answer` puts the answers back in the client's order and
    resolves the client's (later) response with them."""

    def __init__(self, topics: list[Any], guard: Callable[[Any], None], key: str) -> None:
        self.count = len(topics)
        self.key = key
        self.refused: dict[int, dict[str, Any]] = {}
        self.forwarded: list[Any] = []
        for position, topic in enumerate(topics):
            try:
                guard(topic)
            except BrokerError as exc:
                self.refused[position] = {"name": topic.name, "error_code": exc.error,
                                          "error_message": exc.message}
            else:
                self.forwarded.append(topic)
        self.later = Later(lambda response: response)

    def merge(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        answers = iter(results)
        return {self.key: [self.refused[i] if i in self.refused else next(answers)
                           for i in range(self.count)]}

    def answer(self, results: list[dict[str, Any]]) -> None:
        self.later.resolve(self.merge(results))

    def timed_out(self, **fields: Any) -> None:
        """The controller did not answer: every forwarded topic gets REQUEST_TIMED_OUT."""
        self.answer([{"name": t.name, "error_code": ErrorCode.request_timed_out, **fields} for t in self.forwarded])


def handle_create_topics(broker: Broker, ctx: RequestContext, request: Any, now_ms: int) -> Any:
    split = _Split(request.topics, lambda topic: _guard(broker, topic), "topics")
    if not split.forwarded:
        return split.merge([])

    def answered(response: Any) -> None:
        if response is None:
            split.timed_out(error_message="the controller did not answer")
            return
        results = [as_dict(result) for result in response.topics]
        created = [r["topic_id"] for r in results
                   if r["error_code"] is ErrorCode.none and not request.validate_only]
        broker.after_metadata(
            lambda: all(broker.topics.by_id(topic_id) is not None for topic_id in created),
            lambda: split.answer(results), now_ms,
        )

    broker.controller_client.create_topics(
        [new_topic(t.name, t.num_partitions, t.replication_factor,
                   [(a.partition_index, a.broker_ids) for a in t.assignments],
                   [(c.name, c.value) for c in t.configs]) for t in split.forwarded],
        request.timeout, request.validate_only, answered, now_ms)
    return split.later.response()


def handle_delete_topics(broker: Broker, ctx: RequestContext, request: Any, now_ms: int) -> Any:
    if hasattr(request, "topic_names"):
        wanted: list[tuple[str | None, uuid.UUID]] = [
            (name, NO_TOPIC_ID) for name in request.topic_names
        ]
    else:
        wanted = [(topic.name, topic.topic_id) for topic in request.topics]
    later = Later(lambda response: response)

    def answered(response: Any) -> None:
        if response is None:
            later.resolve({"responses": [
                {"name": name, "topic_id": topic_id, "error_code": ErrorCode.request_timed_out}
                for name, topic_id in wanted]})
            return
        results = [as_dict(result) for result in response.responses]
        deleted = [r["topic_id"] for r in results if r["error_code"] is ErrorCode.none]
        broker.after_metadata(
            lambda: all(broker.topics.by_id(topic_id) is None for topic_id in deleted),
            lambda: later.resolve({"responses": results}), now_ms,
        )

    broker.controller_client.delete_topics(wanted, request.timeout, answered, now_ms)
    return later.response()


def handle_create_partitions(broker: Broker, ctx: RequestContext, request: Any, now_ms: int) -> Any:
    def guard(topic: Any) -> None:
        current = broker.topics.get(topic.name)
        if current is not None and topic.count > current.partitions:
            broker.admin.check_partition_limits(topic.count, topic.count - current.partitions)

    split = _Split(request.topics, guard, "results")
    if not split.forwarded:
        return split.merge([])

    def answered(response: Any) -> None:
        if response is None:
            split.timed_out()
            return
        results = [as_dict(result) for result in response.results]
        grown = {r["name"]: t.count for r, t in zip(results, split.forwarded, strict=True)
                 if r["error_code"] is ErrorCode.none and not request.validate_only}

        def visible() -> bool:
            return all((info := broker.topics.get(name)) is not None and info.partitions >= count
                       for name, count in grown.items())

        broker.after_metadata(visible, lambda: split.answer(results), now_ms)

    broker.controller_client.create_partitions(
        [new_partitions(t.name, t.count, None if t.assignments is None else [a.broker_ids for a in t.assignments])
         for t in split.forwarded],
        request.timeout, request.validate_only, answered, now_ms)
    return split.later.response()
