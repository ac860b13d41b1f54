"""Record batches (magic v2) as opaque bytes: header parsing, CRC checks, offset patching.

The broker never rebuilds what a producer sent. It reads the 61-byte batch header, checks the
CRC, overwrites the base offset (bytes 0-8, outside the CRC) and stores the batch as it came, so
every compression codec works without the broker ever decompressing on the produce/fetch path.
Only compaction needs the records inside a batch; :func:`iter_records` and :func:`build_batch`
serve it.

Layout of a v2 batch (Kafka protocol guide, "Record Batch")::

    baseOffset int64 | batchLength int32 | partitionLeaderEpoch int32 | magic int8 | crc uint32
    | attributes int16 | lastOffsetDelta int32 | baseTimestamp int64 | maxTimestamp int64
    | producerId int64 | producerEpoch int16 | baseSequence int32 | recordCount int32 | records

The CRC is crc32c over everything from ``attributes`` to the end of the batch.
"""

from __future__ import annotations

import enum
import struct
import zlib
from collections.abc import Callable, Iterator
from typing import ClassVar

import attrs
import cramjam
import lz4.frame
import zstandard
from crc32c import crc32c
from kio.schema.errors import ErrorCode

HEADER_SIZE = 61
LOG_OVERHEAD = 12  # baseOffset + batchLength: the part of a batch not counted in batchLength
MAGIC_V2 = 2
NO_PRODUCER_ID = -1
NO_TIMESTAMP = -1

_HEADER = struct.Struct(">qiibIhiqqqhii")
_OFFSET = struct.Struct(">q")
_EPOCH = struct.Struct(">i")
_CRC_START = 21

# attributes bits
_COMPRESSION_MASK = 0x07
_TIMESTAMP_TYPE_BIT = 0x08
_TRANSACTIONAL_BIT = 0x10
TRANSACTIONAL_ATTRIBUTE = _TRANSACTIONAL_BIT  # a batch of a producer's transaction (KIP-98)
_CONTROL_BIT = 0x20
# KIP-534: when set, baseTimestamp holds the batch's delete horizon (the time after which the
# cleaner may drop its tombstones) and record timestamps stay relative to it.
_DELETE_HORIZON_BIT = 0x40
_ATTRIBUTES_AT = 21
_MAX_TIMESTAMP_AT = 35
_CRC_AT = 17


class Compression(enum.IntEnum):
    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4


class RecordError(Exception):
    """A record set that cannot be stored; ``error_code`` is the Kafka error to answer."""

    error_code: ClassVar[ErrorCode] = ErrorCode.corrupt_message


class CorruptRecordError(RecordError):
    """Bytes that are not a well-formed batch, or whose CRC does not match (CORRUPT_MESSAGE)."""


class InvalidRecordError(RecordError):
    """A well-formed batch that breaks a rule of the format (INVALID_RECORD)."""

    error_code = ErrorCode.invalid_record


@attrs.frozen(slots=True)
class BatchHeader:
    """The fixed header of one v2 record batch, plus where it sits in its buffer."""

    position: int
    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    @property
    def size(self) -> int:
        """Bytes the whole batch occupies."""
        return self.batch_length + LOG_OVERHEAD

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def compression(self) -> int:
        return self.attributes & _COMPRESSION_MASK

    @property
    def is_log_append_time(self) -> bool:
        return bool(self.attributes & _TIMESTAMP_TYPE_BIT)

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & _TRANSACTIONAL_BIT)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & _CONTROL_BIT)

    @property
    def delete_horizon_ms(self) -> int | None:
        """When the cleaner may drop this batch's tombstones (KIP-534), if it has set one."""
        return self.base_timestamp if self.attributes & _DELETE_HORIZON_BIT else None

    @property
    def last_sequence(self) -> int:
        if self.base_sequence < 0:
            return self.base_sequence
        return (self.base_sequence + self.last_offset_delta) % (2**31)


