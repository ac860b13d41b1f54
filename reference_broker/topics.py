"""Topic names, and the read-only view of topics the broker serves from its metadata image.

Topics live in the cluster metadata log (:mod:`reference_broker.metadata`): the controller
appends ``TopicRecord`` / ``PartitionRecord`` / ``RemoveTopic`` records and every broker replays
them. :class:`TopicsView` is what request handlers see of that: a topic's name, id, partition
count, replication factor and config overrides.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping

import attrs

from reference_broker.metadata.image import MetadataImage, TopicState

MAX_TOPIC_NAME_LENGTH = 249
_LEGAL_NAME = re.compile(r"[a-zA-Z0-9._-]+")


class InvalidTopicError(ValueError):
    """A topic name Kafka would refuse (INVALID_TOPIC_EXCEPTION)."""


def validate_topic_name(name: str) -> None:
    """Kafka's rules (org.apache.kafka.common.internals.Topic.validate)."""
    if not name:
        raise InvalidTopicError("topic name is empty")
    if name in (".", ".."):
        raise InvalidTopicError(f"topic name cannot be {name!r}")
    if len(name) > MAX_TOPIC_NAME_LENGTH:
        raise InvalidTopicError(
            f"topic name is {len(name)} characters, longer than {MAX_TOPIC_NAME_LENGTH}"
        )
    if not _LEGAL_NAME.fullmatch(name):
        raise InvalidTopicError(
            f"topic name {name!r} has characters other than ASCII letters, digits, '.', '_', '-'"
        )


@attrs.frozen(slots=True)
class TopicInfo:
    """One topic as the broker's metadata image has it."""

    name: str
    topic_id: uuid.UUID
    partitions: int  # partition count
    replication_factor: int
    configs: Mapping[str, str]


def _info(state: TopicState) -> TopicInfo:
    first = state.partitions.get(0)
    return TopicInfo(
        state.name, state.topic_id, len(state.partitions),
        len(first.replicas) if first is not None else 0, dict(state.configs),
    )


class TopicsView:
    """Topics by name and by id, rebuilt lazily after the image changes (:meth:`invalidate`)."""

    def __init__(self, image: MetadataImage) -> None:
        self._image = image
        self._by_name: dict[str, TopicInfo] | None = None
        self._by_id: dict[uuid.UUID, TopicInfo] = {}

    def invalidate(self) -> None:
        self._by_name = None

    def _names(self) -> dict[str, TopicInfo]:
        if self._by_name is None:
            infos = [_info(state) for state in self._image.topics_by_id.values()]
            self._by_name = {info.name: info for info in infos}
            self._by_id = {info.topic_id: info for info in infos}
        return self._by_name

    def __iter__(self) -> Iterator[TopicInfo]:
        return iter(list(self._names().values()))

    def __len__(self) -> int:
        return len(self._names())

    def get(self, name: str) -> TopicInfo | None:
        return self._names().get(name)

    def by_id(self, topic_id: uuid.UUID) -> TopicInfo | None:
        self._names()
        return self._by_id.get(topic_id)
