"""The durable log of one partition: segments on disk, appends, fetches, retention, compaction.

This is Kafka's UnifiedLog/LocalLog without sockets and without clocks: every operation that
depends on time takes ``now_ms``. It is not thread-safe; the broker serialises calls per
partition.

Durability follows Kafka's defaults. An append writes its bytes to the file before returning, so
killing the process loses nothing; fsync happens only when flush.messages or flush.ms say so, when
a segment is rolled, and on close. The *recovery point* (persisted in
``recovery-point-offset-checkpoint``) is the offset below which everything has been fsynced:
after a crash only the segments from it on are checked (see :mod:`reference_broker.log.loader`).

Like Kafka's UnifiedLog, the log owns its partition's producer state
(:class:`~reference_broker.producers.state.ProducerStateManager`): an append is checked against
it before offsets are assigned (a retried batch gets its original offsets back and is not
written again), every stored batch updates it, and it is snapshotted to ``<offset>.snapshot``
files when a segment rolls and when the log closes. Opening the log loads the newest snapshot
and replays only the batch headers after it; truncation reloads it the same way.

It also owns the partition's leader epoch cache (:mod:`reference_broker.log.leader_epochs`,
Kafka's ``leader-epoch-checkpoint``): a leader's append stamps its epoch into every batch and
records where each epoch starts, a follower's append records the epochs its leader stamped, and
truncation and log-start moves trim the cache with the log.

Transactions (KIP-98; Kafka's UnifiedLog, ProducerStateManager and TransactionIndex): the
producer state tracks each producer's ongoing transaction (from its first transactional batch)
until a control batch, appended by :meth:`PartitionLog.append_marker` on the leader or copied
by a follower, completes it. A completed transaction stays *unreplicated* until the high
watermark passes its marker. The last stable offset (:meth:`PartitionLog.last_stable_offset`,
Kafka's UnifiedLog.lastStableOffset) is the smallest first offset of the ongoing and unreplicated
transactions, else the high watermark; read_committed consumers read below it only. An ABORT
marker adds an entry to the ``.txnindex`` of the segment holding it
(:mod:`reference_broker.log.txn_index`), which
:meth:`PartitionLog.collect_aborted_transactions` answers Fetch's ``aborted_transactions`` from.
Ongoing transactions survive restarts through the producer snapshots and replay; the
transaction indexes of the segments a crash recovery CRC-checks are rebuilt by that replay.
Compaction (:mod:`reference_broker.log.cleaner`) never cleans at or above the last stable
offset, removes aborted transactions' records and, once their data is gone and
delete.retention.ms has passed, their markers; retention deletes segments below the high
watermark whatever their transactions, and the last stable offset then never falls below the log
start offset.
"""

from __future__ import annotations

import bisect
import shutil
from collections.abc import Sequence
from pathlib import Path

import attrs

