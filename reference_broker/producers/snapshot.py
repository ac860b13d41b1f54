"""The bytes of a producer-state snapshot (the ``<offset>.snapshot`` files of a partition).

Kafka's ProducerStateManager writes a snapshot of its entries when a segment rolls and when the
log closes, named after the log end offset it covers, so that opening a log replays only the
batches after the newest snapshot instead of the whole log. The layout follows Kafka's (a
version, a CRC-32C of everything after it, then the entries), but it is kconform's own format,
version 2, and Kafka cannot read it: Kafka keeps only each producer's *last* batch in a
snapshot, so after a restart only a retry of that batch is recognised; this format keeps all
five cached batches, so a retry of any batch a producer may have in flight is recognised after a
restart too. Version 2 adds, like Kafka's snapshot entries, the first offset of the producer's
ongoing transaction (-1: none) and the coordinator epoch of its last marker, so that an open
transaction (and so the last stable offset) survives a restart; version 1 files, written before
transactions, still load (no transaction ongoing). All integers are big-endian::

    version int16 | crc uint32 | producer count int32
    | per producer: producer id int64 | epoch int16
      | (version 2) current txn first offset int64 | coordinator epoch int32
      | batch count int8
      | per batch: first seq int32 | last seq int32 | first offset int64 | last offset int64
                   | timestamp int64
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from crc32c import crc32c

from reference_broker.producers.state import CACHED_BATCHES, BatchMetadata, ProducerEntry

VERSION = 2
_VERSION_1 = 1
_PREFIX = struct.Struct(">hI")
_COUNT = struct.Struct(">i")
_PRODUCER_V1 = struct.Struct(">qhb")
_PRODUCER = struct.Struct(">qhqib")
_NO_TXN = -1
_BATCH = struct.Struct(">iiqqq")


class SnapshotError(Exception):
    """Bytes that are not a snapshot this broker wrote: torn, corrupt, or another version."""


def encode(entries: Iterable[ProducerEntry]) -> bytes:
    """Serialise producer entries (in producer id order, so equal states give equal bytes)."""
    ordered = sorted(entries, key=lambda entry: entry.producer_id)
    body = bytearray(_COUNT.pack(len(ordered)))
    for entry in ordered:
        txn_first = entry.current_txn_first_offset
        body += _PRODUCER.pack(
            entry.producer_id, entry.epoch, _NO_TXN if txn_first is None else txn_first,
            entry.coordinator_epoch, len(entry.batches),
        )
        for batch in entry.batches:
            body += _BATCH.pack(
                batch.first_seq, batch.last_seq, batch.first_offset, batch.last_offset,
                batch.timestamp,
            )
    return _PREFIX.pack(VERSION, crc32c(bytes(body))) + bytes(body)


def decode(data: bytes) -> list[ProducerEntry]:
    """Parse a snapshot; raises SnapshotError for anything but an intact version 1 or 2
    snapshot."""
    if len(data) < _PREFIX.size + _COUNT.size:
        raise SnapshotError(f"snapshot of {len(data)} bytes is too short")
    version, crc = _PREFIX.unpack_from(data, 0)
    if version not in (_VERSION_1, VERSION):
        raise SnapshotError(f"snapshot version {version}, expected {_VERSION_1} or {VERSION}")
    body = memoryview(data)[_PREFIX.size :]
    if crc32c(body) != crc:
        raise SnapshotError("snapshot fails its CRC check")
    try:
        (count,) = _COUNT.unpack_from(body, 0)
        position = _COUNT.size
        entries = []
        for _ in range(count):
            txn_first, coordinator_epoch = _NO_TXN, -1
            if version == _VERSION_1:
                producer_id, epoch, batch_count = _PRODUCER_V1.unpack_from(body, position)
                position += _PRODUCER_V1.size
            else:
                producer_id, epoch, txn_first, coordinator_epoch, batch_count = (
                    _PRODUCER.unpack_from(body, position)
                )
                position += _PRODUCER.size
            if not 1 <= batch_count <= CACHED_BATCHES:
                raise SnapshotError(f"producer id {producer_id} has {batch_count} batches")
            batches = []
            for _ in range(batch_count):
                batches.append(BatchMetadata(*_BATCH.unpack_from(body, position)))
                position += _BATCH.size
            entries.append(ProducerEntry(
                producer_id, epoch, tuple(batches),
                None if txn_first == _NO_TXN else txn_first, coordinator_epoch,
            ))
    except struct.error as exc:
        raise SnapshotError(f"snapshot ends early: {exc}") from None
    if position != len(body):
        raise SnapshotError(f"{len(body) - position} bytes after the last producer entry")
    return entries
