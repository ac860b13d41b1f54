"""The partition directories of a data directory: ``<log.dirs>/<topic>-<partition>``, each with
Kafka's ``partition.metadata`` naming the topic id it belongs to.

The topic id is what tells a partition's data apart from the data of an older, deleted topic of
the same name: the broker never serves a directory whose stored id is not its topic's
(it removes it, as it removes *stray* directories of topics deleted while it was down). This
module is the only place the broker's state reads or removes those directories.
"""

from __future__ import annotations

import base64
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import attrs

PARTITION_METADATA = "partition.metadata"  # Kafka's file naming a partition directory's topic id


def partition_dir(root: Path, topic: str, index: int) -> Path:
    return root / f"{topic}-{index}"


def topic_id_text(topic_id: uuid.UUID) -> str:
    """A topic id as Kafka writes it (URL-safe base64 without padding)."""
    return base64.urlsafe_b64encode(topic_id.bytes).decode().rstrip("=")


def read_topic_id(directory: Path) -> str | None:
    """The topic id ``directory``'s partition.metadata names (as text), or None."""
    try:
        text = (directory / PARTITION_METADATA).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "topic_id":
            return value.strip()
    return None


def write_topic_id(directory: Path, topic_id: uuid.UUID) -> None:
    path = directory / PARTITION_METADATA
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"version: 0\ntopic_id: {topic_id_text(topic_id)}\n")
    tmp.replace(path)


@attrs.frozen
class StoredPartition:
    """A partition directory found in a data directory."""

    directory: Path
    topic: str
    index: int
    topic_id: str


def stored_partitions(root: Path, skip: str) -> Iterator[StoredPartition]:
    """Every partition directory under ``root`` that names its topic id (``skip``: a directory
    name that is not a partition, the metadata log's)."""
    for directory in root.iterdir():
        if not directory.is_dir() or directory.name == skip:
            continue
        topic_id = read_topic_id(directory)
        name, _, index = directory.name.rpartition("-")
        if topic_id is not None and index.isdigit():
            yield StoredPartition(directory, name, int(index), topic_id)


def remove_partition_dir(directory: Path, ignore_errors: bool = True) -> None:
    shutil.rmtree(directory, ignore_errors=ignore_errors)