def parse_header(buf: bytes | bytearray | memoryview, position: int = 0) -> BatchHeader:
    """Parse the batch header at ``position``; the batch itself may still be truncated."""
    if len(buf) - position < HEADER_SIZE:
        raise CorruptRecordError(
            f"record batch at byte {position} is truncated: {len(buf) - position} bytes, "
            f"a v2 batch header alone is {HEADER_SIZE}"
        )
    fields = _HEADER.unpack_from(buf, position)
    header = BatchHeader(position, *fields)
    if header.magic != MAGIC_V2:
        raise InvalidRecordError(
            f"record batch at byte {position} has magic {header.magic}; "
            "only magic 2 (Kafka 0.11+) record batches are accepted"
        )
    if header.batch_length < HEADER_SIZE - LOG_OVERHEAD:
        raise CorruptRecordError(
            f"record batch at byte {position} declares length {header.batch_length}, "
            f"shorter than its own header"
        )
    return header


def crc_is_valid(buf: bytes | bytearray | memoryview, header: BatchHeader) -> bool:
    start = header.position + _CRC_START
    end = header.position + header.size
    return crc32c(memoryview(buf)[start:end]) == header.crc


def validate_batches(buf: bytes | bytearray | memoryview) -> list[BatchHeader]:
    """Split a produced record set into batches, rejecting anything Kafka would reject.

    Raises :class:`CorruptRecordError` for truncation or a bad CRC and
    :class:`InvalidRecordError` for a batch that is well formed but breaks the v2 rules
    (wrong magic, record count disagreeing with the offset deltas, empty batch).
    """
    headers: list[BatchHeader] = []
    position = 0
    total = len(buf)
    if total == 0:
        raise InvalidRecordError("the record set is empty")
    while position < total:
        header = parse_header(buf, position)
        if position + header.size > total:
            raise CorruptRecordError(
                f"record batch at byte {position} declares {header.size} bytes "
                f"but only {total - position} were sent"
            )
        if not crc_is_valid(buf, header):
            raise CorruptRecordError(f"record batch at byte {position} fails its CRC check")
        if header.record_count <= 0 or header.last_offset_delta != header.record_count - 1:
            raise InvalidRecordError(
                f"record batch at byte {position} holds {header.record_count} records but its "
                f"last offset delta is {header.last_offset_delta}"
            )
        headers.append(header)
        position += header.size
    return headers


def scan_valid_prefix(buf: bytes | bytearray | memoryview) -> tuple[list[BatchHeader], int]:
    """Walk stored batches and stop at the first torn or corrupt one (log recovery).

    Returns the intact batches and the number of bytes they cover; everything after that is
    what a crash left half-written.
    """
    headers: list[BatchHeader] = []
    position = 0
    total = len(buf)
    while position < total:
        try:
            header = parse_header(buf, position)
        except RecordError:
            break
        if position + header.size > total or not crc_is_valid(buf, header):
            break
        headers.append(header)
        position += header.size
    return headers, position


def patch_base_offset(buf: bytearray, header: BatchHeader, base_offset: int) -> None:
    _OFFSET.pack_into(buf, header.position, base_offset)


def patch_partition_leader_epoch(buf: bytearray, header: BatchHeader, epoch: int) -> None:
    _EPOCH.pack_into(buf, header.position + 12, epoch)


def set_log_append_time(buf: bytearray, header: BatchHeader, timestamp: int) -> BatchHeader:
    """Stamp a batch with the broker's clock (message.timestamp.type=LogAppendTime).

    As Kafka does for v2 batches, only the timestamp-type bit and maxTimestamp change; readers
    then take every record's timestamp from maxTimestamp. Both fields sit inside the CRC, so the
    CRC is recomputed.
    """
    attributes = header.attributes | _TIMESTAMP_TYPE_BIT
    struct.pack_into(">h", buf, header.position + _ATTRIBUTES_AT, attributes)
    struct.pack_into(">q", buf, header.position + _MAX_TIMESTAMP_AT, timestamp)
    crc = crc32c(memoryview(buf)[header.position + _CRC_START : header.position + header.size])
    struct.pack_into(">I", buf, header.position + _CRC_AT, crc)
    return attrs.evolve(header, attributes=attributes, max_timestamp=timestamp, crc=crc)


# --- record level: used by compaction only --------------------------------------------------


