"""Topic metadata: names, topic ids, partition counts and per-topic config overrides, on disk.

Kafka keeps this in the KRaft metadata log; a single reference node keeps it in one JSON file in
its log directory, rewritten atomically (write, fsync, rename) on every change, so a crash leaves
either the old or the new catalogue, never half of one. Partition data lives beside it in
``<topic>-<partition>`` directories, as in Kafka.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

CATALOGUE_FILE = "__kconform_topics.json"
CATALOGUE_VERSION = 1
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


@attrs.define(slots=True)
class TopicRecord:
    """What the catalogue remembers about one topic."""

    name: str
    topic_id: uuid.UUID
    partitions: int
    replication_factor: int
    configs: dict[str, str] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "topic_id": str(self.topic_id),
            "partitions": self.partitions,
            "replication_factor": self.replication_factor,
            "configs": self.configs,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TopicRecord:
        return cls(
            name=data["name"],
            topic_id=uuid.UUID(data["topic_id"]),
            partitions=int(data["partitions"]),
            replication_factor=int(data["replication_factor"]),
            configs={str(k): str(v) for k, v in data.get("configs", {}).items()},
        )


class TopicCatalogue:
    """The set of topics, by name and by id, persisted in ``CATALOGUE_FILE``."""

    def __init__(self, directory: Path) -> None:
        self._path = directory / CATALOGUE_FILE
        self._by_name: dict[str, TopicRecord] = {}
        self._by_id: dict[uuid.UUID, TopicRecord] = {}
        if self._path.exists():
            self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self._path.read_text())
            if data.get("version") != CATALOGUE_VERSION:
                raise ValueError(f"unsupported catalogue version {data.get('version')!r}")
            records = [TopicRecord.from_json(item) for item in data["topics"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise RuntimeError(f"topic catalogue {self._path} is unreadable: {exc}") from exc
        for record in records:
            self._index(record)

    def _index(self, record: TopicRecord) -> None:
        self._by_name[record.name] = record
        self._by_id[record.topic_id] = record

    def _save(self) -> None:
        payload = {
            "version": CATALOGUE_VERSION,
            "topics": [record.to_json() for record in self._by_name.values()],
        }
        tmp = self._path.with_suffix(".tmp")
        with open(tmp, "w") as handle:
            json.dump(payload, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self._path)

    def __iter__(self) -> Iterator[TopicRecord]:
        return iter(list(self._by_name.values()))

    def __len__(self) -> int:
        return len(self._by_name)

    def get(self, name: str) -> TopicRecord | None:
        return self._by_name.get(name)

    def by_id(self, topic_id: uuid.UUID) -> TopicRecord | None:
        return self._by_id.get(topic_id)

    def add(self, name: str, partitions: int, replication_factor: int,
            configs: dict[str, str]) -> TopicRecord:
        record = TopicRecord(name, uuid.uuid4(), partitions, replication_factor, dict(configs))
        self._index(record)
        self._save()
        return record

    def remove(self, name: str) -> TopicRecord:
        record = self._by_name.pop(name)
        del self._by_id[record.topic_id]
        self._save()
        return record

    def set_partitions(self, name: str, partitions: int) -> None:
        self._by_name[name].partitions = partitions
        self._save()

    def set_configs(self, name: str, configs: dict[str, str]) -> None:
        self._by_name[name].configs = dict(configs)
        self._save()
