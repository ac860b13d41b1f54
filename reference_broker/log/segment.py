"""One segment of a partition log: a ``.log`` file of whole record batches plus its indexes.

A segment is the unit Kafka rolls, deletes (retention) and rewrites (compaction). Its batches are
stored exactly as produced, with offsets only increasing; compaction may leave gaps between them
but never moves a batch's base or last offset. Reads go through ``os.pread`` on a file descriptor
kept open for the segment's lifetime, starting from the position the offset index gives, so the
cost of a fetch depends on the index interval and the fetch size, not on the size of the log.

A segment is opened one of two ways, as Kafka's LogLoader does:

- trusted (:meth:`LogSegment.open_trusted`): for segments known to be flushed. The indexes are
  loaded and sanity-checked, and only the batch headers after the last index entry are read.
  Anything inconsistent raises :class:`CorruptIndexError` and the caller recovers instead.
- recovered (:meth:`LogSegment.recover`): every batch is CRC-checked from the start; the first
  torn or corrupt batch and everything after it are cut off, and both indexes are rebuilt.
  Its transaction index (``.txnindex``, :mod:`reference_broker.log.txn_index`) is emptied:
  its entries depend on producer state from earlier segments, so the partition log rebuilds
  them while replaying the recovered batches (as Kafka's LogSegment.recover does with the
  producer state it is handed).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from reference_broker.log.errors import CorruptIndexError
from reference_broker.log.files import (
    CLEANED_SUFFIX,
    LOG_SUFFIX,
    OFFSET_INDEX_SUFFIX,
    TIME_INDEX_SUFFIX,
    TXN_INDEX_SUFFIX,
    fsync_directory,
    segment_path,
    write_all,
)
from reference_broker.log.index import OFFSET_ENTRY, TIME_ENTRY, OffsetIndex, TimeIndex
from reference_broker.log.txn_index import AbortedTxn, TransactionIndex
from reference_broker.records import (
    HEADER_SIZE,
    NO_TIMESTAMP,
    BatchHeader,
    CorruptRecordError,
    EndTransactionMarker,
    Record,
    RecordError,
    iter_records,
    parse_control_batch,
    parse_header,
    scan_valid_prefix,
)

# How much of the file one pread takes when walking batch headers; big enough that a walk over
# one index interval (4 KiB by default) is a single system call.
_SCAN_CHUNK = 64 * 1024
# How much recovery CRC-checks per pread.
_RECOVERY_CHUNK = 4 * 1024 * 1024
# Index entries hold offsets relative to the base offset as int32.
_MAX_RELATIVE_OFFSET = 2**31 - 1


class LogSegment:
    """A ``<base offset>.log`` file and its ``.index`` / ``.timeindex`` / ``.txnindex``."""

    def __init__(self, directory: Path, base_offset: int, created_ms: int) -> None:
        self.directory = directory
        self.base_offset = base_offset
        # Kafka falls back to a segment's creation time when its records carry no timestamps.
        self.created_ms = created_ms
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        self.size = os.fstat(self._fd).st_size
        self.offset_index = OffsetIndex(self._index_path(OFFSET_INDEX_SUFFIX), base_offset)
        self.time_index = TimeIndex(self._index_path(TIME_INDEX_SUFFIX), base_offset)
        self.txn_index = TransactionIndex.load(self._index_path(TXN_INDEX_SUFFIX))
        self._reset_progress()
        self._unflushed = False

    def _reset_progress(self) -> None:
        self.next_offset = self.base_offset
        self.max_timestamp = NO_TIMESTAMP
        # Base offset of the first batch that reached max_timestamp.
        self.max_timestamp_batch = self.base_offset
        # The first batch's timestamp, which segment.ms counts from (Kafka's rollingBasedTimestamp).
        self.rolling_base_timestamp = NO_TIMESTAMP
        self._bytes_since_index_entry = 0

    # --- opening -------------------------------------------------------------------------------

    @classmethod
    def create(cls, directory: Path, base_offset: int, now_ms: int) -> LogSegment:
        """A new, empty segment (files left over at that base offset are emptied)."""
        segment = cls(directory, base_offset, now_ms)
        os.ftruncate(segment._fd, 0)
        segment.size = 0
        segment.offset_index = OffsetIndex.create(segment.offset_index.path, base_offset)
        segment.time_index = TimeIndex.create(segment.time_index.path, base_offset)
        segment.txn_index = TransactionIndex.create(segment.txn_index.path)
        return segment

    @classmethod
    def open_trusted(cls, directory: Path, base_offset: int, now_ms: int) -> LogSegment:
        """Open a flushed segment, trusting its batches; raises CorruptIndexError if it cannot."""
        segment = cls(directory, base_offset, now_ms)
        try:
            segment.offset_index = OffsetIndex.load(
                segment.offset_index.path, base_offset, segment.size
            )
            segment._read_unindexed_tail()
            segment.time_index = TimeIndex.load(
                segment.time_index.path, base_offset, segment.next_offset
            )
            segment._merge_time_index()
        except (CorruptIndexError, RecordError) as exc:
            segment.close()
            raise CorruptIndexError(f"segment {segment.path}: {exc}") from exc
        return segment

    @classmethod
    def recover(
        cls, directory: Path, base_offset: int, now_ms: int, index_interval_bytes: int
    ) -> tuple[LogSegment, bool]:
        """Open a segment that may hold a torn tail: keep its valid prefix, rebuild its indexes.

        Returns the segment and whether anything was cut off.
        """
        segment = cls(directory, base_offset, now_ms)
        valid = _valid_prefix_length(segment._fd, segment.size, base_offset)
        truncated = valid < segment.size
        if truncated:
            os.ftruncate(segment._fd, valid)
            segment.size = valid
        segment.rebuild_indexes(index_interval_bytes)
        segment.txn_index.reset()
        return segment, truncated

    def rebuild_indexes(self, index_interval_bytes: int) -> None:
        """Write both indexes afresh from the batches in the ``.log`` file."""
        self.offset_index.close()
        self.time_index.close()
        self.offset_index = OffsetIndex.create(self.offset_index.path, self.base_offset)
        self.time_index = TimeIndex.create(self.time_index.path, self.base_offset)
        self._reset_progress()
        for position, header in self._iter_headers(0):
            self._track(position, header, index_interval_bytes)
        self._unflushed = True

    def _read_unindexed_tail(self) -> None:
        """Derive the next offset and timestamps of the batches from the last index entry on.

        Their headers must chain exactly to the end of the file. Together with
        :meth:`_merge_time_index` this restores the segment's progress without reading the
        batches the indexes already summarise (entries of both indexes are appended together).
        """
        self._reset_progress()
        last_indexed = self.offset_index.last_entry()
        start = 0 if last_indexed is None else last_indexed[1]
        if last_indexed is not None:
            self.next_offset = last_indexed[0]
        end = start
        for position, header in self._iter_headers(start):
            if position == start and last_indexed is not None and (
                header.base_offset != last_indexed[0]
            ):
                raise CorruptIndexError(
                    f"offset index says offset {last_indexed[0]} starts at byte {start}, "
                    f"the log has offset {header.base_offset} there"
                )
            if header.base_offset < self.next_offset or header.last_offset_delta < 0:
                raise CorruptIndexError(f"offsets go backwards at byte {position}")
            self._note_timestamp(header)
            self.next_offset = header.next_offset
            end = position + header.size
        if end != self.size:
            raise CorruptIndexError(f"the last batch ends at byte {end}, the file at {self.size}")
        self._bytes_since_index_entry = self.size - start
        if self.size:
            self.rolling_base_timestamp = self._header_at(0).max_timestamp

    def _merge_time_index(self) -> None:
        """Take the time index's newest maximum when the unindexed tail holds nothing larger.

        On a tie the index entry wins: it names an earlier batch, and the maximum's offset is
        that of the first batch reaching it.
        """
        newest = self.time_index.last_entry()
        if newest is not None and newest[0] >= self.max_timestamp:
            self.max_timestamp, self.max_timestamp_batch = newest

    # --- writing -------------------------------------------------------------------------------

    def append(
        self,
        data: bytes | bytearray | memoryview,
        headers: Sequence[BatchHeader],
        index_interval_bytes: int,
    ) -> None:
        """Write batches whose ``headers`` give positions within ``data``, which starts them all."""
        start = self.size
        write_all(self._fd, data)
        self.size += len(data)
        for header in headers:
            self._track(start + header.position, header, index_interval_bytes)
        self._unflushed = True

    def _track(self, position: int, header: BatchHeader, index_interval_bytes: int) -> None:
        """Account for a batch now stored at ``position``; index it when the interval has passed."""
        if position == 0:
            self.rolling_base_timestamp = header.max_timestamp
        self._note_timestamp(header)
        # Kafka's LogSegment indexes a batch once more than index.interval.bytes were appended
        # since the previous entry, so the first batch of a segment is found at position 0.
        if self._bytes_since_index_entry > index_interval_bytes:
            self.offset_index.append(header.base_offset, position)
            self.time_index.maybe_append(self.max_timestamp, self.max_timestamp_batch)
            self._bytes_since_index_entry = 0
        self._bytes_since_index_entry += header.size
        self.next_offset = header.next_offset

    def _note_timestamp(self, header: BatchHeader) -> None:
        if header.max_timestamp > self.max_timestamp:
            self.max_timestamp = header.max_timestamp
            self.max_timestamp_batch = header.base_offset

    def index_is_full(self, segment_index_bytes: int) -> bool:
        """Kafka rolls when either index reaches segment.index.bytes worth of entries."""
        return (
            self.offset_index.entries >= segment_index_bytes // OFFSET_ENTRY.size
            or self.time_index.entries >= segment_index_bytes // TIME_ENTRY.size
        )

    def can_index(self, last_offset: int) -> bool:
        """Whether ``last_offset`` still fits the indexes' int32 relative offsets."""
        return last_offset - self.base_offset <= _MAX_RELATIVE_OFFSET

    def seal(self) -> None:
        """Finish the segment when it stops being active: final time index entry, fsync.

        Like Kafka's onBecomeInactiveSegment, the newest maximum timestamp is indexed even when
        the interval has not passed, so the time index alone summarises the whole segment.
        """
        self.time_index.maybe_append(self.max_timestamp, self.max_timestamp_batch)
        self.flush()
        self.offset_index.close()
        self.time_index.close()

    def truncate_to(self, offset: int) -> int | None:
        """Cut off the batch holding ``offset`` (or the first after it) and everything later.

        Returns the base offset of the first batch removed, or None if nothing was.
        """
        found = self.locate(offset)
        if found is None:
            return None
        position, header = found
        os.ftruncate(self._fd, position)
        self.size = position
        self.offset_index.truncate_to(header.base_offset)
        self.time_index.truncate_to(header.base_offset)
        self.txn_index.truncate_to(header.base_offset)
        self._read_unindexed_tail()
        self._merge_time_index()
        self._unflushed = True
        return header.base_offset

    def replace_batches(
        self,
        batches: Iterable[bytes],
        index_interval_bytes: int,
        aborted: Sequence[AbortedTxn],
    ) -> None:
        """Swap the segment's contents for ``batches`` and its transaction index's for
        ``aborted`` (compaction), safely against crashes.

        The transaction index is replaced first. The entries it drops are those of aborted
        transactions that had no data left in the old contents either, and the ones it keeps
        have their markers in both, so with the old or the new log every aborted record is
        still covered, and no entry outlives its ABORT marker (a consumer would then take the
        producer's later transactions for aborted).

        The new contents are written to ``.log.cleaned`` and fsynced; the old indexes are
        removed before the rename so that a crash can leave a log without indexes (rebuilt on
        open) but never a log with indexes describing other contents.
        """
        self.txn_index.replace_entries(aborted)
        cleaned = self.path.with_name(self.path.name + CLEANED_SUFFIX)
        fd = os.open(cleaned, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        try:
            for batch in batches:
                write_all(fd, batch)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self.offset_index.close()
        self.time_index.close()
        self.offset_index.path.unlink(missing_ok=True)
        self.time_index.path.unlink(missing_ok=True)
        os.replace(cleaned, self.path)
        fsync_directory(self.directory)
        os.close(self._fd)
        self._fd = fd
        self.size = os.fstat(fd).st_size
        self.rebuild_indexes(index_interval_bytes)
        self.seal()

    def flush(self) -> None:
        if self._unflushed:
            os.fsync(self._fd)
            self.offset_index.flush()
            self.time_index.flush()
            self._unflushed = False
        self.txn_index.flush()

    def close(self) -> None:
        self.offset_index.close()
        self.time_index.close()
        os.close(self._fd)

    def delete(self) -> None:
        """Close and remove the segment's files (the log first, so no half-segment is left)."""
        self.close()
        self.path.unlink(missing_ok=True)
        self.offset_index.path.unlink(missing_ok=True)
        self.time_index.path.unlink(missing_ok=True)
        self.txn_index.delete()

    # --- reading -------------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return segment_path(self.directory, self.base_offset, LOG_SUFFIX)

    def _index_path(self, suffix: str) -> Path:
        return segment_path(self.directory, self.base_offset, suffix)

    @property
    def largest_timestamp(self) -> int:
        """What retention.ms compares with: the newest record timestamp, else the creation time."""
        return self.max_timestamp if self.max_timestamp >= 0 else self.created_ms

    def _pread(self, position: int, size: int) -> bytes:
        return os.pread(self._fd, size, position)

    def _header_at(self, position: int) -> BatchHeader:
        return parse_header(self._pread(position, HEADER_SIZE))

    def _iter_headers(self, position: int) -> Iterator[tuple[int, BatchHeader]]:
        """(position, header) of every batch from ``position`` to the end, a chunk per pread."""
        end = self.size
        while position < end:
            chunk = self._pread(position, min(_SCAN_CHUNK, end - position))
            if len(chunk) < HEADER_SIZE:
                raise CorruptRecordError(f"{self.path} ends inside a batch header")
            cursor = 0
            while cursor + HEADER_SIZE <= len(chunk):
                header = parse_header(chunk, cursor)
                if position + cursor + header.size > end:
                    raise CorruptRecordError(f"{self.path} ends inside the batch at {position}")
                yield position + cursor, header
                cursor += header.size
            position += cursor

    def iter_batches(self) -> Iterator[tuple[BatchHeader, bytes]]:
        """Every batch as (header positioned at 0, the batch's bytes)."""
        for position, header in self._iter_headers(0):
            data = self._pread(position, header.size)
            yield parse_header(data), data

    def headers_from(self, offset: int) -> Iterator[BatchHeader]:
        """The headers of the batches whose base offset is >= ``offset``, reading only headers
        from the index entry at or before ``offset`` on (producer-state replay)."""
        for _, header in self._iter_headers(self.offset_index.lookup(offset)):
            if header.base_offset >= offset:
                yield header

    def replay_from(self, offset: int) -> Iterator[tuple[BatchHeader, EndTransactionMarker | None]]:
        """Like :meth:`headers_from`, each header with the marker of a control batch (read from
        the file; data batches are not read): what producer-state replay needs."""
        for position, header in self._iter_headers(self.offset_index.lookup(offset)):
            if header.base_offset >= offset:
                marker = None
                if header.is_control:
                    data = self._pread(position, header.size)
                    marker = parse_control_batch(data, parse_header(data))
                yield header, marker

    def locate(self, offset: int) -> tuple[int, BatchHeader] | None:
        """The first batch whose last offset is >= ``offset``: the batch holding ``offset``, or
        the next one the cleaner kept. None if the segment has no such batch."""
        for position, header in self._iter_headers(self.offset_index.lookup(offset)):
            if header.last_offset >= offset:
                return position, header
        return None

    def read(
        self, offset: int, max_bytes: int, upper_bound: int | None, min_one_batch: bool
    ) -> bytes | None:
        """Whole batches from the one holding ``offset``; None if this segment has none.

        Stops before ``max_bytes`` would be exceeded, except that with ``min_one_batch`` the
        first batch is returned whole whatever its size (KIP-74), and never includes a batch
        whose base offset is ``upper_bound`` or more.
        """
        found = self.locate(offset)
        if found is None:
            return None
        position, first = found
        if upper_bound is not None and first.base_offset >= upper_bound:
            return b""
        if first.size > max_bytes:
            return self._pread(position, first.size) if min_one_batch else b""
        window = self._pread(position, min(max_bytes, self.size - position))
        end = first.size
        while end + HEADER_SIZE <= len(window):
            header = parse_header(window, end)
            if end + header.size > len(window) or (
                upper_bound is not None and header.base_offset >= upper_bound
            ):
                break
            end += header.size
        return window[:end]

    def _records(self, position: int, header: BatchHeader) -> Iterator[Record]:
        data = self._pread(position, header.size)
        return iter_records(data, parse_header(data))

    def find_offset_by_timestamp(
        self, timestamp: int, starting_offset: int
    ) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record at or after ``starting_offset`` whose
        timestamp is >= ``timestamp``, as Kafka's LogSegment.findOffsetByTimestamp.

        The time index names a batch before which every timestamp is smaller; the scan starts
        there and opens only the first batch whose maximum timestamp is large enough.
        """
        indexed = self.time_index.lookup(timestamp)
        start = max(starting_offset, self.base_offset if indexed is None else indexed)
        for position, header in self._iter_headers(self.offset_index.lookup(start)):
            if header.last_offset < starting_offset or header.max_timestamp < timestamp:
                continue
            for record in self._records(position, header):
                if record.offset >= starting_offset and record.timestamp >= timestamp:
                    return record.offset, record.timestamp
        return None

    def max_timestamp_record(self) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record carrying the segment's largest timestamp."""
        if self.max_timestamp < 0:
            return None
        found = self.locate(self.max_timestamp_batch)
        assert found is not None, "max_timestamp_batch always names a stored batch"
        position, header = found
        return next(
            (
                (record.offset, record.timestamp)
                for record in self._records(position, header)
                if record.timestamp == self.max_timestamp
            ),
            # A producer may claim a maxTimestamp that no record has: name the batch's end.
            (header.last_offset, self.max_timestamp),
        )


def _valid_prefix_length(fd: int, size: int, base_offset: int) -> int:
    """How many leading bytes of a ``.log`` file hold intact batches with increasing offsets.

    Reads in chunks so recovering a large segment does not hold it all in memory; a batch cut by
    a chunk boundary is re-read whole from its start.
    """
    position = 0
    next_offset = base_offset
    want = _RECOVERY_CHUNK
    while position < size:
        chunk = os.pread(fd, min(want, size - position), position)
        headers, valid = scan_valid_prefix(chunk)
        for header in headers:
            if header.base_offset < next_offset or header.last_offset_delta < 0:
                return position + header.position
            next_offset = header.next_offset
        at_end_of_file = position + len(chunk) == size
        position += valid
        if valid == len(chunk):
            want = _RECOVERY_CHUNK
            continue
        if at_end_of_file:
            return position  # a torn or corrupt tail
        rest = memoryview(chunk)[valid:]
        if len(rest) >= HEADER_SIZE:
            try:
                cut = parse_header(rest)
            except RecordError:
                return position
            if cut.size <= len(rest):
                return position  # the whole batch was there and failed its CRC
            want = max(_RECOVERY_CHUNK, cut.size)
    return position
