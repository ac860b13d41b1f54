"""The two sparse indexes beside every segment: offset -> file position, timestamp -> offset.

Kafka keeps ``.index`` and ``.timeindex`` next to each ``.log`` so that a fetch or a ListOffsets
request never scans a whole segment. Both are sparse (about one entry per index.interval.bytes of
log) and sorted, so a lookup is a bisect followed by a short scan of batch headers.

Entries are big-endian and relative to the segment's base offset, as in Kafka:

- offset index: relative offset int32, file position int32. Here the offset is the *base* offset
  of the batch starting at that position (Kafka stores the batch's last offset, a leftover of
  pre-v2 wrapper messages); with base offsets a lookup lands directly on the containing batch.
- time index: timestamp int64, relative offset int32. The timestamp is the segment's running
  maximum and the offset is the base offset of the first batch that reached it, so every batch
  before that offset holds only smaller timestamps. Timestamps strictly increase.

Kafka preallocates and memory-maps index files; these are plain append-only files mirrored in
memory, so a file is always exactly as long as its entries.
"""

from __future__ import annotations

import bisect
import os
import struct
from pathlib import Path
from typing import Self

from reference_broker.log.errors import CorruptIndexError
from reference_broker.log.files import write_all
from reference_broker.records import NO_TIMESTAMP

OFFSET_ENTRY = struct.Struct(">ii")
TIME_ENTRY = struct.Struct(">qi")


class _SparseIndex:
    """Sorted (key, value) pairs mirrored in memory and appended to a file of fixed-size entries.

    The file is opened for writing only when first needed, so the indexes of the many inactive
    segments hold no file descriptors.
    """

    _ENTRY: struct.Struct

    def __init__(self, path: Path, base_offset: int) -> None:
        self.path = path
        self.base_offset = base_offset
        self._keys: list[int] = []
        self._values: list[int] = []
        self._fd: int | None = None

    @classmethod
    def create(cls, path: Path, base_offset: int) -> Self:
        """A new, empty index (an existing file at ``path`` is emptied)."""
        index = cls(path, base_offset)
        os.ftruncate(index._writable_fd(), 0)
        return index

    def _read_entries(self) -> list[tuple[int, ...]]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            raise CorruptIndexError(f"index file {self.path} is missing") from None
        if len(data) % self._ENTRY.size:
            raise CorruptIndexError(
                f"index file {self.path} is {len(data)} bytes, "
                f"not a whole number of {self._ENTRY.size}-byte entries"
            )
        return list(self._ENTRY.iter_unpack(data))

    def _writable_fd(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        return self._fd

    def _add(self, key: int, value: int, entry: bytes) -> None:
        write_all(self._writable_fd(), entry)
        self._keys.append(key)
        self._values.append(value)

    def _value_at_or_before(self, key: int) -> int | None:
        slot = bisect.bisect_right(self._keys, key) - 1
        return self._values[slot] if slot >= 0 else None

    def _keep_first(self, count: int) -> None:
        if count < len(self._keys):
            del self._keys[count:], self._values[count:]
            os.ftruncate(self._writable_fd(), count * self._ENTRY.size)

    @property
    def entries(self) -> int:
        return len(self._keys)

    def last_entry(self) -> tuple[int, int] | None:
        if not self._keys:
            return None
        return self._keys[-1], self._values[-1]

    def flush(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class OffsetIndex(_SparseIndex):
    """Maps batch base offsets (keys) to their byte positions (values) in the ``.log`` file."""

    _ENTRY = OFFSET_ENTRY

    @classmethod
    def load(cls, path: Path, base_offset: int, log_size: int) -> OffsetIndex:
        """Read an existing index, refusing one that is unsorted or points past the log."""
        index = cls(path, base_offset)
        for relative, position in index._read_entries():
            offset = base_offset + relative
            if index._keys and (offset <= index._keys[-1] or position <= index._values[-1]):
                raise CorruptIndexError(f"offset index {path} is not sorted")
            if relative < 0 or not 0 <= position < log_size:
                raise CorruptIndexError(
                    f"offset index {path} has entry ({offset}, {position}) outside its "
                    f"{log_size}-byte segment"
                )
            index._keys.append(offset)
            index._values.append(position)
        return index

    def append(self, offset: int, position: int) -> None:
        self._add(offset, position, OFFSET_ENTRY.pack(offset - self.base_offset, position))

    def lookup(self, offset: int) -> int:
        """Position of the last indexed batch starting at or before ``offset`` (0 if none)."""
        position = self._value_at_or_before(offset)
        return 0 if position is None else position

    def truncate_to(self, offset: int) -> None:
        """Forget entries for batches starting at ``offset`` or later."""
        self._keep_first(bisect.bisect_left(self._keys, offset))


class TimeIndex(_SparseIndex):
    """Maps a segment's running maximum timestamp (keys) to the first batch that reached it."""

    _ENTRY = TIME_ENTRY

    @classmethod
    def load(cls, path: Path, base_offset: int, next_offset: int) -> TimeIndex:
        """Read an existing index, refusing one that is unsorted or names offsets not in the log."""
        index = cls(path, base_offset)
        for timestamp, relative in index._read_entries():
            offset = base_offset + relative
            if index._keys and (timestamp <= index._keys[-1] or offset < index._values[-1]):
                raise CorruptIndexError(f"time index {path} is not sorted")
            if not base_offset <= offset < next_offset:
                raise CorruptIndexError(
                    f"time index {path} names offset {offset}, outside its segment "
                    f"[{base_offset}, {next_offset})"
                )
            index._keys.append(timestamp)
            index._values.append(offset)
        return index

    def maybe_append(self, timestamp: int, offset: int) -> None:
        """Record a new running maximum; like Kafka, a timestamp that is not newer is skipped.

        An empty index behaves as if its last timestamp were -1 (NO_TIMESTAMP), so batches
        without timestamps are never indexed.
        """
        if timestamp <= (self._keys[-1] if self._keys else NO_TIMESTAMP):
            return
        self._add(timestamp, offset, TIME_ENTRY.pack(timestamp, offset - self.base_offset))

    def lookup(self, timestamp: int) -> int | None:
        """Offset of the last entry whose timestamp is <= ``timestamp`` (None if none)."""
        return self._value_at_or_before(timestamp)

    def truncate_to(self, offset: int) -> None:
        """Forget entries naming ``offset`` or later."""
        self._keep_first(bisect.bisect_left(self._values, offset))