@attrs.frozen(slots=True)
class Record:
    """One record inside a batch, with its absolute offset and timestamp."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = 0
    raw = 0
    while True:
        if pos >= len(buf):
            raise CorruptRecordError("varint runs past the end of the record")
        byte = buf[pos]
        pos += 1
        raw |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift > 63:
            raise CorruptRecordError("varint longer than 10 bytes")
    return (raw >> 1) ^ -(raw & 1), pos


def _read_bytes(buf: bytes, pos: int) -> tuple[bytes | None, int]:
    length, pos = _read_varint(buf, pos)
    if length < 0:
        return None, pos
    if pos + length > len(buf):
        raise CorruptRecordError("record field runs past the end of the record")
    return bytes(buf[pos : pos + length]), pos + length


# A batch's records are decompressed only by compaction, timestamp lookups and the keyless-record
# check of compacted topics. Kafka streams them; we hold them in memory, so a batch inflating past
# this bound (a decompression bomb: a 1 MB zstd batch of zeros inflates to gigabytes) is treated as
# corrupt instead of exhausting the broker's memory.
MAX_DECOMPRESSED_BATCH_BYTES = 128 * 1024 * 1024


class _Bounded:
    """Collects decompressed output and refuses to grow past the limit."""

    def __init__(self, codec: str) -> None:
        self.codec = codec
        self.out = bytearray()

    def check(self, more: int) -> None:
        if len(self.out) + more > MAX_DECOMPRESSED_BATCH_BYTES:
            raise CorruptRecordError(
                f"{self.codec} batch inflates past {MAX_DECOMPRESSED_BATCH_BYTES} bytes"
            )

    def add(self, data: bytes) -> None:
        self.check(len(data))
        self.out += data


def _snappy_block(data: bytes, sink: _Bounded) -> None:
    # Raw snappy declares its length up front: check it before allocating.
    sink.check(int(cramjam.snappy.decompress_raw_len(data)))
    sink.add(bytes(cramjam.snappy.decompress_raw(data)))


def _snappy(data: bytes, sink: _Bounded) -> None:
    # Java clients wrap snappy in the xerial stream format: a 16-byte magic header, then
    # blocks each prefixed by a 4-byte length. librdkafka writes raw snappy.
    if data[:8] != b"\x82SNAPPY\x00":
        _snappy_block(data, sink)
        return
    pos = 16
    while pos < len(data):
        (length,) = struct.unpack_from(">i", data, pos)
        pos += 4
        _snappy_block(data[pos : pos + length], sink)
        pos += length


def _gzip(data: bytes, sink: _Bounded) -> None:
    inflater = zlib.decompressobj(wbits=47)  # 32 + 15: gzip or zlib header, as Kafka accepts
    chunk = inflater.decompress(data, MAX_DECOMPRESSED_BATCH_BYTES + 1)
    sink.add(chunk)
    if not inflater.eof:
        raise CorruptRecordError("gzip batch is truncated")


def _lz4(data: bytes, sink: _Bounded) -> None:
    decompressor = lz4.frame.LZ4FrameDecompressor()
    sink.add(decompressor.decompress(data, max_length=MAX_DECOMPRESSED_BATCH_BYTES + 1))
    if not decompressor.eof:
        raise CorruptRecordError("lz4 batch is truncated")


def _zstd(data: bytes, sink: _Bounded) -> None:
    with zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True) as reader:
        sink.add(reader.read(MAX_DECOMPRESSED_BATCH_BYTES + 1))


_DECOMPRESSORS: dict[int, Callable[[bytes, _Bounded], None]] = {
    Compression.GZIP: _gzip,
    Compression.SNAPPY: _snappy,
    Compression.LZ4: _lz4,
    Compression.ZSTD: _zstd,
}


def decompress(codec: int, data: bytes) -> bytes:
    """The records body of a batch, decompressed within MAX_DECOMPRESSED_BATCH_BYTES."""
    if codec == Compression.NONE:
        return data
    decompressor = _DECOMPRESSORS.get(codec)
    if decompressor is None:
        raise InvalidRecordError(f"unknown compression codec {codec}")
    sink = _Bounded(Compression(codec).name)
    try:
        decompressor(data, sink)
    except (cramjam.DecompressionError, zlib.error, RuntimeError, zstandard.ZstdError,
            ValueError, struct.error) as exc:
        raise CorruptRecordError(f"cannot decompress {Compression(codec).name} batch: {exc}") from None
    return bytes(sink.out)


def iter_records(buf: bytes | bytearray | memoryview, header: BatchHeader) -> Iterator[Record]:
    """Decode the records of one stored batch (decompressing when needed)."""
    body = bytes(memoryview(buf)[header.position + HEADER_SIZE : header.position + header.size])
    data = decompress(header.compression, body)
    pos = 0
    for _ in range(header.record_count):
        length, pos = _read_varint(data, pos)
        end = pos + length
        if length < 0 or end > len(data):
            raise CorruptRecordError("record length runs past the end of the batch")
        pos += 1  # record attributes, unused in v2
        ts_delta, pos = _read_varint(data, pos)
        offset_delta, pos = _read_varint(data, pos)
        key, pos = _read_bytes(data, pos)
        value, pos = _read_bytes(data, pos)
        count, pos = _read_varint(data, pos)
        headers = []
        for _ in range(count):
            hkey, pos = _read_bytes(data, pos)
            hvalue, pos = _read_bytes(data, pos)
            headers.append(((hkey or b"").decode("utf-8", "replace"), hvalue))
        if pos != end:
            raise CorruptRecordError("record body length disagrees with its fields")
        timestamp = header.max_timestamp if header.is_log_append_time else (
            header.base_timestamp + ts_delta
        )
        yield Record(header.base_offset + offset_delta, timestamp, key, value, tuple(headers))


def _varint(value: int) -> bytes:
    raw = (value << 1) ^ (value >> 63)
    out = bytearray()
    while True:
        byte = raw & 0x7F
        raw >>= 7
        if raw:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(data: bytes | None) -> bytes:
    if data is None:
        return _varint(-1)
    return _varint(len(data)) + data


def build_batch(
    records: list[Record],
    *,
    base_offset: int,
    last_offset_delta: int | None = None,
    partition_leader_epoch: int = -1,
    attributes: int = 0,
    producer_id: int = NO_PRODUCER_ID,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    delete_horizon_ms: int | None = None,
    max_timestamp: int | None = None,
) -> bytes:
    """Encode an uncompressed v2 batch holding ``records`` at their own offsets.

    ``last_offset_delta`` may exceed the last record's delta: the cleaner keeps a batch's last
    offset when it drops records, as Kafka does, so producer state stays derivable from the log.
    Any compression bits in ``attributes`` are cleared because the body is written uncompressed.
    ``delete_horizon_ms`` sets the KIP-534 delete horizon (stored as the base timestamp).
    ``max_timestamp`` overrides the largest record timestamp (see :func:`empty_batch`).
    """
    body = bytearray()
    max_ts = max((r.timestamp for r in records), default=NO_TIMESTAMP)
    if max_timestamp is not None:
        max_ts = max_timestamp
    attributes &= ~(_COMPRESSION_MASK | _DELETE_HORIZON_BIT)
    if delete_horizon_ms is None:
        base_ts = min((r.timestamp for r in records), default=NO_TIMESTAMP)
    else:
        base_ts = delete_horizon_ms
        attributes |= _DELETE_HORIZON_BIT
    for record in records:
        inner = bytearray(b"\x00")
        inner += _varint(record.timestamp - base_ts)
        inner += _varint(record.offset - base_offset)
        inner += _field(record.key)
        inner += _field(record.value)
        inner += _varint(len(record.headers))
        for hkey, hvalue in record.headers:
            inner += _field(hkey.encode())
            inner += _field(hvalue)
        body += _varint(len(inner)) + inner
    if last_offset_delta is None:
        last_offset_delta = records[-1].offset - base_offset if records else 0
    after_crc = struct.pack(
        ">hiqqqhii",
        attributes,
        last_offset_delta,
        base_ts,
        max_ts,
        producer_id,
        producer_epoch,
        base_sequence,
        len(records),
    ) + bytes(body)
    batch_length = 4 + 1 + 4 + len(after_crc)
    return (
        struct.pack(">qiib", base_offset, batch_length, partition_leader_epoch, MAGIC_V2)
        + struct.pack(">I", crc32c(after_crc))
        + after_crc
    )


def rebuild_batch(
    header: BatchHeader,
    records: list[Record],
    *,
    delete_horizon_ms: int | None = None,
    max_timestamp: int | None = None,
) -> bytes:
    """The batch of ``header`` holding only ``records`` (compaction), uncompressed: its base and
    last offsets, leader epoch, attributes and producer fields stay; see :func:`build_batch`."""
    return build_batch(
        records,
        base_offset=header.base_offset,
        last_offset_delta=header.last_offset_delta,
        partition_leader_epoch=header.partition_leader_epoch,
        attributes=header.attributes,
        producer_id=header.producer_id,
        producer_epoch=header.producer_epoch,
        base_sequence=header.base_sequence,
        delete_horizon_ms=delete_horizon_ms,
        max_timestamp=max_timestamp,
    )


def empty_batch(header: BatchHeader) -> bytes:
    """The batch of ``header`` with no records, as the cleaner keeps a producer's last batch
    (Kafka's DefaultRecordBatch.writeEmptyHeader): offsets, producer id, epoch and base
    sequence, leader epoch, timestamp type, transactional and control bits stay, and so does the
    largest timestamp, because producer expiry counts from it after a reload."""
    return rebuild_batch(header, [], max_timestamp=header.max_timestamp)


# --- control batches (KIP-98 transaction markers) ---------------------------------------------

CONTROL_ATTRIBUTES = _CONTROL_BIT | _TRANSACTIONAL_BIT
_CONTROL_KEY = struct.Struct(">hh")  # version, type (Kafka's ControlRecordType)
_END_TXN_VALUE = struct.Struct(">hi")  # version, coordinator epoch (Kafka's EndTransactionMarker)
CONTROL_RECORD_VERSION = 0


class ControlType(enum.IntEnum):
    """Kafka's ControlRecordType for transaction markers."""

    ABORT = 0
    COMMIT = 1


@attrs.frozen(slots=True)
class EndTransactionMarker:
    """The one record of a transaction marker: how the transaction ended, and the epoch of the
    coordinator that ended it (Kafka's EndTransactionMarker)."""

    control_type: ControlType
    coordinator_epoch: int

    @property
    def is_abort(self) -> bool:
        return self.control_type is ControlType.ABORT


def build_control_batch(
    producer_id: int,
    producer_epoch: int,
    marker: EndTransactionMarker,
    timestamp: int,
    base_offset: int = 0,
) -> bytes:
    """A transaction marker as Kafka's MemoryRecords.withEndTransactionMarker writes it: a batch
    with the control and transactional attributes, no sequence, and one record whose key is
    (version 0, type) and whose value is (version 0, coordinator epoch)."""
    record = Record(
        base_offset,
        timestamp,
        _CONTROL_KEY.pack(CONTROL_RECORD_VERSION, marker.control_type),
        _END_TXN_VALUE.pack(CONTROL_RECORD_VERSION, marker.coordinator_epoch),
    )
    return build_batch(
        [record], base_offset=base_offset, attributes=CONTROL_ATTRIBUTES,
        producer_id=producer_id, producer_epoch=producer_epoch,
    )


def parse_control_batch(
    buf: bytes | bytearray | memoryview, header: BatchHeader
) -> EndTransactionMarker | None:
    """The transaction marker a control batch holds; None for a control batch emptied by the
    cleaner. Raises InvalidRecordError for anything but a version-0 ABORT/COMMIT record (Kafka
    refuses unknown control record types the same way)."""
    if not header.is_control:
        raise InvalidRecordError("not a control batch")
    record = next(iter_records(buf, header), None)
    if record is None:
        return None
    if record.key is None or len(record.key) < _CONTROL_KEY.size:
        raise InvalidRecordError("control record without a (version, type) key")
    version, control_type = _CONTROL_KEY.unpack_from(record.key)
    if version != CONTROL_RECORD_VERSION or control_type not in (ControlType.ABORT, ControlType.COMMIT):
        raise InvalidRecordError(f"unknown control record version {version} type {control_type}")
    if record.value is None or len(record.value) < _END_TXN_VALUE.size:
        raise InvalidRecordError("transaction marker without a (version, coordinator epoch) value")
    value_version, coordinator_epoch = _END_TXN_VALUE.unpack_from(record.value)
    if value_version != CONTROL_RECORD_VERSION:
        raise InvalidRecordError(f"unknown transaction marker version {value_version}")
    return EndTransactionMarker(ControlType(control_type), coordinator_epoch)
