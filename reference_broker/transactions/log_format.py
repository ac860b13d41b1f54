"""The records of ``__transaction_state``: which partition holds a transactional id, and the
key/value bytes.

The coordinator keeps each transactional id's metadata in an internal compacted topic, as Kafka
does (KIP-98), so a new coordinator (a restart, or another broker taking over the partition's
leadership) rebuilds it by replaying the partition. The byte layouts are Kafka's
``TransactionLogKey`` and ``TransactionLogValue`` message definitions
(transaction-coordinator/src/main/resources/common/message/), so Kafka's tools can read them and
compaction keeps what Kafka's would. Each starts with its int16 version:

* key, version 0 (the only one): string ``TransactionalId`` (int16 length, UTF-8).
* value, version 0 (what Kafka writes while the ``transaction.version`` feature is 0): int64
  ``ProducerId``, int16 ``ProducerEpoch``, int32 ``TransactionTimeoutMs``, int8
  ``TransactionStatus`` (:class:`~reference_broker.transactions.state.TransactionState`),
  nullable array ``TransactionPartitions`` (int32 count, -1 for null; per topic: string topic,
  int32 count and int32 partition ids), int64 ``TransactionLastUpdateTimestampMs``, int64
  ``TransactionStartTimestampMs``.
* value, version 1 (``transaction.version`` >= 1, KIP-890; the first flexible version): the
  same fields in their compact forms (unsigned-varint lengths plus one, 0 for null; a tagged
  field section after each partition entry), then the record's tagged fields, each written only
  when it differs from its default as Kafka's generated serializer does: tag 0
  ``PreviousProducerId`` (int64, default -1), tag 1 ``NextProducerId`` (int64, default -1),
  tag 2 ``ClientTransactionVersion`` (int16, default 0).

Kafka keeps the partitions null for Empty (TransactionLog.valueToBytes) and ignores them when
reading an Empty value; the last producer epoch is not stored at all (a coordinator that loads
the record starts with -1, KIP-360). A record with a null value is a tombstone: the transactional
id expired (transactional.id.expiration.ms).

A transactional id lives in partition ``Utils.abs(transactionalId.hashCode) %
transaction.state.log.num.partitions`` (TransactionStateManager.partitionFor), the same
function the group coordinator uses for ``__consumer_offsets``.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

import attrs
from kio.serial.errors import DecodeError
from kio.serial.readers import (
    read_compact_array_length,
    read_compact_string,
    read_int8,
    read_int16,
    read_int32,
    read_int64,
    read_legacy_array_length,
    read_legacy_string,
    read_unsigned_varint,
)
from kio.serial.writers import write_unsigned_varint
from kio.static.primitive import uvarint

from reference_broker.groups.log_format import java_string_hashcode
from reference_broker.transactions.state import TransactionState

TRANSACTION_STATE_TOPIC = "__transaction_state"
DEFAULT_PARTITIONS = 50  # transaction.state.log.num.partitions

KEY_VERSION = 0
NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1

TopicPartition = tuple[str, int]
_T = TypeVar("_T")

_I8 = struct.Struct(">b")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")

# The tagged fields of version 1: tag -> (field, struct, default).
_TAGS: Mapping[int, tuple[str, struct.Struct, int]] = {
    0: ("previous_producer_id", _I64, NO_PRODUCER_ID),
    1: ("next_producer_id", _I64, NO_PRODUCER_ID),
    2: ("client_transaction_version", _I16, 0),
}


class FormatError(ValueError):
    """A ``__transaction_state`` record this broker cannot decode."""


def partition_for(transactional_id: str, partitions: int = DEFAULT_PARTITIONS) -> int:
    """The ``__transaction_state`` partition of a transactional id (Kafka's
    TransactionStateManager.partitionFor: ``Utils.abs(transactionalId.hashCode) %
    transactionTopicPartitionCount``, where ``Utils.abs`` maps Integer.MIN_VALUE to 0)."""
    h = java_string_hashcode(transactional_id)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


@attrs.frozen(slots=True)
class TxnValue:
    """One ``TransactionLogValue``: a transactional id's metadata as stored.

    ``partitions`` maps each topic to its partition ids in the order written; None is the null
    array Kafka writes for Empty.
    """

    producer_id: int
    producer_epoch: int
    timeout_ms: int
    state: TransactionState
    partitions: tuple[tuple[str, tuple[int, ...]], ...] | None
    last_update_ms: int
    start_ms: int
    previous_producer_id: int = NO_PRODUCER_ID  # version 1+ only (tag 0)
    next_producer_id: int = NO_PRODUCER_ID  # version 1+ only (tag 1)
    client_transaction_version: int = 0  # version 1+ only (tag 2)

    def topic_partitions(self) -> frozenset[TopicPartition]:
        """The partitions as (topic, partition) pairs (none for Empty, as Kafka reads it)."""
        if self.partitions is None or self.state is TransactionState.EMPTY:
            return frozenset()
        return frozenset((topic, p) for topic, ids in self.partitions for p in ids)


def group_partitions(partitions: Iterable[TopicPartition]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """(topic, partition) pairs as the value's per-topic entries, sorted (Kafka groups them by
    topic in hash order; any order decodes the same)."""
    by_topic: dict[str, list[int]] = {}
    for topic, partition in sorted(partitions):
        by_topic.setdefault(topic, []).append(partition)
    return tuple((topic, tuple(ids)) for topic, ids in by_topic.items())


# --- encoding ----------------------------------------------------------------------------------


def _legacy_string(text: str) -> bytes:
    data = text.encode()
    if len(data) > 0x7FFF:
        raise FormatError(f"string of {len(data)} bytes is too long for an int16 length")
    return _I16.pack(len(data)) + data


def _uvarint(out: io.BytesIO, value: int) -> None:
    write_unsigned_varint(out, uvarint(value))


def encode_key(transactional_id: str) -> bytes:
    return _I16.pack(KEY_VERSION) + _legacy_string(transactional_id)


def encode_value(value: TxnValue, version: int) -> bytes:
    """``value`` as a ``TransactionLogValue`` of ``version`` (0, or 1 for the flexible form)."""
    if version not in (0, 1):
        raise FormatError(f"unknown transaction log value version {version}")
    flexible = version >= 1
    out = io.BytesIO()
    out.write(_I16.pack(version) + _I64.pack(value.producer_id) + _I16.pack(value.producer_epoch))
    out.write(_I32.pack(value.timeout_ms) + _I8.pack(value.state.value))
    if value.partitions is None:
        out.write(b"\x00" if flexible else _I32.pack(-1))
    elif flexible:
        _uvarint(out, len(value.partitions) + 1)
        for topic, ids in value.partitions:
            data = topic.encode()
            _uvarint(out, len(data) + 1)
            out.write(data)
            _uvarint(out, len(ids) + 1)
            out.write(b"".join(_I32.pack(p) for p in ids) + b"\x00")  # no tagged fields
    else:
        out.write(_I32.pack(len(value.partitions)))
        for topic, ids in value.partitions:
            out.write(_legacy_string(topic) + _I32.pack(len(ids)))
            out.write(b"".join(_I32.pack(p) for p in ids))
    out.write(_I64.pack(value.last_update_ms) + _I64.pack(value.start_ms))
    if flexible:
        tagged = [(tag, packer.pack(getattr(value, name)))
                  for tag, (name, packer, default) in _TAGS.items()
                  if getattr(value, name) != default]
        _uvarint(out, len(tagged))
        for tag, data in tagged:
            _uvarint(out, tag)
            _uvarint(out, len(data))
            out.write(data)
    return out.getvalue()


# --- decoding ----------------------------------------------------------------------------------


class _Reader:
    """kio's primitive readers over one record, turning their errors into FormatError."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def read(self, reader: Callable[[bytes, int], tuple[_T, int]]) -> _T:
        try:
            value, size = reader(self.buf, self.pos)  # kio returns the bytes it read
        except (DecodeError, UnicodeDecodeError, ValueError) as exc:
            raise FormatError(f"bad field at byte {self.pos}: {exc}") from None
        self.pos += size
        return value

    def count(self, compact: bool) -> int | None:
        """An array length (None: null), refusing counts the remaining bytes cannot hold."""
        length = self.read(read_compact_array_length if compact else read_legacy_array_length)
        if length is not None and (length < -1 or length > len(self.buf) - self.pos):
            raise FormatError(f"array length {length} is impossible")
        return None if length is None or length == -1 else int(length)

    def skip_tagged_fields(self) -> dict[int, bytes]:
        fields: dict[int, bytes] = {}
        for _ in range(self.read(read_unsigned_varint)):
            tag = self.read(read_unsigned_varint)
            size = self.read(read_unsigned_varint)
            if self.pos + size > len(self.buf):
                raise FormatError("tagged field ends after the record")
            fields[tag] = self.buf[self.pos : self.pos + size]
            self.pos += size
        return fields

    def done(self) -> None:
        if self.pos != len(self.buf):
            raise FormatError(f"{len(self.buf) - self.pos} unexpected trailing bytes")


