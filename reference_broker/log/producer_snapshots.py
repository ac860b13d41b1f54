"""Producer-state snapshot files: ``<offset>.snapshot`` in the partition directory.

A snapshot named ``N`` (20 digits, like segment names and as Kafka names them) holds the producer
state of the batches below offset ``N``. The log writes one when a segment rolls (named after the
new segment's base offset) and one when it closes (named after the log end offset), so opening a
log only replays the batch headers after its newest snapshot. Which snapshots to keep, and which
to trust, is decided in :class:`~reference_broker.log.partition_log.PartitionLog`; this module
only names, lists, writes (atomically, like the checkpoints), reads and deletes them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from reference_broker.log.files import (
    PRODUCER_SNAPSHOT_SUFFIX,
    TEMPORARY_SUFFIX,
    fsync_directory,
    segment_path,
    write_all,
)
from reference_broker.producers.snapshot import SnapshotError, decode, encode
from reference_broker.producers.state import ProducerEntry

log = logging.getLogger(__name__)

_NAME_DIGITS = 20


def snapshot_path(directory: Path, offset: int) -> Path:
    return segment_path(directory, offset, PRODUCER_SNAPSHOT_SUFFIX)


def snapshot_offsets(directory: Path) -> list[int]:
    """The offsets of the snapshots in ``directory``, ascending."""
    return sorted(
        int(path.stem)
        for path in directory.glob("*" + PRODUCER_SNAPSHOT_SUFFIX)
        if len(path.stem) == _NAME_DIGITS and path.stem.isdigit()
    )


def write_snapshot(directory: Path, offset: int, entries: list[ProducerEntry]) -> None:
    """Write the snapshot for ``offset``: a temporary file, fsync, rename, fsync the directory,
    so a crash leaves the complete snapshot or none (a stray ``.tmp`` is removed on open)."""
    path = snapshot_path(directory, offset)
    temporary = path.with_name(path.name + TEMPORARY_SUFFIX)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_all(fd, encode(entries))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    fsync_directory(directory)


def delete_snapshot(directory: Path, offset: int) -> None:
    snapshot_path(directory, offset).unlink(missing_ok=True)


def load_latest_snapshot(
    directory: Path, lowest: int, highest: int
) -> tuple[int, list[ProducerEntry]] | None:
    """The newest intact snapshot whose offset lies in ``[lowest, highest]``, or None.

    A snapshot that does not decode (torn by a power loss, corrupted) is deleted with a
    warning and the next older one is tried, as Kafka's ProducerStateManager does.
    """
    for offset in reversed(snapshot_offsets(directory)):
        if not lowest <= offset <= highest:
            continue
        path = snapshot_path(directory, offset)
        try:
            return offset, decode(path.read_bytes())
        except (SnapshotError, OSError) as exc:
            log.warning("deleting unreadable producer snapshot %s: %s", path, exc)
            path.unlink(missing_ok=True)
    return None
