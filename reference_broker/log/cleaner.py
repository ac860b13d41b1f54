"""Log compaction (cleanup.policy=compact): keep only the newest record of every key.

The rules, after Kafka's log cleaner:

- **What is cleaned.** Never the active segment. Of the others, oldest first, each segment whose
  largest timestamp is at least min.compaction.lag.ms old, stopping at the first that is not
  (Kafka's first uncleanable offset).
- **What survives.** The newest record of each key, judged over the whole log including the
  active segment, so a record superseded by one not yet cleanable still goes. Records without a
  key cannot be compacted and are dropped (Kafka counts them as invalid). Control batches
  (transaction markers) are copied as they are.
- **Offsets.** A kept batch keeps its base offset and its last offset (and its producer id,
  epoch and base sequence), so offsets never move and the producer's sequence numbers can still
  be derived from the log. A batch the cleaner does not change is copied byte for byte,
  compression included; one it changes is rebuilt uncompressed. A batch left with no records is
  dropped, unless it is the last batch of its producer id, which stays as an empty batch (as in
  Kafka) so that producer's last sequence survives.
- **Tombstones** (records with a null value) follow KIP-534. The first pass that keeps a batch
  holding a tombstone stamps it with a *delete horizon*, now + delete.retention.ms, stored in the
  batch itself (base timestamp plus attribute bit 6), so the rule survives restarts without any
  side file. A pass at or after the horizon drops the batch's tombstones; until then consumers
  that read the key's older value have delete.retention.ms to also see its deletion.
- **Crash safety.** Each segment is rewritten to ``.cleaned`` and renamed over the original
  (:meth:`LogSegment.replace_batches`); a crash leaves the old or the new segment, never a mix.

Cleaning is unconditional when asked for; :meth:`PartitionLog.needs_compaction` decides when,
as Kafka's LogCleanerManager does: when the dirty ratio reaches min.cleanable.dirty.ratio, or
when kept tombstones may have passed their delete horizon.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import attrs

from reference_broker.log.config import LogConfig
from reference_broker.log.segment import LogSegment
from reference_broker.records import BatchHeader, build_batch, iter_records, parse_header


@attrs.frozen(slots=True)
class CleanerStats:
    """What one compaction pass did."""

    segments_rewritten: int = 0
    records_removed: int = 0
    bytes_before: int = 0  # of the rewritten segments
    bytes_after: int = 0
    first_dirty_offset: int | None = None  # where the next pass has new data to look at
    tombstones_kept: bool = False  # some key's newest record is a tombstone still in the log


def cleanable_segments(
    segments: Sequence[LogSegment], config: LogConfig, now_ms: int
) -> Sequence[LogSegment]:
    """The oldest non-active segments that are old enough to clean."""
    count = 0
    for segment in segments[:-1]:
        # Kafka applies the lag only when it is set: with 0, even future timestamps are cleanable.
        if config.min_compaction_lag_ms > 0 and (
            segment.largest_timestamp > now_ms - config.min_compaction_lag_ms
        ):
            break
        count += 1
    return segments[:count]


def compact(segments: Sequence[LogSegment], config: LogConfig, now_ms: int) -> CleanerStats:
    """Rewrite each cleanable segment of ``segments`` (the log, oldest first) that would change."""
    cleanable = cleanable_segments(segments, config, now_ms)
    if not cleanable:
        return CleanerStats()
    survivors = _Survivors.survey(segments, config, now_ms)
    stats = CleanerStats(
        first_dirty_offset=segments[len(cleanable)].base_offset,
        tombstones_kept=survivors.tombstones_kept,
    )
    for segment in cleanable:
        records_removed = _records_removed(segment, survivors)
        if records_removed is None:
            continue
        bytes_before = segment.size
        segment.replace_batches(_cleaned_batches(segment, survivors), config.index_interval_bytes)
        stats = attrs.evolve(
            stats,
            segments_rewritten=stats.segments_rewritten + 1,
            records_removed=stats.records_removed + records_removed,
            bytes_before=stats.bytes_before + bytes_before,
            bytes_after=stats.bytes_after + segment.size,
        )
    return stats


def _records_removed(segment: LogSegment, survivors: _Survivors) -> int | None:
    """How many records cleaning would remove from ``segment``; None if it would not change it.

    A dry run, so that unchanged segments are never rewritten and a changed one is rewritten in
    a single streaming pass without holding its cleaned batches in memory.
    """
    changed = False
    removed = 0
    for header, data in segment.iter_batches():
        cleaned = survivors.cleaned(header, data)
        changed |= cleaned is not data
        removed += header.record_count
        if cleaned is not None:
            removed -= parse_header(cleaned).record_count
    return removed if changed else None


def _cleaned_batches(segment: LogSegment, survivors: _Survivors) -> Iterator[bytes]:
    for header, data in segment.iter_batches():
        cleaned = survivors.cleaned(header, data)
        if cleaned is not None:
            yield cleaned


@attrs.frozen
class _Survivors:
    """Which records survive: the newest offset of every key, and each producer's last batch."""

    newest_offset: dict[bytes, int]
    last_batch_of_producer: dict[int, int]
    config: LogConfig
    now_ms: int
    tombstones_kept: bool

    @classmethod
    def survey(cls, segments: Sequence[LogSegment], config: LogConfig, now_ms: int) -> _Survivors:
        newest_offset: dict[bytes, int] = {}
        last_batch_of_producer: dict[int, int] = {}
        tombstone_keys: set[bytes] = set()
        for segment in segments:
            for header, data in segment.iter_batches():
                if header.producer_id >= 0:
                    last_batch_of_producer[header.producer_id] = header.base_offset
                if header.is_control:
                    continue
                horizon = header.delete_horizon_ms
                expired = horizon is not None and now_ms >= horizon
                for record in iter_records(data, header):
                    if record.key is not None:
                        newest_offset[record.key] = record.offset
                        # A tombstone this pass will keep (its horizon has not passed).
                        if record.value is None and not expired:
                            tombstone_keys.add(record.key)
                        else:
                            tombstone_keys.discard(record.key)
        return cls(newest_offset, last_batch_of_producer, config, now_ms, bool(tombstone_keys))

    def cleaned(self, header: BatchHeader, data: bytes) -> bytes | None:
        """The batch as compaction leaves it: ``data`` itself if unchanged, None if dropped."""
        if header.is_control:
            return data
        horizon = header.delete_horizon_ms
        tombstones_expired = horizon is not None and self.now_ms >= horizon
        records = list(iter_records(data, header))
        kept = [
            record
            for record in records
            if record.key is not None
            and self.newest_offset.get(record.key) == record.offset
            and not (record.value is None and tombstones_expired)
        ]
        producers_last = self.last_batch_of_producer.get(header.producer_id) == header.base_offset
        if not kept and not (header.producer_id >= 0 and producers_last):
            return None
        holds_tombstones = any(record.value is None for record in kept)
        if len(kept) == len(records) and (horizon is not None or not holds_tombstones):
            return data
        if holds_tombstones and horizon is None:
            horizon = self.now_ms + self.config.delete_retention_ms
        return build_batch(
            kept,
            base_offset=header.base_offset,
            last_offset_delta=header.last_offset_delta,
            partition_leader_epoch=header.partition_leader_epoch,
            attributes=header.attributes,
            producer_id=header.producer_id,
            producer_epoch=header.producer_epoch,
            base_sequence=header.base_sequence,
            delete_horizon_ms=horizon if holds_tombstones else None,
        )

