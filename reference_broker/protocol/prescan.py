"""Refuse array lengths a request cannot hold before kio's native reader allocates for them.

kio's Rust reader reserves room for an array's declared element count before reading any
element. A 30-byte request declaring an array of 2**34 elements (a five-byte compact length)
makes it ask for 128 GiB, the allocation fails, and Rust aborts the whole broker process, which
no ``except`` can catch (found by tests/reference_broker/test_bad_input.py). Smaller counts
"only" reserve gigabytes of address space.

Kafka's generated readers make the same check before allocating ("Tried to allocate a
collection of size N, but there are only M bytes remaining."): every array element takes at
least one byte on the wire, so a count larger than the bytes left cannot be honest. This module
walks a request body with the same schema rules kio's writer uses (:mod:`kio.serial._serialize`)
and checks each array's count against the bytes remaining. It validates nothing else: when the
bytes do not follow the schema it stops and lets kio report the error.
"""

from __future__ import annotations

import dataclasses
import struct
import threading
import types
import typing
from collections.abc import Callable
from typing import Any

from reference_broker.protocol.api_keys import ApiKey

# What a request arrives as: bytes, or a view into the bytes the socket delivered (framing.py).
Bytes = bytes | memoryview
# A field scanner: (buffer, position, end) -> position after the field.
Scan = Callable[[Bytes, int, int], int]

_FIXED_SIZES = {
    "int8": 1, "uint8": 1, "bool": 1,
    "int16": 2, "uint16": 2, "error_code": 2,
    "int32": 4, "uint32": 4, "timedelta_i32": 4,
    "int64": 8, "uint64": 8, "float64": 8, "timedelta_i64": 8, "datetime_i64": 8,
    "uuid": 16,
}
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_MAX_UVARINT_BYTES = 5


class ArrayTooLongError(ValueError):
    """An array declares more elements than there are bytes left to hold them."""


class _Stop(Exception):
    """The bytes do not follow the schema; kio will say how."""


def _uvarint(buf: Bytes, pos: int, end: int) -> tuple[int, int]:
    if pos < end and buf[pos] < 0x80:  # one byte: almost every length and count
        return buf[pos], pos + 1
    value = 0
    for shift in range(0, 7 * _MAX_UVARINT_BYTES, 7):
        if pos >= end:
            raise _Stop
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
    raise _Stop


def _skip(pos: int, size: int, end: int) -> int:
    if size < 0 or pos + size > end:
        raise _Stop
    return pos + size


def _fixed(size: int) -> Scan:
    return lambda buf, pos, end: _skip(pos, size, end)


def _compact_blob(buf: Bytes, pos: int, end: int) -> int:
    length, pos = _uvarint(buf, pos, end)
    return pos if length == 0 else _skip(pos, length - 1, end)


def _legacy_string(buf: Bytes, pos: int, end: int) -> int:
    if pos + 2 > end:
        raise _Stop
    (length,) = _I16.unpack_from(buf, pos)
    return pos + 2 if length < 0 else _skip(pos + 2, length, end)


def _legacy_bytes(buf: Bytes, pos: int, end: int) -> int:
    if pos + 4 > end:
        raise _Stop
    (length,) = _I32.unpack_from(buf, pos)
    return pos + 4 if length < 0 else _skip(pos + 4, length, end)


def _primitive(kafka_type: str, flexible: bool) -> Scan:
    if kafka_type in _FIXED_SIZES:
        return _fixed(_FIXED_SIZES[kafka_type])
    if kafka_type in ("string", "bytes", "records"):
        if flexible:
            return _compact_blob
        return _legacy_string if kafka_type == "string" else _legacy_bytes
    raise TypeError(f"no scanner for kio field type {kafka_type!r}")


