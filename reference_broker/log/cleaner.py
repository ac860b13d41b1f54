"""Log compaction (cleanup.policy=compact): keep only the newest record of every key, drop aborted
transactions, and drop transaction markers once nothing needs them.

The rules, after Kafka's log cleaner (Kafka 4's Cleaner.doClean, cleanSegments, cleanInto and
shouldRetainRecord, CleanedTransactionMetadata, and LogCleanerManager.cleanableOffsets; KIP-98
for transactions, KIP-534 / KAFKA-8522 for delete horizons):

- **What is cleaned.** Only batches below the *first uncleanable offset*, the smallest of: the
  last stable offset (never above the high watermark), the active segment's base offset, and
  the base offset of the first segment holding a record younger than min.compaction.lag.ms.
  The segments holding such batches are rewritten; a batch reaching that offset (the rest of a
  segment holding the last stable offset) is copied byte for byte. So the records of an open
  transaction, and records not yet on every in-sync replica, are never touched: they may still
  be aborted or truncated away.
- **What survives.** The newest record of each key, judged over every record below the last
  stable offset, the active segment's included, so a record superseded by one not yet cleanable
  still goes. (Kafka's offset map covers only the dirty records below the first uncleanable
  offset, so it removes less in one pass; records at or above the last stable offset take part
  in neither.) Records without a key cannot be compacted and are dropped (Kafka counts them as
  invalid). Control batches are judged by the marker rules below, never by key.
- **Aborted transactions** (KIP-98). The aborted transactions of the segments' ``.txnindex``
  files are walked in first-offset order alongside the batches (:class:`CleanedTransactionMetadata`):
  a transactional batch of a producer inside one of its aborted transactions is removed whole,
  whatever its keys, and never enters the key map, so an aborted value never shadows an older
  committed one.
- **Transaction markers.** A COMMIT or ABORT marker stays while the pass finds any batch of its
  transaction before it. The first pass that finds none stamps it with a delete horizon, now +
  delete.retention.ms, as for tombstones below; a pass at or after the horizon removes it. A
  consumer that read some of the transaction's records has that long to also read how it
  ended. The ``.txnindex`` of a rewritten segment keeps only the aborted transactions whose
  data the pass still found, as Kafka's cleaner writes them to the cleaned segment's index when
  it reads their markers.
- **Offsets.** A kept batch keeps its base offset and its last offset (and its producer id,
  epoch and base sequence), so offsets never move and the producer's sequence numbers can still
  be derived from the log. A batch the cleaner does not change is copied byte for byte,
  compression included; one it changes is rebuilt uncompressed. A batch left with no records
  (superseded or aborted) is dropped, unless it holds its producer's last data offset in the
  producer state (Kafka's lastRecordsOfActiveProducers): that one stays as an empty batch
  (Kafka's writeEmptyHeader) so that reloading the log rebuilds the producer's last sequence,
  epoch and timestamp; while it stays, so does its transaction's marker, which ends the
  transaction the batch opens on replay. Producers the state has forgotten (expired) keep
  nothing. Kafka also keeps a marker as the last entry of a producer whose current epoch has no
  data: a marker that brought a newer epoch (a fence) is the producer's last entry here too
  (:mod:`reference_broker.producers.state`), so it stays, and a reload still refuses the fenced
  epoch.
- **Tombstones** (records with a null value) follow KIP-534. The first pass that keeps a batch
  holding a tombstone stamps it with a *delete horizon*, now + delete.retention.ms, stored in the
  batch itself (base timestamp plus attribute bit 6), so the rule survives restarts without any
  side file. A pass at or after the horizon drops the batch's tombstones; until then consumers
  that read the key's older value have delete.retention.ms to also see its deletion. (Kafka
  before 3.1 used the segment's modification time instead; Kafka 3.1+ and 4 use the horizon.)
- **Crash safety.** Each segment is rewritten to ``.cleaned`` and renamed over the original
  (:meth:`LogSegment.replace_batches`); a crash leaves the old or the new segment, never a mix.

Cleaning is unconditional when asked for; :meth:`PartitionLog.needs_compaction` decides when,
as Kafka's LogCleanerManager does: when the dirty ratio reaches min.cleanable.dirty.ratio, or
when kept tombstones or markers may have passed their delete horizon.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence

import attrs

from reference_broker.log.config import LogConfig
from reference_broker.log.segment import LogSegment
from reference_broker.log.txn_index import AbortedTxn
from reference_broker.records import (
    BatchHeader,
    EndTransactionMarker,
    empty_batch,
    iter_records,
    parse_control_batch,
    parse_header,
    rebuild_batch,
)


@attrs.frozen(slots=True)
class CleanerStats:
    """What one compaction pass did."""

    segments_rewritten: int = 0
    records_removed: int = 0
    bytes_before: int = 0  # of the rewritten segments
    bytes_after: int = 0
    first_dirty_offset: int | None = None  # where the next pass has new data to look at
    tombstones_kept: bool = False  # some key's newest record is a tombstone still in the log
    markers_kept: bool = False  # some transaction marker waits for its delete horizon


def first_uncleanable_offset(
    segments: Sequence[LogSegment], config: LogConfig, now_ms: int, last_stable_offset: int
) -> int:
    """Where cleaning stops (Kafka's LogCleanerManager.cleanableOffsets): the last stable offset,
    the active segment, or the first segment younger than min.compaction.lag.ms, whichever
    comes first."""
    bound = min(last_stable_offset, segments[-1].base_offset)
    # Kafka applies the lag only when it is set: with 0, even future timestamps are cleanable.
    if config.min_compaction_lag_ms > 0:
        for segment in segments[:-1]:
            if segment.largest_timestamp > now_ms - config.min_compaction_lag_ms:
                return min(bound, segment.base_offset)
    return bound


def compact(
    segments: Sequence[LogSegment],
    config: LogConfig,
    now_ms: int,
    last_stable_offset: int,
    aborted: Sequence[AbortedTxn],
    last_data_offsets: Mapping[int, int],
) -> CleanerStats:
    """Rewrite each segment of ``segments`` (the log, oldest first) that cleaning would change.

    ``aborted`` are the log's aborted transactions below ``last_stable_offset``;
    ``last_data_offsets`` maps each producer id of the producer state to the last offset of its
    last batch.
    """
    upper_bound = first_uncleanable_offset(segments, config, now_ms, last_stable_offset)
    cleanable = [segment for segment in segments[:-1] if segment.base_offset < upper_bound]
    if not cleanable:
        return CleanerStats()
    plan = _Plan.survey(
        segments, config, now_ms, last_stable_offset, upper_bound, aborted, last_data_offsets
    )
    stats = CleanerStats(
        first_dirty_offset=upper_bound,
        tombstones_kept=plan.tombstones_kept,
        markers_kept=plan.markers_kept,
    )
    for segment in cleanable:
        records_removed = _records_removed(segment, plan)
        kept_aborted = plan.kept_aborted(segment)
        if records_removed is None and kept_aborted == segment.txn_index.entries:
            continue
        bytes_before = segment.size
        segment.replace_batches(
            _cleaned_batches(segment, plan), config.index_interval_bytes, kept_aborted
        )
        stats = attrs.evolve(
            stats,
            segments_rewritten=stats.segments_rewritten + 1,
            records_removed=stats.records_removed + (records_removed or 0),
            bytes_before=stats.bytes_before + bytes_before,
            bytes_after=stats.bytes_after + segment.size,
        )
    return stats


def _records_removed(segment: LogSegment, plan: _Plan) -> int | None:
    """How many records cleaning would remove from ``segment``; None if it would not change it.

    A dry run, so that unchanged segments are never rewritten and a changed one is rewritten in
    a single streaming pass without holding its cleaned batches in memory.
    """
    changed = False
    removed = 0
    for header, data in segment.iter_batches():
        cleaned = plan.cleaned(header, data)
        changed |= cleaned is not data
        removed += header.record_count
        if cleaned is not None:
            removed -= parse_header(cleaned).record_count
    return removed if changed else None


def _cleaned_batches(segment: LogSegment, plan: _Plan) -> Iterator[bytes]:
    for header, data in segment.iter_batches():
        cleaned = plan.cleaned(header, data)
        if cleaned is not None:
            yield cleaned


@attrs.define
class _AbortedTransactionMetadata:
    """An aborted transaction the cleaner is inside of, and whether it found data of it."""

    aborted_txn: AbortedTxn
    data_found: bool = False  # Kafka's lastObservedBatchOffset.isPresent


@attrs.define
class CleanedTransactionMetadata:
    """The transactions the cleaner is inside of as it walks the log (Kafka's class of the
    same name): which batches are aborted, and which markers may go.

    Built (:meth:`of`) from the aborted transactions of the walked range, from the segments'
    ``.txnindex``. A producer enters an aborted transaction when the walk reaches the
    transaction's first offset and leaves it at its ABORT marker; a transactional batch read in
    between is aborted. A transactional batch that is not aborted puts its producer in an
    ongoing committed transaction until its COMMIT marker.
    """

    _pending: deque[AbortedTxn]  # not yet reached, by first offset
    _ongoing_aborted: dict[int, _AbortedTransactionMetadata] = attrs.field(factory=dict)
    _ongoing_committed: set[int] = attrs.field(factory=set)
    # ABORT markers whose transaction still had data: their index entries stay (Kafka's
    # cleanedIndex.append).
    retained_aborted: list[AbortedTxn] = attrs.field(factory=list)

    @classmethod
    def of(cls, aborted: Iterable[AbortedTxn]) -> CleanedTransactionMetadata:
        return cls(deque(sorted(aborted, key=_first_offset)))

    def on_control_batch_read(
        self, header: BatchHeader, marker: EndTransactionMarker | None
    ) -> bool:
        """Take in a marker; return whether no data of its transaction was found before it
        (the marker may go once its delete horizon passes)."""
        self._consume_aborted_txns_up_to(header.last_offset)
        if marker is None:
            return True  # an empty control batch was already cleaned
        if marker.is_abort:
            ongoing = self._ongoing_aborted.pop(header.producer_id, None)
            if ongoing is not None and ongoing.data_found:
                self.retained_aborted.append(ongoing.aborted_txn)
                return False
            return True
        if header.producer_id in self._ongoing_committed:
            self._ongoing_committed.discard(header.producer_id)
            return False
        return True

    def on_batch_read(self, header: BatchHeader) -> bool:
        """Take in a data batch; return whether it belongs to an aborted transaction."""
        self._consume_aborted_txns_up_to(header.last_offset)
        if not header.is_transactional:
            return False
        ongoing = self._ongoing_aborted.get(header.producer_id)
        if ongoing is None:
            self._ongoing_committed.add(header.producer_id)
            return False
        ongoing.data_found = True
        return True

    def _consume_aborted_txns_up_to(self, offset: int) -> None:
        while self._pending and self._pending[0].first_offset <= offset:
            txn = self._pending.popleft()
            self._ongoing_aborted.setdefault(txn.producer_id, _AbortedTransactionMetadata(txn))


def _first_offset(txn: AbortedTxn) -> int:
    return txn.first_offset


@attrs.frozen
class _Plan:
    """What one pass keeps, decided by a survey of the log before anything is rewritten: the
    newest offset of every key, the aborted batches, the markers whose transaction has no data
    left, and each producer's last data offset."""

    config: LogConfig
    now_ms: int
    upper_bound: int  # the first uncleanable offset
    newest_offset: dict[bytes, int]
    aborted_batches: frozenset[int]  # base offsets
    discardable_markers: frozenset[int]  # base offsets
    retained_aborted: frozenset[AbortedTxn]
    last_data_offsets: Mapping[int, int]
    tombstones_kept: bool
    markers_kept: bool

    @classmethod
    def survey(
        cls,
        segments: Sequence[LogSegment],
        config: LogConfig,
        now_ms: int,
        last_stable_offset: int,
        upper_bound: int,
        aborted: Sequence[AbortedTxn],
        last_data_offsets: Mapping[int, int],
    ) -> _Plan:
        """Walk every batch below ``last_stable_offset`` once."""
        transactions = CleanedTransactionMetadata.of(aborted)
        newest_offset: dict[bytes, int] = {}
        tombstone_keys: set[bytes] = set()
        aborted_batches: set[int] = set()
        discardable_markers: set[int] = set()
        markers_kept = False
        for header, data in _batches_below(segments, last_stable_offset):
            if header.is_control:
                if transactions.on_control_batch_read(header, parse_control_batch(data, header)):
                    discardable_markers.add(header.base_offset)
                    horizon = header.delete_horizon_ms
                    kept = header.last_offset < upper_bound and header.record_count > 0
                    markers_kept |= kept and (horizon is None or now_ms < horizon)
                continue
            if transactions.on_batch_read(header):
                aborted_batches.add(header.base_offset)
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
        return cls(
            config, now_ms, upper_bound, newest_offset, frozenset(aborted_batches),
            frozenset(discardable_markers), frozenset(transactions.retained_aborted),
            last_data_offsets, bool(tombstone_keys), markers_kept,
        )

    def kept_aborted(self, segment: LogSegment) -> list[AbortedTxn]:
        """The entries the segment's ``.txnindex`` keeps: those of transactions whose data the
        survey found, and those whose marker lies past the first uncleanable offset (untouched)."""
        return [
            txn for txn in segment.txn_index.entries
            if txn.last_offset >= self.upper_bound or txn in self.retained_aborted
        ]

    def cleaned(self, header: BatchHeader, data: bytes) -> bytes | None:
        """The batch as compaction leaves it: ``data`` itself if unchanged, None if dropped."""
        if header.last_offset >= self.upper_bound:
            return data
        if header.is_control:
            return self._cleaned_marker(header, data)
        horizon = header.delete_horizon_ms
        tombstones_expired = horizon is not None and self.now_ms >= horizon
        # An aborted batch loses all its records, whatever their keys.
        aborted = header.base_offset in self.aborted_batches
        records = [] if aborted else list(iter_records(data, header))
        kept = [
            record
            for record in records
            if record.key is not None
            and self.newest_offset.get(record.key) == record.offset
            and not (record.value is None and tombstones_expired)
        ]
        if not kept:
            if self.last_data_offsets.get(header.producer_id) != header.last_offset:
                return None
            return data if header.record_count == 0 else empty_batch(header)
        holds_tombstones = any(record.value is None for record in kept)
        if len(kept) == len(records) and (horizon is not None or not holds_tombstones):
            return data
        if holds_tombstones and horizon is None:
            horizon = self.now_ms + self.config.delete_retention_ms
        return rebuild_batch(
            header, kept, delete_horizon_ms=horizon if holds_tombstones else None
        )

    def _cleaned_marker(self, header: BatchHeader, data: bytes) -> bytes | None:
        """A marker stays while its transaction has data; then it gets a delete horizon, and
        goes once that has passed (Kafka's containsMarkerForEmptyTxn)."""
        if (header.base_offset not in self.discardable_markers
                or self.last_data_offsets.get(header.producer_id) == header.last_offset):
            return data
        horizon = header.delete_horizon_ms
        if header.record_count == 0 or (horizon is not None and self.now_ms >= horizon):
            return None
        if horizon is not None:
            return data
        return rebuild_batch(
            header,
            list(iter_records(data, header)),
            delete_horizon_ms=self.now_ms + self.config.delete_retention_ms,
        )


def _batches_below(
    segments: Sequence[LogSegment], offset: int
) -> Iterator[tuple[BatchHeader, bytes]]:
    """The batches wholly below ``offset``, oldest first."""
    for segment in segments:
        if segment.base_offset >= offset:
            return
        for header, data in segment.iter_batches():
            if header.last_offset >= offset:
                return
            yield header, data
