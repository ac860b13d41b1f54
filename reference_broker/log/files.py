"""File-system primitives the log layer relies on: names, complete writes, durable directories.

Writes go straight to the file descriptor (no Python buffering), so once an append returns its
bytes belong to the OS page cache and survive the death of the process, as in Kafka; only fsync
decides whether they also survive the machine.
"""

from __future__ import annotations

import os
from pathlib import Path

LOG_SUFFIX = ".log"
OFFSET_INDEX_SUFFIX = ".index"
TIME_INDEX_SUFFIX = ".timeindex"
TXN_INDEX_SUFFIX = ".txnindex"  # a segment's aborted transactions (Kafka's name)
CLEANED_SUFFIX = ".cleaned"  # a compacted segment being written (Kafka's name)
DELETED_SUFFIX = ".deleted"  # a segment on its way out (Kafka's name)
TEMPORARY_SUFFIX = ".tmp"  # a checkpoint being replaced
PRODUCER_SNAPSHOT_SUFFIX = ".snapshot"  # producer state as of an offset (Kafka's name)

LOG_START_CHECKPOINT = "log-start-offset-checkpoint"
RECOVERY_POINT_CHECKPOINT = "recovery-point-offset-checkpoint"
CLEANER_CHECKPOINT = "cleaner-offset-checkpoint"
CLEAN_SHUTDOWN_MARKER = ".kafka_cleanshutdown"  # Kafka's name for the same marker


def segment_path(directory: Path, base_offset: int, suffix: str) -> Path:
    """Kafka's naming: the base offset zero-padded to 20 digits, so names sort by offset."""
    return directory / f"{base_offset:020d}{suffix}"


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """os.write may write less than asked; loop until every byte reached the OS."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def fsync_directory(directory: Path) -> None:
    """Make file creations, renames and deletions in ``directory`` survive a power loss."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