def _array(element: Scan, flexible: bool, field: str, element_size: int | None) -> Scan:
    def scan(buf: Bytes, pos: int, end: int) -> int:
        if flexible:
            count, pos = _uvarint(buf, pos, end)
            count -= 1  # compact arrays store count + 1; 0 means null
        else:
            if pos + 4 > end:
                raise _Stop
            (count,) = _I32.unpack_from(buf, pos)
            pos += 4
        if count > end - pos:
            raise ArrayTooLongError(
                f"array {field} declares {count} elements but only {end - pos} bytes remain"
            )
        if element_size is not None:
            return _skip(pos, max(count, 0) * element_size, end)
        for _ in range(count):
            pos = element(buf, pos, end)
        return pos

    return scan


def _nullable_struct(inner: Scan) -> Scan:
    # KIP-893: a nullable struct is preceded by an int8 marker, -1 for null.
    def scan(buf: Bytes, pos: int, end: int) -> int:
        if pos >= end:
            raise _Stop
        marker = buf[pos]
        return pos + 1 if marker == 0xFF else inner(buf, pos + 1, end)

    return scan


def _field_scanner(field: dataclasses.Field[Any], tp: Any, flexible: bool, tagged: bool) -> Scan:
    args = typing.get_args(tp)
    optional = typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args
    if optional:
        (tp,) = [arg for arg in args if arg is not type(None)]
    array = typing.get_origin(tp) is tuple
    inner = typing.get_args(tp)[0] if array else tp
    element_size = None
    if dataclasses.is_dataclass(inner):
        element = entity_scanner(typing.cast(type[Any], inner))
        if not array and optional and not tagged:
            element = _nullable_struct(element)
    else:
        kafka_type = str(field.metadata["kafka_type"])
        element = _primitive(kafka_type, flexible)
        element_size = _FIXED_SIZES.get(kafka_type)
    return _array(element, flexible, field.name, element_size) if array else element


_SCANNERS: dict[type[Any], Scan] = {}


def entity_scanner(cls: type[Any]) -> Scan:
    """A scanner for one kio entity class (request body or nested struct), built once."""
    scanner = _SCANNERS.get(cls)
    if scanner is None:
        scanner = _SCANNERS[cls] = _build_entity_scanner(cls)
    return scanner


def _build_entity_scanner(cls: type[Any]) -> Scan:
    flexible = bool(cls.__flexible__)
    hints = typing.get_type_hints(cls)
    plain: list[Scan] = []
    tagged: dict[int, Scan] = {}
    for field in dataclasses.fields(cls):
        tag = field.metadata.get("tag")
        if cls.__name__ == "RequestHeader" and field.name == "client_id":
            scan: Scan = _legacy_string  # a legacy string even in the flexible header v2 (KIP-482)
        else:
            scan = _field_scanner(field, hints[field.name], flexible, tag is not None)
        if tag is None:
            plain.append(scan)
        else:
            tagged[int(tag)] = scan

    def scan_entity(buf: Bytes, pos: int, end: int) -> int:
        for scan_field in plain:
            pos = scan_field(buf, pos, end)
        if not flexible:
            return pos
        count_at = pos
        count, pos = _uvarint(buf, pos, end)
        for _ in range(count):
            start = pos
            tag, pos = _uvarint(buf, pos, end)
            size, pos = _uvarint(buf, pos, end)
            field_end = _skip(pos, size, end)
            known = tagged.get(tag)
            if known is not None:
                if _unknown.found is None:
                    known(buf, pos, field_end)
                else:  # inside a known tagged field nothing is removed (its size would change)
                    saved, _unknown.found = _unknown.found, None
                    try:
                        known(buf, pos, field_end)
                    finally:
                        _unknown.found = saved
            elif _unknown.found is not None:
                _unknown.found.append((count_at, start, field_end))
            pos = field_end
        return pos

    return scan_entity


def body_scanner(cls: type[Any]) -> Scan:
    """The scanner :func:`check_array_lengths` runs on a request body: hand-written for
    Produce, the generic walk of :func:`entity_scanner` for everything else."""
    scanner = _BODY_SCANNERS.get(cls)
    if scanner is None:
        scanner = _BODY_SCANNERS[cls] = _produce_scanner(cls) or entity_scanner(cls)
    return scanner


