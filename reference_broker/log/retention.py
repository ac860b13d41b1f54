"""Which of a log's oldest segments retention deletes: a pure function of sizes, times and config.

Kafka's UnifiedLog.deleteOldSegments applies each rule to the segments oldest first and stops
at the first segment a rule spares, so each rule deletes a prefix and together they delete the
longest of those prefixes:

- retention.ms: a segment goes when its largest timestamp is more than retention.ms old.
- retention.bytes: oldest segments go while the log would still be at least retention.bytes
  without them.

A rule never deletes a segment holding offsets at or above the high watermark (records not yet
committed), and an empty active segment is never counted. When every segment qualifies, the
caller rolls a fresh active segment first so the old one can go, as Kafka does. The log start
offset rule (DeleteRecords) is applied by the log itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from reference_broker.log.config import UNLIMITED, LogConfig


@attrs.frozen(slots=True)
class SegmentSummary:
    """What retention needs to know about one segment."""

    size_bytes: int
    largest_timestamp: int
    next_offset: int  # one past the segment's last offset: what must be committed to delete it


def segments_to_delete(
    segments: Sequence[SegmentSummary],
    config: LogConfig,
    now_ms: int,
    high_watermark: int | None = None,
) -> int:
    """How many of the oldest ``segments`` (oldest first, the last one active) to delete."""
    eligible = _eligible_prefix(segments, high_watermark)
    by_time = 0
    if config.retention_ms != UNLIMITED:
        while (
            by_time < eligible
            and now_ms - segments[by_time].largest_timestamp > config.retention_ms
        ):
            by_time += 1
    by_size = 0
    if config.retention_bytes != UNLIMITED:
        excess = sum(segment.size_bytes for segment in segments) - config.retention_bytes
        while by_size < eligible and excess >= segments[by_size].size_bytes:
            excess -= segments[by_size].size_bytes
            by_size += 1
    return max(by_time, by_size)


def _eligible_prefix(segments: Sequence[SegmentSummary], high_watermark: int | None) -> int:
    """How many leading segments are committed, stopping at an empty active segment."""
    for count, segment in enumerate(segments):
        uncommitted = high_watermark is not None and segment.next_offset > high_watermark
        empty_active = count == len(segments) - 1 and segment.size_bytes == 0
        if uncommitted or empty_active:
            return count
    return len(segments)
