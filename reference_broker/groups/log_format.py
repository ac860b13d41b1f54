"""The records of ``__consumer_offsets``: which partition holds a group, and the key/value bytes.

The coordinator keeps committed offsets and group metadata in an internal compacted topic, as
Kafka does, so they survive a restart and are rebuilt by replaying the topic at start. The byte
layouts are Kafka's own (its ``OffsetCommitKey``, ``OffsetCommitValue``, ``GroupMetadataKey`` and
``GroupMetadataValue`` message definitions, non-flexible versions), so Kafka's tools can read
them and compaction keeps exactly what Kafka's would:

============================  ===============================================================
key (version, then fields)    value (version, then fields)
============================  ===============================================================
offset commit: int16 ``1``,   int16 ``3``, int64 offset, int32 leader epoch (-1: none),
string group, string topic,   string metadata, int64 commit timestamp (ms).
int32 partition               Or int16 ``1``, int64 offset, string metadata, int64 commit
                              timestamp, int64 expire timestamp: written only for commits that
                              asked for a retention time (OffsetCommit v2-v4).
group metadata: int16 ``2``,  int16 ``3``, string protocol type, int32 generation, nullable
string group                  string protocol, nullable string leader, int64 state timestamp,
                              int32 member count, then per member: string member id, nullable
                              string group instance id, string client id, string client host,
                              int32 rebalance timeout, int32 session timeout, bytes
                              subscription, bytes assignment
============================  ===============================================================

Strings are an int16 length and UTF-8 bytes (-1 for null); bytes are an int32 length and the
bytes. A record with a null value is a tombstone: it deletes that committed offset, or that
group's metadata. One key per (group, topic, partition) and one per group means compaction keeps
the latest commit of each partition and the latest metadata of each group.

A group lives in partition ``abs(hash(group_id)) % partitions`` of the topic, with Java's
``String.hashCode`` and Kafka's ``Utils.abs`` (GroupMetadataManager.partitionFor), so a group
maps to the same partition number as on Kafka.
"""

from __future__ import annotations

import struct

import attrs

OFFSETS_TOPIC = "__consumer_offsets"

OFFSET_KEY_VERSION = 1  # versions 0 and 1 are both offset-commit keys
GROUP_KEY_VERSION = 2
OFFSET_VALUE_VERSION = 3
OFFSET_VALUE_WITH_EXPIRY_VERSION = 1
GROUP_VALUE_VERSION = 3

NO_LEADER_EPOCH = -1

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")


class FormatError(ValueError):
    """A ``__consumer_offsets`` record this broker cannot decode."""