_BODY_SCANNERS: dict[type[Any], Scan] = {}


# --- Unknown tagged fields (KIP-482) --------------------------------------------------------------
#
# A receiver skips the tagged fields it does not know: that is how a newer client talks to an
# older broker. kio's reader refuses them instead ("Unknown tagged field tag: 99"), so a frame
# it refuses for that reason is walked once more, recording each unknown tag's bytes, and
# decoded again without them. Only the rare frame that carries one pays for the walk.


class _UnknownTags(threading.local):
    # While without_unknown_tags walks a frame: (position of the tagged-field count, start and
    # end of one unknown tag's bytes), in the order met.
    found: list[tuple[int, int, int]] | None = None


_unknown = _UnknownTags()


def encode_uvarint(value: int) -> bytes:
    """An unsigned varint, as flexible versions encode counts, lengths and tags (KIP-482)."""
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def without_unknown_tags(header: type[Any], body: type[Any], buf: Bytes) -> bytes | None:
    """The frame ``buf`` (a ``header`` then a ``body``, e.g. a request without its size prefix)
    with every tagged field its schema does not know removed, and each tagged-field count
    lowered to match; None when it has none, or does not follow the schema (kio then says how).

    An unknown tag nested inside a *known* tagged field is not removed (the known field's size
    would change too); kio still refuses such a frame, as malformed."""
    found: list[tuple[int, int, int]] = []
    _unknown.found = found
    try:
        pos = entity_scanner(header)(buf, 0, len(buf))
        entity_scanner(body)(buf, pos, len(buf))
    except (_Stop, ArrayTooLongError):
        return None
    finally:
        _unknown.found = None
    if not found:
        return None
    removed: dict[int, int] = {}
    for count_at, _, _ in found:
        removed[count_at] = removed.get(count_at, 0) + 1
    out = bytearray()
    at = 0
    for count_at, start, end in found:
        if count_at in removed:  # the first unknown tag of this buffer: rewrite its count
            count, count_end = _uvarint(buf, count_at, len(buf))
            out += buf[at:count_at]
            out += encode_uvarint(count - removed.pop(count_at))
            at = count_end
        out += buf[at:start]
        at = end
    out += buf[at:]
    return bytes(out)


# --- Produce, by hand -------------------------------------------------------------------------
#
# Why: the generic walk above costs about 2.5 µs on a one-message Produce v10 request (a closure
# call per field, a loop per varint), about a fifth of the broker's whole per-request cost when
# every message is its own request. Produce is the one API sent at that rate, so it gets this
# straight-line copy of the same walk. It makes exactly the same checks, in the same order, with
# the same messages: tests/reference_broker/protocol/test_prescan.py compares the two on valid
# and mangled requests of every Produce version.

_PRODUCE_KEY = int(ApiKey.PRODUCE)
_PRODUCE_FIELDS = (("transactional_id", "acks", "timeout", "topic_data"),
                   ("name", "partition_data"), ("index", "records"))  # fmt: skip


def _produce_scanner(cls: type[Any]) -> Scan | None:
    """The hand-written scanner if ``cls`` is a Produce request body of the layout it knows
    (versions 3-12: named topics, no tagged fields), else None."""
    if getattr(cls, "__api_key__", None) != _PRODUCE_KEY or cls.__name__ != "ProduceRequest":
        return None
    topic = typing.get_type_hints(cls).get("topic_data")
    topic_cls = typing.get_args(topic)[0] if typing.get_origin(topic) is tuple else None
    part = typing.get_type_hints(topic_cls).get("partition_data") if topic_cls else None
    part_cls = typing.get_args(part)[0] if typing.get_origin(part) is tuple else None
    layout = []
    for entity in (cls, topic_cls, part_cls):
        if entity is None or not dataclasses.is_dataclass(entity):
            return None
        fields = dataclasses.fields(entity)
        if any("tag" in field.metadata for field in fields):
            return None
        layout.append(tuple(field.name for field in fields))
    if tuple(layout) != _PRODUCE_FIELDS:
        return None
    return _scan_produce_flexible if cls.__flexible__ else _scan_produce_legacy