from reference_broker.log import cleaner, retention
from reference_broker.log.checkpoint import read_offset, write_offset
from reference_broker.log.cleaner import CleanerStats
from reference_broker.log.config import LogConfig
from reference_broker.log.errors import (
    LogError,
    OffsetOutOfRangeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from reference_broker.log.files import (
    CLEAN_SHUTDOWN_MARKER,
    CLEANER_CHECKPOINT,
    LOG_START_CHECKPOINT,
    RECOVERY_POINT_CHECKPOINT,
)
from reference_broker.log.leader_epochs import LEADER_EPOCH_CHECKPOINT, LeaderEpochCache
from reference_broker.log.loader import load
from reference_broker.log.producer_snapshots import (
    delete_snapshot,
    load_latest_snapshot,
    snapshot_offsets,
    write_snapshot,
)
from reference_broker.log.segment import LogSegment
from reference_broker.log.txn_index import AbortedTxn
from reference_broker.producers.state import (
    DEFAULT_PRODUCER_ID_EXPIRATION_MS,
    AppendOrigin,
    CompletedTxn,
    ProducerStateManager,
)
from reference_broker.records import (
    NO_TIMESTAMP,
    BatchHeader,
    EndTransactionMarker,
    InvalidRecordError,
    build_control_batch,
    iter_records,
    parse_control_batch,
    patch_base_offset,
    patch_partition_leader_epoch,
    set_log_append_time,
    validate_batches,
)


@attrs.frozen(slots=True)
class AppendResult:
    """Where an append landed (the ProduceResponse's base offset, log append time, log start)."""

    first_offset: int
    last_offset: int
    log_append_time_ms: int  # -1 unless message.timestamp.type is LogAppendTime
    log_start_offset: int


@attrs.frozen(slots=True)
class ReadResult:
    """Whole stored batches, concatenated as a Fetch response carries them."""

    records: bytes
    log_start_offset: int
    log_end_offset: int


class PartitionLog:
    """A partition directory of segments; see the module docstring for durability."""

    def __init__(
        self,
        directory: Path,
        config: LogConfig,
        now_ms: int,
        producer_id_expiration_ms: int = DEFAULT_PRODUCER_ID_EXPIRATION_MS,
    ) -> None:
        loaded = load(directory, config.index_interval_bytes, now_ms)
        self.directory = directory
        self.config = config
        self._segments = loaded.segments
        self.log_start_offset = loaded.log_start_offset
        self._recovery_point = loaded.recovery_point
        # Kafka's cleaner-offset-checkpoint: data below it has been through a compaction pass.
        self._first_dirty_offset = read_offset(directory / CLEANER_CHECKPOINT) or 0
        # When kept tombstones or transaction markers may have passed their delete horizon
        # (None: none kept; after a restart, unknown, so check once).
        self._delete_horizon_recheck_ms: int | None = now_ms
        self._unflushed_messages = 0
        self._last_flush_ms = now_ms
        self._closed = False
        self.producer_state = ProducerStateManager(producer_id_expiration_ms)
        # Completed transactions whose marker the high watermark has not passed yet, in marker
        # order (Kafka's ProducerStateManager.unreplicatedTxns).
        self._unreplicated: list[CompletedTxn] = []
        self._load_producer_state(now_ms, loaded.recovered_from)
        self.leader_epochs = self._load_leader_epochs()
        if loaded.recovered:
            # Make the recovered state durable so the next crash need not repeat the work.
            self.flush()

    @classmethod
    def open(
        cls,
        directory: Path,
        config: LogConfig,
        now_ms: int,
        producer_id_expiration_ms: int = DEFAULT_PRODUCER_ID_EXPIRATION_MS,
    ) -> PartitionLog:
        """Open the log in ``directory`` (created if missing), recovering after a crash."""
        return cls(directory, config, now_ms, producer_id_expiration_ms)

    # --- state ---------------------------------------------------------------------------------

    @property
    def log_end_offset(self) -> int:
        """The offset the next appended record gets."""
        return self._segments[-1].next_offset

    @property
    def size_bytes(self) -> int:
        return sum(segment.size for segment in self._segments)

    @property
    def segment_base_offsets(self) -> list[int]:
        return [segment.base_offset for segment in self._segments]

    def update_config(self, config: LogConfig) -> None:
        """Apply changed topic settings; they take effect from the next operation on."""
        self.config = config

    # --- appending -----------------------------------------------------------------------------

    def append(
        self,
        records: bytearray,
        headers: list[BatchHeader],
        now_ms: int,
        leader_epoch: int | None = None,
        origin: AppendOrigin = AppendOrigin.CLIENT,
    ) -> AppendResult:
        """Append a produced, validated record set, assigning its offsets (as a leader does).

        ``headers`` come from :func:`records.validate_batches` on ``records``; each batch's base
        offset is patched in place. With a ``leader_epoch`` every batch is stamped with it
        (``partitionLeaderEpoch``, outside the CRC) and the epoch cache learns where it starts;
        without one (unit tests of the log alone) the batches keep the epoch they came with. Raises RecordListTooLargeError, RecordTooLargeError, and,
        on a compacted topic, records.InvalidRecordError for a record without a key.

        Batches of idempotent producers are checked against the producer state first (see
        :mod:`reference_broker.producers.state`): a refused one raises a
        producers.ProducerStateError and nothing is written; a request that only repeats
        batches already stored writes nothing and returns their original offsets. A
        coordinator's own batches (``origin`` COORDINATOR: transactional offset commits) are
        checked only for their producer epoch and transaction state, as Kafka does.
        """
        self._check_sizes(records, headers)
        if self.config.compact:
            _reject_keyless_records(records, headers)
        log_append_time = (
            now_ms if self.config.message_timestamp_type == "LogAppendTime" else NO_TIMESTAMP
        )
        duplicate = self.producer_state.check(headers, origin)
        if duplicate is not None:
            # Kafka answers a duplicate with the stored batch's timestamp as the log append time
            # whatever the timestamp type; only under LogAppendTime is that one.
            return AppendResult(
                duplicate.first_offset,
                duplicate.last_offset,
                duplicate.timestamp if log_append_time != NO_TIMESTAMP else NO_TIMESTAMP,
                self.log_start_offset,
            )
        return self._append_assigning_offsets(records, headers, now_ms, leader_epoch, log_append_time)

    def append_marker(
        self,
        producer_id: int,
        producer_epoch: int,
        marker: EndTransactionMarker,
        now_ms: int,
        leader_epoch: int | None = None,
    ) -> AppendResult:
        """Append a transaction marker (a control batch) for ``producer_id``, as the partition
        leader does for WriteTxnMarkers (Kafka's UnifiedLog.appendAsLeader with origin
        COORDINATOR): it completes the producer's ongoing transaction here, and an ABORT adds
        an entry to the transaction index. Raises producers.InvalidProducerEpochError for an
        epoch older than the producer's, producers.CoordinatorFencedError for a stale
        coordinator epoch; nothing is written then."""
        self.producer_state.check_marker(producer_id, producer_epoch, marker.coordinator_epoch)
        records = bytearray(build_control_batch(producer_id, producer_epoch, marker, now_ms))
        headers = validate_batches(records)
        log_append_time = (
            now_ms if self.config.message_timestamp_type == "LogAppendTime" else NO_TIMESTAMP
        )
        return self._append_assigning_offsets(records, headers, now_ms, leader_epoch, log_append_time)

    def _append_assigning_offsets(
        self,
        records: bytearray,
        headers: list[BatchHeader],
        now_ms: int,
        leader_epoch: int | None,
        log_append_time: int,
    ) -> AppendResult:
        first_offset = self.log_end_offset
        if leader_epoch is not None:
            # Recorded before the bytes are written: after a crash the cache may name offsets
            # the log lost (trimmed on open), never miss an epoch the log holds.
            self.leader_epochs.assign(leader_epoch, first_offset)
        assigned: list[BatchHeader] = []
        for header in headers:
            offset = assigned[-1].next_offset if assigned else first_offset
            patch_base_offset(records, header, offset)
            if leader_epoch is None:
                header = attrs.evolve(header, base_offset=offset)
            else:
                patch_partition_leader_epoch(records, header, leader_epoch)
                header = attrs.evolve(
                    header, base_offset=offset, partition_leader_epoch=leader_epoch
                )
            if log_append_time != NO_TIMESTAMP:
                header = set_log_append_time(records, header, log_append_time)
            assigned.append(header)
        self._write(records, assigned, now_ms)
        self._update_producer_state(records, assigned)
        return AppendResult(
            first_offset, assigned[-1].last_offset, log_append_time, self.log_start_offset
        )

    def append_as_follower(
        self, records: bytes | bytearray | memoryview, headers: list[BatchHeader], now_ms: int
    ) -> AppendResult:
        """Append batches that already carry their offsets (a follower copying its leader).

        Like Kafka's appendAsFollower the first offset may be above the log end offset (the
        leader's cleaner may have removed offsets) but never below it. Batch sizes are not
        checked against max.message.bytes (the leader accepted them, perhaps under an older
        setting: Kafka's ignoreRecordSize for replication), and a fetched chunk larger than a
        segment is written a segment's worth at a time. The epochs the leader stamped go into
        the leader epoch cache.
        """
        next_offset = self.log_end_offset
        for header in headers:
            if header.base_offset < next_offset or header.last_offset_delta < 0:
                raise LogError(
                    f"batch at offset {header.base_offset} would go below offset {next_offset}"
                )
            next_offset = header.next_offset
        for header in headers:
            self.leader_epochs.assign(header.partition_leader_epoch, header.base_offset)
        view = memoryview(records)
        group: list[BatchHeader] = []
        group_start = headers[0].position
        for header in headers:
            if group and header.position + header.size - group_start > self.config.segment_bytes:
                self._write(view[group_start : header.position], group, now_ms)
                group, group_start = [], header.position
            group.append(attrs.evolve(header, position=header.position - group_start))
        end = headers[-1].position + headers[-1].size
        self._write(view[group_start:end], group, now_ms)
        self._update_producer_state(records, headers)
        return AppendResult(
            headers[0].base_offset, headers[-1].last_offset, NO_TIMESTAMP, self.log_start_offset
        )

    def _check_sizes(self, records: bytes | bytearray, headers: Sequence[BatchHeader]) -> None:
        if len(records) > self.config.segment_bytes:
            raise RecordListTooLargeError(
                f"record set of {len(records)} bytes exceeds segment.bytes "
                f"({self.config.segment_bytes})"
            )
        for header in headers:
            if header.size > self.config.max_message_bytes:
                raise RecordTooLargeError(
                    f"batch of {header.size} bytes exceeds max.message.bytes "
                    f"({self.config.max_message_bytes})"
                )

    def _write(
        self, records: bytes | bytearray | memoryview, headers: Sequence[BatchHeader], now_ms: int
    ) -> None:
        active = self._roll_if_due(
            len(records),
            headers[-1].last_offset,
            max(header.max_timestamp for header in headers),
            now_ms,
        )
        active.append(records, headers, self.config.index_interval_bytes)
        self._unflushed_messages += sum(header.record_count for header in headers)
        self.maybe_flush(now_ms)

    def _roll_if_due(
        self, incoming_bytes: int, last_offset: int, max_timestamp: int, now_ms: int
    ) -> LogSegment:
        """The segment to append to, rolling a new one first when Kafka's LogSegment.shouldRoll
        would: the active segment is non-empty and the append would overflow segment.bytes, or it
        is older than segment.ms, or an index is full, or offsets would overflow its index."""
        active = self._segments[-1]
        if active.size > 0 and (
            active.size + incoming_bytes > self.config.segment_bytes
            or self._age_ms(active, max_timestamp, now_ms) > self.config.segment_ms
            or active.index_is_full(self.config.segment_index_bytes)
            or not active.can_index(last_offset)
        ):
            self._roll(now_ms)
        return self._segments[-1]

    @staticmethod
    def _age_ms(segment: LogSegment, incoming_timestamp: int, now_ms: int) -> int:
        # Kafka's LogSegment.timeWaitedForRoll: measured in record time, from the first batch's
        # timestamp to the incoming batch's, so replayed or skewed timestamps do not make every
        # append roll; the wall clock counts only for segments without timestamps.
        if segment.rolling_base_timestamp >= 0:
            return incoming_timestamp - segment.rolling_base_timestamp
        return now_ms - segment.created_ms

    def _roll(self, now_ms: int) -> None:
        """Seal the active segment (fsync, as Kafka flushes on roll) and start a new one."""
        self._segments[-1].seal()
        self._segments.append(LogSegment.create(self.directory, self.log_end_offset, now_ms))
        self._set_recovery_point(self.log_end_offset)
        # Kafka takes a producer snapshot at every roll, named after the new segment.
        self._snapshot_producer_state()

    # --- reading -------------------------------------------------------------------------------

    def read(
        self,
        offset: int,
        max_bytes: int,
        upper_bound: int | None = None,
        min_one_batch: bool = True,
    ) -> ReadResult:
        """Whole batches from the one holding ``offset``, as Kafka's Log.read.

        At most ``max_bytes`` in total, except that with ``min_one_batch`` the first batch comes
        whole whatever its size (KIP-74); no batch whose base offset is ``upper_bound`` (the
        high watermark) or more; batches of one segment only, as Kafka serves a fetch.
        """
        self._check_in_range(offset)
        records = b""
        if offset < self.log_end_offset:
            slot = bisect.bisect_right(self._segments, offset, key=_base_offset) - 1
            for segment in self._segments[slot:]:
                found = segment.read(offset, max_bytes, upper_bound, min_one_batch)
                if found is not None:
                    records = found
                    break
        return ReadResult(records, self.log_start_offset, self.log_end_offset)

    def collect_aborted_transactions(self, start: int, upper_bound: int) -> list[AbortedTxn]:
        """The aborted transactions overlapping ``[start, upper_bound)``, what a read_committed
        fetch of that range reports (Kafka's UnifiedLog.collectAbortedTransactions).

        An entry sits in the segment holding its ABORT marker, which may come after the segment
        holding ``start`` (a transaction spanning segments), so every segment from that one on
        is searched.
        """
        slot = max(bisect.bisect_right(self._segments, start, key=_base_offset) - 1, 0)
        aborted: list[AbortedTxn] = []
        for segment in self._segments[slot:]:
            aborted.extend(segment.txn_index.collect_aborted(start, upper_bound))
        return aborted

    def last_stable_offset(self, high_watermark: int) -> int:
        """Kafka's UnifiedLog.lastStableOffset: the first offset of the oldest transaction that
        is ongoing, or completed but not yet below ``high_watermark``; else the high watermark.
        Never above the high watermark, nor below the log start offset."""
        self.on_high_watermark_updated(high_watermark)
        unstable = [txn.first_offset for txn in self._unreplicated]
        ongoing = self.producer_state.first_ongoing_offset()
        if ongoing is not None:
            unstable.append(ongoing)
        if not unstable:
            return high_watermark
        # Retention and DeleteRecords may delete the start of an open transaction (Kafka bounds
        # them by the high watermark only); the first unstable offset then moves up to the log
        # start offset (Kafka's maybeIncrementFirstUnstableOffset), so read_committed consumers
        # are never sent below the log start.
        return min(high_watermark, max(min(unstable), self.log_start_offset))

    def on_high_watermark_updated(self, high_watermark: int) -> None:
        """Forget the completed transactions whose marker is now below the high watermark
        (Kafka's ProducerStateManager.onHighWatermarkUpdated)."""
        if self._unreplicated:
            self._unreplicated = [
                txn for txn in self._unreplicated if txn.last_offset >= high_watermark
            ]

    def _check_in_range(self, offset: int) -> None:
        if not self.log_start_offset <= offset <= self.log_end_offset:
            raise OffsetOutOfRangeError(offset, self.log_start_offset, self.log_end_offset)

    def offset_for_timestamp(self, timestamp: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record at or after the log start whose timestamp is
        >= ``timestamp``, in the first segment whose largest timestamp reaches it.

        As Kafka's ``UnifiedLog.searchOffsetInLocalLog``: the segment is chosen by its largest
        timestamp, which counts records below the log start, and a segment without a match at
        or after the log start answers None even when a later segment has one (measured on
        Apache Kafka 3.9.2 and 4.4.0: tests/harness/test_list_offsets_kafka.py).
        """
        for segment in self._segments:
            # Kafka deletes a segment wholly below the log start at its next retention check;
            # this log deletes it at once, so there is none to skip.
            if segment.next_offset <= self.log_start_offset or segment.max_timestamp < timestamp:
                continue
            return segment.find_offset_by_timestamp(timestamp, self.log_start_offset)
        return None

    def max_timestamp(self) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record with the log's largest timestamp (KIP-734).

        Like Kafka, it counts every stored record, those below the log start that DeleteRecords
        left in their segment included: the answer may be below the log start offset."""
        newest: LogSegment | None = None
        for segment in self._segments:
            if segment.max_timestamp >= 0 and (
                newest is None or segment.max_timestamp > newest.max_timestamp
            ):
                newest = segment
        return None if newest is None else newest.max_timestamp_record()

    # --- removing ------------------------------------------------------------------------------

    def delete_records_before(self, offset: int) -> int:
        """DeleteRecords: make ``offset`` the first readable one; returns the log start offset.

        The caller checks ``offset`` against the high watermark; an offset at or below the log
        start changes nothing. The new log start offset is checkpointed before segments below it
        are deleted, so it survives a restart.
        """
        if offset > self.log_end_offset:
            raise OffsetOutOfRangeError(offset, self.log_start_offset, self.log_end_offset)
        if offset > self.log_start_offset:
            self.log_start_offset = offset
            write_offset(self.directory / LOG_START_CHECKPOINT, offset)
            wholly_below = 0
            while (
                wholly_below + 1 < len(self._segments)
                and self._segments[wholly_below + 1].base_offset <= offset
            ):
                wholly_below += 1
            self._delete_oldest(wholly_below)
            self.leader_epochs.truncate_from_start(self.log_start_offset)
        return self.log_start_offset

    def apply_retention(self, now_ms: int, high_watermark: int | None = None) -> int:
        """Delete the oldest segments retention.ms / retention.bytes expire; returns how many.

        Only for cleanup.policy=delete. Segments holding offsets at or above ``high_watermark``
        are kept. If every segment expires, a new empty active segment is rolled first, as Kafka
        does, so the log keeps its end offset.
        """
        if not self.config.delete:
            return 0
        summaries = [
            retention.SegmentSummary(segment.size, segment.largest_timestamp, segment.next_offset)
            for segment in self._segments
        ]
        count = retention.segments_to_delete(summaries, self.config, now_ms, high_watermark)
        if count == len(self._segments):
            self._roll(now_ms)
        self._delete_oldest(count)
        return count

    def _delete_oldest(self, count: int) -> None:
        for segment in self._segments[:count]:
            segment.delete()
        del self._segments[:count]
        self.log_start_offset = max(self.log_start_offset, self._segments[0].base_offset)
        if count:
            self._prune_snapshots()
            self.leader_epochs.truncate_from_start(self.log_start_offset)

    def dirty_ratio(self) -> float:
        """Kafka's cleanable ratio: the share of the non-active segments' bytes written since
        the last compaction pass."""
        closed = self._segments[:-1]
        total = sum(segment.size for segment in closed)
        if total == 0:
            return 0.0
        dirty = sum(s.size for s in closed if s.base_offset >= self._first_dirty_offset)
        return dirty / total

    def needs_compaction(self, now_ms: int) -> bool:
        """Whether the cleaner should compact now: the dirty ratio reached
        min.cleanable.dirty.ratio, or kept tombstones or transaction markers may have passed
        their delete horizon (KIP-534)."""
        if not self.config.compact:
            return False
        recheck = self._delete_horizon_recheck_ms
        return self.dirty_ratio() >= self.config.min_cleanable_dirty_ratio or (
            recheck is not None and recheck <= now_ms
        )

    def compact(self, now_ms: int, high_watermark: int | None = None) -> CleanerStats:
        """Compact what lies below the last stable offset under ``high_watermark`` outside the
        active segment (cleanup.policy=compact); see :mod:`cleaner`. Without a high watermark
        (unit tests of the log alone) the log end offset stands for it."""
        if not self.config.compact:
            return CleanerStats()
        stable = self.last_stable_offset(
            self.log_end_offset if high_watermark is None else high_watermark
        )
        stats = cleaner.compact(
            self._segments,
            self.config,
            now_ms,
            last_stable_offset=stable,
            aborted=self.collect_aborted_transactions(self._segments[0].base_offset, stable),
            last_data_offsets={
                entry.producer_id: entry.last_offset for entry in self.producer_state.entries()
            },
        )
        if stats.first_dirty_offset is not None:
            self._first_dirty_offset = stats.first_dirty_offset
            write_offset(self.directory / CLEANER_CHECKPOINT, stats.first_dirty_offset)
            # Every horizon stamped so far is at most now + delete.retention.ms.
            self._delete_horizon_recheck_ms = (
                now_ms + self.config.delete_retention_ms
                if stats.tombstones_kept or stats.markers_kept
                else None
            )
        return stats

    def truncate_to(self, offset: int) -> None:
        """Remove every batch holding offsets >= ``offset`` (a follower diverging from its leader).

        A batch holding ``offset`` goes whole, so the log end offset may end up below
        ``offset``; it never ends up below the base offset of the first batch removed, even
        where the cleaner left a gap before it.
        """
        if offset >= self.log_end_offset:
            # The epoch cache may still end with an epoch that wrote nothing (this replica led
            # it but appended nothing before losing leadership); it must go, or the follower
            # would keep claiming it (Kafka's truncateTo does the same).
            self.leader_epochs.truncate_from_end(self.log_end_offset)
            return
        new_end = offset
        # A segment replacing the active one continues its lifetime (no clock is passed here).
        created_ms = self._segments[-1].created_ms
        while self._segments and self._segments[-1].base_offset >= offset:
            self._segments.pop().delete()
        if self._segments:
            removed_from = self._segments[-1].truncate_to(offset)
            if removed_from is not None:
                new_end = min(new_end, removed_from)
        if not self._segments or self.log_end_offset < new_end:
            # An empty segment based at new_end keeps the log end offset there, across restarts.
            self._segments.append(LogSegment.create(self.directory, new_end, created_ms))
        if self.log_start_offset > self.log_end_offset:
            self.log_start_offset = self.log_end_offset
            write_offset(self.directory / LOG_START_CHECKPOINT, self.log_start_offset)
        self._set_recovery_point(min(self._recovery_point, self.log_end_offset))
        self._first_dirty_offset = min(self._first_dirty_offset, self.log_end_offset)
        # Kafka's truncateAndReload (the segments' transaction indexes were cut with them): snapshots past the new end describe batches that are gone.
        self._load_producer_state(None)
        self.leader_epochs.truncate_from_end(self.log_end_offset)

    def truncate_fully_and_start_at(self, offset: int, now_ms: int) -> None:
        """Drop every segment and restart the log empty at ``offset`` (Kafka's
        truncateFullyAndStartAt): a follower whose log ends below its leader's log start offset
        cannot fetch the missing offsets, so it starts over where the leader's log starts."""
        for segment in self._segments:
            segment.delete()
        self._segments = [LogSegment.create(self.directory, offset, now_ms)]
        self.log_start_offset = offset
        write_offset(self.directory / LOG_START_CHECKPOINT, offset)
        self._set_recovery_point(offset)
        self._first_dirty_offset = offset
        for snapshot in snapshot_offsets(self.directory):
            delete_snapshot(self.directory, snapshot)
        self.producer_state.restore([])
        self._unreplicated = []
        self.leader_epochs.clear()

    # --- durability ----------------------------------------------------------------------------

    def maybe_flush(self, now_ms: int) -> bool:
        """Flush if flush.messages or flush.ms say it is due; returns whether it flushed.

        Called after every append; the broker also calls it periodically, as Kafka's log
        manager checks flush.ms on a timer, so that a quiet partition is flushed too.
        """
        due = (
            self._unflushed_messages >= self.config.flush_messages
            or now_ms - self._last_flush_ms >= self.config.flush_ms
        )
        if due:
            self.flush()
            self._last_flush_ms = now_ms
        return due

    def flush(self) -> None:
        """fsync every segment and advance the recovery point to the log end offset."""
        for segment in self._segments:
            segment.flush()
        self._unflushed_messages = 0
        self._set_recovery_point(self.log_end_offset)

    def _set_recovery_point(self, offset: int) -> None:
        if offset != self._recovery_point:
            self._recovery_point = offset
            write_offset(self.directory / RECOVERY_POINT_CHECKPOINT, offset)

    def close(self) -> None:
        """Flush, release the files and mark the shutdown clean (the next open skips recovery)."""
        if self._closed:
            return
        self._segments[-1].seal()
        self.flush()
        self._snapshot_producer_state()
        self._release()
        (self.directory / CLEAN_SHUTDOWN_MARKER).touch()

    def abandon(self) -> None:
        """Release the files without flushing or marking a clean shutdown, as if the process
        died here (for crash simulation in tests)."""
        if not self._closed:
            self._release()

    def _release(self) -> None:
        for segment in self._segments:
            segment.close()
        self._closed = True

    # --- producer state ------------------------------------------------------------------------

    def remove_expired_producers(self, now_ms: int) -> list[int]:
        """Forget producers idle for producer.id.expiration.ms (the broker calls this every
        producer.id.expiration.check.interval.ms); returns their ids."""
        return self.producer_state.remove_expired(now_ms)

    def _update_producer_state(
        self, records: bytes | bytearray | memoryview, headers: Sequence[BatchHeader]
    ) -> None:
        """Record stored batches (whose positions are within ``records``) in the producer
        state; a marker's completed transaction goes to the transaction index (an abort) and
        the unreplicated transactions (Kafka's UnifiedLog.analyzeAndValidateProducerState and
        updateTxnIndex)."""
        for header in headers:
            marker = parse_control_batch(records, header) if header.is_control else None
            completed = self.producer_state.update(header, marker)
            if completed is not None:
                self._complete_transaction(completed, index=True)

    def _complete_transaction(self, completed: CompletedTxn, index: bool) -> None:
        if index and completed.is_aborted:
            # Kafka's ProducerStateManager.lastStableOffset(completedTxn): where the oldest
            # other ongoing transaction starts, else just past this one.
            ongoing = self.producer_state.first_ongoing_offset()
            entry = AbortedTxn(
                completed.producer_id, completed.first_offset, completed.last_offset,
                completed.last_offset + 1 if ongoing is None else ongoing,
            )
            self._segment_holding(completed.last_offset).txn_index.append(entry)
        self._unreplicated.append(completed)

    def _segment_holding(self, offset: int) -> LogSegment:
        slot = bisect.bisect_right(self._segments, offset, key=_base_offset) - 1
        return self._segments[max(slot, 0)]

    def _load_producer_state(self, now_ms: int | None, rebuild_txn_index_from: int | None = None) -> None:
        """Rebuild the producer state from the newest usable snapshot plus the batches after it
        (Kafka's ProducerStateManager.truncateAndReload and loadProducerState).

        Snapshots past the log end offset describe batches that are gone and are deleted. A
        usable snapshot lies between the first segment's base offset and the log end offset;
        without one the whole log is replayed. Expired producers are dropped when a clock is
        given, as Kafka does when it loads a snapshot.

        Segments from ``rebuild_txn_index_from`` on were recovered, their transaction indexes
        emptied: the replay starts at or before it (a snapshot no newer than it) and writes the
        aborted transactions of their markers afresh, as Kafka's LogLoader.recoverSegment does.
        """
        end = self.log_end_offset
        for offset in snapshot_offsets(self.directory):
            if offset > end:
                delete_snapshot(self.directory, offset)
        highest = end if rebuild_txn_index_from is None else min(end, rebuild_txn_index_from)
        loaded = load_latest_snapshot(self.directory, self._segments[0].base_offset, highest)
        replay_from = self._segments[0].base_offset
        if loaded is None:
            self.producer_state.restore([])
        else:
            replay_from, entries = loaded
            self.producer_state.restore(entries)
        self._unreplicated = []
        slot = bisect.bisect_right(self._segments, replay_from, key=_base_offset) - 1
        for segment in self._segments[max(slot, 0) :]:
            rebuild = (
                rebuild_txn_index_from is not None
                and segment.base_offset >= rebuild_txn_index_from
            )
            for header, marker in segment.replay_from(replay_from):
                completed = self.producer_state.update(header, marker)
                if completed is not None:
                    self._complete_transaction(completed, index=rebuild)
        if now_ms is not None:
            self.producer_state.remove_expired(now_ms)

    def _load_leader_epochs(self) -> LeaderEpochCache:
        """The epoch cache from ``leader-epoch-checkpoint``, or rebuilt from the batch headers
        when the file is missing or unreadable; trimmed to the log's offsets either way."""
        path = self.directory / LEADER_EPOCH_CHECKPOINT
        cache = LeaderEpochCache.load(path)
        if cache is None:
            # Written even when empty, so that the next open reads the file, not the log.
            rebuilt = LeaderEpochCache(None)
            for segment in self._segments:
                if segment.size:
                    for header in segment.headers_from(segment.base_offset):
                        rebuilt.assign(header.partition_leader_epoch, header.base_offset)
            cache = LeaderEpochCache(path, rebuilt.entries())
            cache.persist(durable=bool(rebuilt.entries()))
        cache.truncate_from_end(self.log_end_offset)
        cache.truncate_from_start(self.log_start_offset)
        return cache

    def _snapshot_producer_state(self) -> None:
        write_snapshot(self.directory, self.log_end_offset, list(self.producer_state.entries()))
        self._prune_snapshots()

    def _prune_snapshots(self) -> None:
        """Keep one snapshot per segment (at its base offset, written when it was rolled) and the
        newest one; drop those below the first segment, whose batches are gone (Kafka deletes a
        segment's snapshot with the segment)."""
        offsets = snapshot_offsets(self.directory)
        if not offsets:
            return
        bases = {segment.base_offset for segment in self._segments}
        first = self._segments[0].base_offset
        for offset in offsets:
            if offset < first or (offset not in bases and offset != offsets[-1]):
                delete_snapshot(self.directory, offset)

    def delete(self) -> None:
        """Close the log and remove its directory (DeleteTopics)."""
        self.close()
        shutil.rmtree(self.directory)


def _base_offset(segment: LogSegment) -> int:
    return segment.base_offset


def _reject_keyless_records(records: bytes | bytearray, headers: Sequence[BatchHeader]) -> None:
    # Kafka's LogValidator: a compacted topic cannot tell which record of a null key is newest.
    for header in headers:
        if header.is_control:
            continue
        for record in iter_records(records, header):
            if record.key is None:
                raise InvalidRecordError(
                    f"record at offset delta {record.offset - header.base_offset} has no key; "
                    "a compacted topic accepts only keyed records"
                )
