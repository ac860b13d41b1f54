"""The cluster metadata log on disk: ``<log.dirs>/__cluster_metadata-0/``, as in KRaft.

It is an ordinary :class:`~reference_broker.log.PartitionLog` whose records carry the JSON
encoding of :mod:`reference_broker.metadata.records` as values (no keys). The controller appends
to it and fsyncs every append before it answers anyone (KRaft commits a record only once it is
durable), so a restarted controller that replays it is where it was. Brokers read it with Fetch
(topic ``__cluster_metadata``, partition 0), or, in combined mode, straight from the controller
in the same process.

Kept forever: the log is small (a few records per topic, broker start and election), and a
replay from offset 0 rebuilds the image without snapshots.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from reference_broker.log import PartitionLog
from reference_broker.log.config import NEVER, UNLIMITED, LogConfig
from reference_broker.metadata.records import MetadataRecord, MetadataRecordError, decode, encode
from reference_broker.records import Record, build_batch, iter_records, scan_valid_prefix, validate_batches

METADATA_TOPIC = "__cluster_metadata"
METADATA_PARTITION = 0
METADATA_DIR = f"{METADATA_TOPIC}-{METADATA_PARTITION}"
_READ_BYTES = 4 * 1024 * 1024

# Metadata batches can be large (a topic with thousands of partitions is one append).
METADATA_LOG_CONFIG = LogConfig(
    segment_bytes=1024 * 1024 * 1024,
    segment_ms=NEVER,
    retention_bytes=UNLIMITED,
    retention_ms=UNLIMITED,
    max_message_bytes=512 * 1024 * 1024,
)


def decode_batches(data: bytes | bytearray | memoryview) -> list[tuple[int, MetadataRecord]]:
    """(offset, record) for every record of the whole batches in ``data``; a torn tail is
    ignored (the next fetch returns it whole). Raises MetadataRecordError on a bad value."""
    headers, _ = scan_valid_prefix(data)
    out: list[tuple[int, MetadataRecord]] = []
    for header in headers:
        if header.is_control:
            continue
        for record in iter_records(data, header):
            if record.value is None:
                raise MetadataRecordError(f"metadata record at offset {record.offset} has no value")
            out.append((record.offset, decode(record.value)))
    return out


class MetadataLog:
    """Append metadata records durably; read them back as records or as raw batches."""

    def __init__(self, data_dir: Path, now_ms: int) -> None:
        self.directory = data_dir / METADATA_DIR
        self._log = PartitionLog.open(self.directory, METADATA_LOG_CONFIG, now_ms)

    @property
    def end_offset(self) -> int:
        """The offset the next record gets (the high watermark: everything is committed)."""
        return self._log.log_end_offset

    def append(self, records: Sequence[MetadataRecord], now_ms: int) -> int:
        """Append ``records`` as one batch, fsync, and return the offset of the last one."""
        batch = bytearray(
            build_batch(
                [Record(i, now_ms, None, encode(record)) for i, record in enumerate(records)],
                base_offset=0,
            )
        )
        result = self._log.append(batch, validate_batches(batch), now_ms)
        self._log.flush()
        return result.last_offset

    def read(self, offset: int, max_bytes: int) -> bytes:
        """Whole batches from ``offset`` (at least one), for a broker's metadata Fetch."""
        return bytes(self._log.read(offset, max_bytes).records)

    def replay(self, from_offset: int = 0) -> Iterator[tuple[int, MetadataRecord]]:
        """Every record from ``from_offset`` on, in log order."""
        offset = max(from_offset, self._log.log_start_offset)
        while offset < self._log.log_end_offset:
            data = self._log.read(offset, _READ_BYTES).records
            headers, _ = scan_valid_prefix(data)
            if not headers:
                break
            for record_offset, record in decode_batches(data):
                if record_offset >= offset:
                    yield record_offset, record
            offset = headers[-1].next_offset

    def close(self) -> None:
        self._log.close()