def _scan_tags(buf: Bytes, pos: int, end: int) -> int:
    """Skip a tagged-field buffer of a struct with no known tags (each tag's value by size)."""
    count, pos = _uvarint(buf, pos, end)
    for _ in range(count):
        _, pos = _uvarint(buf, pos, end)
        size, pos = _uvarint(buf, pos, end)
        pos = _skip(pos, size, end)
    return pos


def _too_long(field: str, count: int, remaining: int) -> ArrayTooLongError:
    return ArrayTooLongError(
        f"array {field} declares {count} elements but only {remaining} bytes remain"
    )


def _scan_produce_legacy(buf: Bytes, pos: int, end: int) -> int:
    pos = _legacy_string(buf, pos, end)  # transactional_id
    pos = _skip(pos, 6, end)  # acks, timeout
    if pos + 4 > end:
        raise _Stop
    (topics,) = _I32.unpack_from(buf, pos)
    pos += 4
    if topics > end - pos:
        raise _too_long("topic_data", topics, end - pos)
    for _ in range(topics):
        pos = _legacy_string(buf, pos, end)  # name
        if pos + 4 > end:
            raise _Stop
        (partitions,) = _I32.unpack_from(buf, pos)
        pos += 4
        if partitions > end - pos:
            raise _too_long("partition_data", partitions, end - pos)
        for _ in range(partitions):
            pos = _legacy_bytes(buf, _skip(pos, 4, end), end)  # index, records
    return pos


def _scan_produce_flexible(buf: Bytes, pos: int, end: int) -> int:
    # Varints are read inline when they take one byte (any length or count below 128), the
    # common case; _uvarint handles the rest. "pos > end" after a skip is _skip's bounds check.
    if pos >= end:
        raise _Stop
    length = buf[pos]  # transactional_id
    if length < 0x80:
        pos += 1
    else:
        length, pos = _uvarint(buf, pos, end)
    if length:
        pos += length - 1
    pos += 6  # acks, timeout
    if pos >= end:
        raise _Stop
    topics = buf[pos]
    if topics < 0x80:
        pos += 1
    else:
        topics, pos = _uvarint(buf, pos, end)
    topics -= 1
    if topics > end - pos:
        raise _too_long("topic_data", topics, end - pos)
    for _ in range(topics):
        if pos >= end:
            raise _Stop
        length = buf[pos]  # name
        if length < 0x80:
            pos += 1
        else:
            length, pos = _uvarint(buf, pos, end)
        if length:
            pos += length - 1
        if pos >= end:
            raise _Stop
        partitions = buf[pos]
        if partitions < 0x80:
            pos += 1
        else:
            partitions, pos = _uvarint(buf, pos, end)
        partitions -= 1
        if partitions > end - pos:
            raise _too_long("partition_data", partitions, end - pos)
        for _ in range(partitions):
            pos += 4  # index
            if pos >= end:
                raise _Stop
            length = buf[pos]  # records
            if length < 0x80:
                pos += 1
            else:
                length, pos = _uvarint(buf, pos, end)
            if length:
                pos += length - 1
            pos = pos + 1 if pos < end and buf[pos] == 0 else _scan_tags(buf, pos, end)
        pos = pos + 1 if pos < end and buf[pos] == 0 else _scan_tags(buf, pos, end)
    return pos + 1 if pos < end and buf[pos] == 0 else _scan_tags(buf, pos, end)


def check_array_lengths(cls: type[Any], buf: Bytes, offset: int) -> None:
    """Raise ArrayTooLongError if any array in the ``cls`` body at ``offset`` declares more
    elements than the bytes after it could hold; anything else is left to kio."""
    try:
        body_scanner(cls)(buf, offset, len(buf))
    except _Stop:
        pass
