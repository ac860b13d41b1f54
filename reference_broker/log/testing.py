"""Helpers for tests that drive a :class:`PartitionLog`: build record sets, read a log back.

They live in the library (as trio's testing helpers do) so that the broker's own tests and the
log's tests build batches the same way.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import cramjam
from crc32c import crc32c

from reference_broker.log.partition_log import PartitionLog
from reference_broker.records import (
    HEADER_SIZE,
    LOG_OVERHEAD,
    TRANSACTIONAL_ATTRIBUTE,
    BatchHeader,
    Compression,
    ControlType,
    EndTransactionMarker,
    Record,
    build_batch,
    iter_records,
    parse_control_batch,
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
    transactional: bool = False,
) -> bytes:
    """One uncompressed batch as a producer sends it (base offset 0).

    With a ``producer_id`` it is an idempotent producer's batch with that epoch and base
    sequence (a transactional producer's with ``transactional``); without one, epoch and
    sequence are -1 whatever is passed.
    """
    keys = keys if keys is not None else [None] * len(values)
    timestamps = timestamps if timestamps is not None else [0] * len(values)
    return build_batch(
        [
            Record(delta, timestamp, key, value)
            for delta, (key, value, timestamp) in enumerate(zip(keys, values, timestamps))
        ],
        base_offset=0,
        attributes=TRANSACTIONAL_ATTRIBUTE if transactional else 0,
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


def fetches(
    log: PartitionLog, upper_bound: int | None = None, max_bytes: int = 1 << 20
) -> Iterator[tuple[int, bytes, list[BatchHeader]]]:
    """(fetch offset, data, its batches) of each read a consumer makes from the log start offset
    on, below ``upper_bound`` (the log end offset when None)."""
    end = log.log_end_offset if upper_bound is None else upper_bound
    offset = log.log_start_offset
    while offset < end:
        data = log.read(offset, max_bytes, upper_bound=upper_bound).records
        if not data:
            return
        headers = stored_batches(data)
        yield offset, data, headers
        offset = headers[-1].next_offset


def read_records(log: PartitionLog, max_bytes: int = 1 << 20) -> list[Record]:
    """Every readable record, from the log start offset on, the way a consumer fetches them."""
    return [
        record
        for start, data, headers in fetches(log, max_bytes=max_bytes)
        for header in headers
        for record in iter_records(data, header)
        if record.offset >= start
    ]


def read_committed_records(log: PartitionLog, last_stable_offset: int) -> list[Record]:
    """Every record a read_committed consumer gets, from the log start offset to
    ``last_stable_offset``: the batches below it with, per fetch, the aborted transactions
    overlapping them (as the broker's Fetch answers), filtered as Kafka's consumer does
    (CompletedFetch): a producer's transactional batches from an aborted transaction's first
    offset to its ABORT marker are skipped, and control batches are never returned."""
    records: list[Record] = []
    for start, data, headers in fetches(log, last_stable_offset):
        aborted = sorted(
            log.collect_aborted_transactions(start, headers[-1].next_offset),
            key=lambda txn: txn.first_offset,
        )
        aborted_producers: set[int] = set()
        for header in headers:
            while aborted and aborted[0].first_offset <= header.last_offset:
                aborted_producers.add(aborted.pop(0).producer_id)
            if header.is_control:
                marker = parse_control_batch(data, header)
                if marker is not None and marker.is_abort:
                    aborted_producers.discard(header.producer_id)
            elif not (header.is_transactional and header.producer_id in aborted_producers):
                records.extend(r for r in iter_records(data, header) if r.offset >= start)
    return records


class Producer:
    """An idempotent producer writing keyed records to a log, in transactions or not: it keeps
    its sequence numbers and ends its transactions with markers, as the partition leader
    writes them for the coordinator."""

    def __init__(self, log: PartitionLog, producer_id: int, epoch: int = 0) -> None:
        self.log = log
        self.producer_id = producer_id
        self.epoch = epoch
        self.sequence = 0

    def send(
        self,
        *records: tuple[bytes | None, bytes | None],
        transactional: bool = True,
        timestamp: int = 0,
    ) -> int:
        """Append the ``(key, value)`` records as one batch; returns its first offset."""
        data = batch(
            *[value for _, value in records],
            keys=[key for key, _ in records],
            timestamps=[timestamp] * len(records),
            producer_id=self.producer_id,
            producer_epoch=self.epoch,
            base_sequence=self.sequence,
            transactional=transactional,
        )
        self.sequence += len(records)
        return self.log.append(*record_set(data), timestamp).first_offset

    def end(self, control_type: ControlType, timestamp: int = 0) -> int:
        """Append the COMMIT or ABORT marker of the producer's transaction; returns its offset."""
        marker = EndTransactionMarker(control_type, coordinator_epoch=0)
        return self.log.append_marker(self.producer_id, self.epoch, marker, timestamp).first_offset

