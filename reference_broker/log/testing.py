"""Helpers for tests that drive a :class:`PartitionLog`: build record sets, read a log back.

They live in the library (as trio's testing helpers do) so that the broker's own tests and the
log's tests build batches the same way.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

import cramjam
from crc32c import crc32c

from reference_broker.log.partition_log import PartitionLog
from reference_broker.records import (
    HEADER_SIZE,
    LOG_OVERHEAD,
    BatchHeader,
    Compression,
    Record,
    build_batch,
    iter_records,
    scan_valid_prefix,
    validate_batches,
)

# Producers' codecs (snappy raw, as librdkafka writes it).
_COMPRESSORS: dict[Compression, Callable[[bytes], Any]] = {
    Compression.GZIP: cramjam.gzip.compress,
    Compression.LZ4: cramjam.lz4.compress,
    Compression.ZSTD: cramjam.zstd.compress,
    Compression.SNAPPY: cramjam.snappy.compress_raw,
}


def batch(
    *values: bytes | None,
    keys: Sequence[bytes | None] | None = None,
    timestamps: Sequence[int] | None = None,
    producer_id: int = -1,
    producer_epoch: int = 0,
    base_sequence: int = 0,
) -> bytes:
    """One uncompressed batch as a producer sends it (base offset 0).

    With a ``producer_id`` it is an idempotent producer's batch with that epoch and base
    sequence; without one, epoch and sequence are -1 whatever is passed.
    """
    keys = keys if keys is not None else [None] * len(values)
    timestamps = timestamps if timestamps is not None else [0] * len(values)
    return build_batch(
        [
            Record(delta, timestamp, key, value)
            for delta, (key, value, timestamp) in enumerate(zip(keys, values, timestamps))
        ],
        base_offset=0,
        producer_id=producer_id,
        producer_epoch=producer_epoch if producer_id >= 0 else -1,
        base_sequence=base_sequence if producer_id >= 0 else -1,
    )


def compress_body(body: bytes, codec: Compression) -> bytes:
    """The records body of a batch compressed as producers do (raw snappy, as librdkafka)."""
    return bytes(_COMPRESSORS[codec](body))


def compress(data: bytes, codec: Compression) -> bytes:
    """Re-encode an uncompressed batch with ``codec``, as a producer with compression would.

    Byte positions are those of the v2 header: batchLength at 8, crc at 17, attributes at 21.
    """
    body = compress_body(data[HEADER_SIZE:], codec)
    header = bytearray(data[:HEADER_SIZE])
    attributes = struct.unpack_from(">h", header, 21)[0] | codec
    struct.pack_into(">h", header, 21, attributes)
    struct.pack_into(">i", header, 8, HEADER_SIZE - LOG_OVERHEAD + len(body))
    compressed = header + body
    struct.pack_into(">I", compressed, 17, crc32c(bytes(compressed[21:])))
    return bytes(compressed)


def record_set(*batches: bytes) -> tuple[bytearray, list[BatchHeader]]:
    """A produce request's records for ``batches``, validated as the broker does before append."""
    records = bytearray(b"".join(batches))
    return records, validate_batches(records)


def stored_batches(data: bytes) -> list[BatchHeader]:
    """The headers of the whole batches in a read result."""
    headers, valid = scan_valid_prefix(data)
    assert valid == len(data), "a read returned a partial batch"
    return headers


def read_records(log: PartitionLog, max_bytes: int = 1 << 20) -> list[Record]:
    """Every readable record, from the log start offset on, the way a consumer fetches them."""
    records: list[Record] = []
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        data = log.read(offset, max_bytes).records
        if not data:
            break
        for header in stored_batches(data):
            records.extend(r for r in iter_records(data, header) if r.offset >= offset)
            offset = header.next_offset
    return records

