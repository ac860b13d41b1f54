"""Opening a partition directory: find its segments and recover whatever a crash left behind.

Kafka's LogLoader, reduced to its rules:

1. Temporary files (``.cleaned`` from an interrupted compaction, ``.deleted``, half-written
   checkpoints) and index files whose ``.log`` is gone are removed.
2. After a clean shutdown (the marker file exists) every segment is trusted. Otherwise only the
   segments wholly below the persisted recovery point are: everything from the segment holding
   the recovery point on is CRC-checked batch by batch.
3. A trusted segment whose indexes are missing, malformed or disagree with its log is recovered
   too, which rebuilds its indexes.
4. Recovery keeps the valid prefix of a segment; the first torn or corrupt batch, the rest of
   that segment and every later segment are removed, so offsets stay contiguous.
5. The log start offset is the checkpointed one or the first segment's base offset, whichever is
   larger. Should the crash have lost records DeleteRecords had already passed, the log restarts
   empty at the log start offset.

Bytes that reached the file before a crash are never lost unless a batch before them is torn.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from reference_broker.log.checkpoint import read_offset
from reference_broker.log.errors import CorruptIndexError
from reference_broker.log.files import (
    CLEAN_SHUTDOWN_MARKER,
    CLEANED_SUFFIX,
    DELETED_SUFFIX,
    LOG_START_CHECKPOINT,
    LOG_SUFFIX,
    OFFSET_INDEX_SUFFIX,
    RECOVERY_POINT_CHECKPOINT,
    TEMPORARY_SUFFIX,
    TIME_INDEX_SUFFIX,
    TXN_INDEX_SUFFIX,
    segment_path,
)
from reference_broker.log.segment import LogSegment

_SEGMENT_NAME_DIGITS = 20


@attrs.frozen
class LoadedLog:
    """The segments of an opened partition directory and its offsets."""

    segments: list[LogSegment]
    log_start_offset: int
    recovery_point: int
    recovered: bool  # whether the previous shutdown was unclean
    # Base offset of the first segment recovered (CRC-checked, indexes rebuilt): from it on the
    # transaction indexes are empty and the partition log rebuilds them. None: none was.
    recovered_from: int | None = None


def load(directory: Path, index_interval_bytes: int, now_ms: int) -> LoadedLog:
    """Open (creating if needed) the partition log in ``directory``, recovering after a crash."""
    directory.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(directory)
    marker = directory / CLEAN_SHUTDOWN_MARKER
    clean = marker.exists()
    log_start_offset = read_offset(directory / LOG_START_CHECKPOINT) or 0
    recovery_point = read_offset(directory / RECOVERY_POINT_CHECKPOINT) or 0
    bases = _segment_bases(directory)
    segments: list[LogSegment] = []
    recovered_from: int | None = None
    for slot, base in enumerate(bases):
        later = bases[slot + 1 :]
        flushed = clean or (bool(later) and later[0] <= recovery_point)
        segment, truncated, recovered = _open_segment(
            directory, base, flushed, index_interval_bytes, now_ms
        )
        if recovered and recovered_from is None:
            recovered_from = base
        segments.append(segment)
        if truncated:
            for orphan in later:
                _delete_segment_files(directory, orphan)
            break
    if segments and segments[-1].next_offset < log_start_offset:
        for segment in segments:
            segment.delete()
        segments = []
    if not segments:
        segments = [LogSegment.create(directory, log_start_offset, now_ms)]
    for inactive in segments[:-1]:
        inactive.seal()  # a recovered segment needs its final time index entry
    # Removed only now: a crash during recovery must lead to recovery again.
    marker.unlink(missing_ok=True)
    return LoadedLog(
        segments=segments,
        log_start_offset=max(log_start_offset, segments[0].base_offset),
        recovery_point=recovery_point,
        recovered=not clean,
        recovered_from=recovered_from,
    )


def _open_segment(
    directory: Path, base: int, flushed: bool, index_interval_bytes: int, now_ms: int
) -> tuple[LogSegment, bool, bool]:
    """The segment, whether its tail was cut off, and whether it was recovered."""
    if flushed:
        try:
            return LogSegment.open_trusted(directory, base, now_ms), False, False
        except CorruptIndexError:
            pass
    return (*LogSegment.recover(directory, base, now_ms, index_interval_bytes), True)


def _segment_bases(directory: Path) -> list[int]:
    return sorted(
        int(path.stem)
        for path in directory.glob("*" + LOG_SUFFIX)
        if len(path.stem) == _SEGMENT_NAME_DIGITS and path.stem.isdigit()
    )


def _remove_leftovers(directory: Path) -> None:
    for path in directory.iterdir():
        temporary = path.name.endswith((CLEANED_SUFFIX, DELETED_SUFFIX, TEMPORARY_SUFFIX))
        orphan_index = path.suffix in (
            OFFSET_INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX
        ) and not (
            path.with_suffix(LOG_SUFFIX).exists()
        )
        if temporary or orphan_index:
            path.unlink()


def _delete_segment_files(directory: Path, base: int) -> None:
    for suffix in (LOG_SUFFIX, OFFSET_INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX):
        segment_path(directory, base, suffix).unlink(missing_ok=True)
