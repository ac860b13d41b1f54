"""A segment's aborted-transaction index: the ``.txnindex`` file (Kafka's TransactionIndex).

KIP-98's read_committed consumers must skip the records of aborted transactions. The broker does
not filter them out of a fetch (batches stay opaque); it tells the consumer which producers
aborted which ranges, and the consumer drops those producers' batches from each range's first
offset up to the ABORT marker. To answer that cheaply every segment keeps, in the order the
markers were written, one entry per ABORT marker it holds; the entry names the aborted
transaction's producer id, first offset (possibly in an earlier segment), last offset (the
marker's) and the last stable offset when it was written. The file layout is Kafka's
(AbortedTxn), 34 big-endian bytes per entry::

    version int16 (0) | producer id int64 | first offset int64 | last offset int64
    | last stable offset int64

Entries are appended with plain writes (they survive the death of the process; fsync comes with
the segment's), kept in memory as well (aborts are rare, the index small), cut off with the
segment's batches on truncation and deleted with the segment. A torn tail (a power loss during
an append) or an entry of another version ends the usable file: it is cut off when loaded, and
log recovery rebuilds the index of every segment it recovers from the batches themselves.
Compaction rewrites the index of each segment it cleans, keeping the aborted transactions that
still had data in the log (see :mod:`reference_broker.log.cleaner`).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path

import attrs

from reference_broker.log.files import CLEANED_SUFFIX, fsync_directory, write_all

ENTRY = struct.Struct(">hqqqq")
ENTRY_VERSION = 0


@attrs.frozen(slots=True)
class AbortedTxn:
    """One aborted transaction of a segment (Kafka's AbortedTxn)."""

    producer_id: int
    first_offset: int
    last_offset: int
    last_stable_offset: int

    def encode(self) -> bytes:
        return ENTRY.pack(
            ENTRY_VERSION, self.producer_id, self.first_offset, self.last_offset,
            self.last_stable_offset,
        )


def decode_entries(data: bytes) -> tuple[list[AbortedTxn], int]:
    """The whole, version-0 entries at the start of ``data`` and how many bytes they take."""
    entries: list[AbortedTxn] = []
    position = 0
    while position + ENTRY.size <= len(data):
        version, *fields = ENTRY.unpack_from(data, position)
        if version != ENTRY_VERSION:
            break
        entries.append(AbortedTxn(*fields))
        position += ENTRY.size
    return entries, position


class TransactionIndex:
    """The ``.txnindex`` of one segment; the file exists only once an entry was appended."""

    def __init__(self, path: Path, entries: Iterable[AbortedTxn] = ()) -> None:
        self.path = path
        self.entries: list[AbortedTxn] = list(entries)
        self._unflushed = False

    @classmethod
    def load(cls, path: Path) -> TransactionIndex:
        """The index in ``path`` (none: empty), cutting off a torn or unreadable tail."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return cls(path)
        entries, valid = decode_entries(data)
        if valid < len(data):
            os.truncate(path, valid)
        return cls(path, entries)

    @classmethod
    def create(cls, path: Path) -> TransactionIndex:
        """An empty index, removing whatever file was left at ``path``."""
        path.unlink(missing_ok=True)
        return cls(path)

    def append(self, entry: AbortedTxn) -> None:
        """Add an aborted transaction; markers come in offset order, so entries do too."""
        if self.entries and entry.last_offset <= self.entries[-1].last_offset:
            raise ValueError(
                f"aborted transaction ending at {entry.last_offset} after one ending at "
                f"{self.entries[-1].last_offset}"
            )
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            write_all(fd, entry.encode())
        finally:
            os.close(fd)
        self.entries.append(entry)
        self._unflushed = True

    def collect_aborted(self, fetch_offset: int, upper_bound: int) -> list[AbortedTxn]:
        """The aborted transactions overlapping ``[fetch_offset, upper_bound)`` (Kafka's
        TransactionIndex.collectAbortedTxns)."""
        return [
            entry for entry in self.entries
            if entry.last_offset >= fetch_offset and entry.first_offset < upper_bound
        ]

    def truncate_to(self, offset: int) -> None:
        """Drop the entries whose marker is at ``offset`` or later (Kafka's truncateTo)."""
        keep = [entry for entry in self.entries if entry.last_offset < offset]
        if len(keep) == len(self.entries):
            return
        self.entries = keep
        if self.path.exists():
            os.truncate(self.path, len(keep) * ENTRY.size)
        self._unflushed = True

    def replace_entries(self, entries: Sequence[AbortedTxn]) -> None:
        """Keep only ``entries`` (compaction drops the aborted transactions with no data left, as
        Kafka's cleaner writes a cleaned segment's index afresh). The new file is written to
        ``.cleaned``, fsynced and renamed over the old one, so a crash leaves either index."""
        if list(entries) == self.entries:
            return
        if entries:
            cleaned = self.path.with_name(self.path.name + CLEANED_SUFFIX)
            fd = os.open(cleaned, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                write_all(fd, b"".join(entry.encode() for entry in entries))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(cleaned, self.path)
        else:
            self.path.unlink(missing_ok=True)  # the file exists only while it has entries
        fsync_directory(self.path.parent)
        self.entries = list(entries)
        self._unflushed = False

    def reset(self) -> None:
        """Forget every entry (the segment is being recovered, which rebuilds them)."""
        self.entries = []
        self.path.unlink(missing_ok=True)
        self._unflushed = False

    def flush(self) -> None:
        if self._unflushed and self.path.exists():
            fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self._unflushed = False

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)