def java_string_hashcode(text: str) -> int:
    """``java.lang.String.hashCode``: 31-polynomial over UTF-16 code units, as a signed int32."""
    units = text.encode("utf-16-be")
    h = 0
    for i in range(0, len(units), 2):
        h = (31 * h + ((units[i] << 8) | units[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def partition_for(group_id: str, partitions: int) -> int:
    """The ``__consumer_offsets`` partition of a group (Kafka's GroupMetadataManager.partitionFor:
    ``Utils.abs(groupId.hashCode) % groupMetadataTopicPartitionCount``, where ``Utils.abs`` maps
    Integer.MIN_VALUE to 0)."""
    h = java_string_hashcode(group_id)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


# --- decoded forms -----------------------------------------------------------------------------


@attrs.frozen(slots=True)
class OffsetKey:
    group: str
    topic: str
    partition: int


@attrs.frozen(slots=True)
class GroupKey:
    group: str


@attrs.frozen(slots=True)
class OffsetValue:
    """A committed offset as stored (and as OffsetFetch returns it)."""

    offset: int
    leader_epoch: int = NO_LEADER_EPOCH
    metadata: str = ""
    commit_timestamp_ms: int = 0
    expire_timestamp_ms: int | None = None  # only from OffsetCommit v2-v4 with a retention time


@attrs.frozen(slots=True)
class MemberValue:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    subscription: bytes
    assignment: bytes


@attrs.frozen(slots=True)
class GroupValue:
    protocol_type: str
    generation: int
    protocol: str | None
    leader: str | None
    state_timestamp_ms: int
    members: tuple[MemberValue, ...] = ()


# --- encoding ----------------------------------------------------------------------------------


def _string(text: str | None) -> bytes:
    if text is None:
        return _I16.pack(-1)
    data = text.encode()
    if len(data) > 0x7FFF:
        raise FormatError(f"string of {len(data)} bytes is too long for an int16 length")
    return _I16.pack(len(data)) + data


def _bytes(data: bytes) -> bytes:
    return _I32.pack(len(data)) + data


def encode_offset_key(key: OffsetKey) -> bytes:
    return (
        _I16.pack(OFFSET_KEY_VERSION) + _string(key.group) + _string(key.topic)
        + _I32.pack(key.partition)
    )


def encode_group_key(key: GroupKey) -> bytes:
    return _I16.pack(GROUP_KEY_VERSION) + _string(key.group)


def encode_offset_value(value: OffsetValue) -> bytes:
    if value.expire_timestamp_ms is not None:
        return (
            _I16.pack(OFFSET_VALUE_WITH_EXPIRY_VERSION) + _I64.pack(value.offset)
            + _string(value.metadata) + _I64.pack(value.commit_timestamp_ms)
            + _I64.pack(value.expire_timestamp_ms)
        )
    return (
        _I16.pack(OFFSET_VALUE_VERSION) + _I64.pack(value.offset) + _I32.pack(value.leader_epoch)
        + _string(value.metadata) + _I64.pack(value.commit_timestamp_ms)
    )


def encode_group_value(value: GroupValue) -> bytes:
    out = bytearray(_I16.pack(GROUP_VALUE_VERSION))
    out += _string(value.protocol_type) + _I32.pack(value.generation)
    out += _string(value.protocol) + _string(value.leader) + _I64.pack(value.state_timestamp_ms)
    out += _I32.pack(len(value.members))
    for member in value.members:
        out += _string(member.member_id) + _string(member.group_instance_id)
        out += _string(member.client_id) + _string(member.client_host)
        out += _I32.pack(member.rebalance_timeout_ms) + _I32.pack(member.session_timeout_ms)
        out += _bytes(member.subscription) + _bytes(member.assignment)
    return bytes(out)


# --- decoding ----------------------------------------------------------------------------------


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise FormatError("record ends before its fields do")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def i16(self) -> int:
        return int(_I16.unpack(self._take(2))[0])

    def i32(self) -> int:
        return int(_I32.unpack(self._take(4))[0])

    def i64(self) -> int:
        return int(_I64.unpack(self._take(8))[0])

    def nullable_string(self) -> str | None:
        length = self.i16()
        if length == -1:
            return None
        try:
            return self._take(length).decode()
        except UnicodeDecodeError as exc:
            raise FormatError(f"string is not UTF-8: {exc}") from None

    def string(self) -> str:
        text = self.nullable_string()
        if text is None:
            raise FormatError("null where a string is required")
        return text

    def bytes_(self) -> bytes:
        return self._take(self.i32())

    def version(self, what: str) -> int:
        """The int16 version a value starts with; every value has versions 0 to 3."""
        version = self.i16()
        if version not in (0, 1, 2, 3):
            raise FormatError(f"unknown {what} version {version}")
        return version

    def done(self) -> None:
        if self.pos != len(self.buf):
            raise FormatError(f"{len(self.buf) - self.pos} unexpected trailing bytes")


def decode_key(data: bytes) -> OffsetKey | GroupKey:
    reader = _Reader(data)
    version = reader.i16()
    key: OffsetKey | GroupKey
    if version in (0, 1):
        key = OffsetKey(reader.string(), reader.string(), reader.i32())
    elif version == GROUP_KEY_VERSION:
        key = GroupKey(reader.string())
    else:
        raise FormatError(f"unknown key version {version}")
    reader.done()
    return key


def decode_offset_value(data: bytes) -> OffsetValue:
    reader = _Reader(data)
    version = reader.version("offset commit value")
    offset = reader.i64()
    epoch = reader.i32() if version >= 3 else NO_LEADER_EPOCH
    metadata = reader.string()
    commit_ts = reader.i64()
    expire_ts = reader.i64() if version == 1 else None
    reader.done()
    return OffsetValue(offset, epoch, metadata, commit_ts, expire_ts)


def decode_group_value(data: bytes) -> GroupValue:
    reader = _Reader(data)
    version = reader.version("group metadata value")
    protocol_type = reader.string()
    generation = reader.i32()
    protocol = reader.nullable_string()
    leader = reader.nullable_string()
    state_ts = reader.i64() if version >= 2 else -1
    count = reader.i32()
    if count < 0 or count > len(data):
        raise FormatError(f"member count {count} is impossible")
    members = []
    for _ in range(count):
        member_id = reader.string()
        instance_id = reader.nullable_string() if version >= 3 else None
        client_id = reader.string()
        client_host = reader.string()
        session_or_rebalance = reader.i32()
        if version >= 1:
            rebalance_timeout, session_timeout = session_or_rebalance, reader.i32()
        else:
            rebalance_timeout = session_timeout = session_or_rebalance
        members.append(
            MemberValue(member_id, instance_id, client_id, client_host, rebalance_timeout,
                        session_timeout, reader.bytes_(), reader.bytes_())
        )
    reader.done()
    return GroupValue(protocol_type, generation, protocol, leader, state_ts, tuple(members))