def decode_key(data: bytes) -> str:
    """The transactional id of a key; FormatError for versions other than 0 (Kafka skips such
    records with a warning while loading: UnknownKey)."""
    reader = _Reader(data)
    version = reader.read(read_int16)
    if version != KEY_VERSION:
        raise FormatError(f"unknown transaction log key version {version}")
    transactional_id = reader.read(read_legacy_string)
    reader.done()
    return transactional_id


def decode_value(data: bytes) -> TxnValue:
    reader = _Reader(data)
    version = reader.read(read_int16)
    if version not in (0, 1):
        raise FormatError(f"unknown transaction log value version {version}")
    flexible = version >= 1
    producer_id = reader.read(read_int64)
    epoch = reader.read(read_int16)
    timeout = reader.read(read_int32)
    status = reader.read(read_int8)
    try:
        state = TransactionState(status)
    except ValueError:
        raise FormatError(f"unknown transaction state id {status}") from None
    partitions: tuple[tuple[str, tuple[int, ...]], ...] | None = None
    count = reader.count(flexible)
    if count is not None:
        entries = []
        for _ in range(count):
            topic = reader.read(read_compact_string if flexible else read_legacy_string)
            ids = tuple(reader.read(read_int32) for _ in range(reader.count(flexible) or 0))
            if flexible:
                reader.skip_tagged_fields()
            entries.append((topic, ids))
        partitions = tuple(entries)
    last_update = reader.read(read_int64)
    start = reader.read(read_int64)
    tags: dict[str, int] = {}
    if flexible:
        for tag, raw in reader.skip_tagged_fields().items():
            if tag in _TAGS:
                name, packer, _ = _TAGS[tag]
                if len(raw) != packer.size:
                    raise FormatError(f"tagged field {tag} has {len(raw)} bytes")
                tags[name] = int(packer.unpack(raw)[0])
    reader.done()
    return TxnValue(producer_id, epoch, timeout, state, partitions, last_update, start, **tags)
