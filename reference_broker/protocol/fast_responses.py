"""Hand-written encoders for the two hot responses, Produce and Fetch.

Why this exists: kio's generic writer walks the dataclass field by field through Python
closures, one ``BytesIO.write`` per primitive, and it can only run after
:func:`~reference_broker.protocol.codec.build_response` has turned the handler's dict into
frozen dataclasses. For a one-message Produce request that pair cost about 14 µs, half of the
broker's whole per-request cost (docs/benchmarks.md, "Profiling"); the encoder below packs the
same bytes straight from the dict in about 1 µs. For Fetch the generic path also copies every
stored batch into a ``BytesIO`` and out again; here the batches stay separate chunks of the
returned list, so the driver hands them to the socket as they came from the log.

Contract: :func:`encode_fast` returns exactly the bytes ``encode_response(correlation_id,
build_response(api_key, api_version, data))`` would (size prefix and response header
included), or None when it does not handle ``data``'s shape, and then the caller takes the
generic path. It is deliberately *stricter* than kio, never more lenient: anything unusual
(error messages, record errors, non-default tagged fields, values of a type the handlers do not
produce, a missing required key, a value kio would refuse) falls back rather than being
encoded here, so the generic path stays the reference for every corner and raises its own
errors. tests/reference_broker/protocol/test_fast_responses.py checks byte identity with kio
for every version the broker advertises.

Layouts are Kafka's ProduceResponse.json (versions 3-12 here, flexible from 9) and
FetchResponse.json (4-16, flexible from 12). Flexible versions use compact arrays, strings and
bytes (unsigned varint length + 1, 0 for null), end every struct with a tagged-field buffer
(one byte 0 when no tagged field differs from its default), and use response header v1
(correlation id + its own empty tag buffer); the others use header v0 (correlation id only).
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Mapping
from typing import Any

from kio.schema.errors import ErrorCode

from reference_broker.protocol.api_keys import ApiKey
from reference_broker.protocol.codec import build_response, encode_response

PRODUCE = int(ApiKey.PRODUCE)  # plain ints: compared on every response
FETCH = int(ApiKey.FETCH)
PRODUCE_VERSIONS = range(3, 13)
FETCH_VERSIONS = range(4, 17)
_PRODUCE_FLEXIBLE_FROM = 9
_FETCH_FLEXIBLE_FROM = 12
_FETCH_TOPIC_IDS_FROM = 13

# A response as the driver writes it: chunks whose concatenation is the framed response.
Chunks = list[bytes | bytearray | memoryview]

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_HEADER_V0 = struct.Struct(">ii")  # size, correlation id
_HEADER_V1 = struct.Struct(">iiB")  # size, correlation id, empty tag buffer
_TOP_V7 = struct.Struct(">ihi")  # throttle_time, error_code, session_id
# Produce partition: index, error_code, base_offset, log_append_time[, log_start_offset (v5+)]
_PRODUCE_PARTITION_V3 = struct.Struct(">ihqq")
_PRODUCE_PARTITION_V5 = struct.Struct(">ihqqq")
# Fetch partition: index, error_code, high_watermark, last_stable_offset[, log_start_offset]
_FETCH_PARTITION_V4 = struct.Struct(">ihqq")
_FETCH_PARTITION_V5 = struct.Struct(">ihqqq")
_ABORTED_TXN = struct.Struct(">qq")
_NULL_UUID = bytes(16)

# v8 appended two fields after log_start_offset: record_errors (empty) and error_message (null).
_PRODUCE_V8_TAIL = b"\x00\x00\x00\x00\xff\xff"  # int32 count 0, int16 length -1
_PRODUCE_V9_TAIL = b"\x01\x00\x00"  # compact count 0, compact null string, empty tag buffer

# The keys each dict may carry. A key outside these sets (a tagged field such as
# current_leader or node_endpoints, or anything new a handler starts sending) sends the
# response down the generic path, which knows every field of every version.
_PRODUCE_KEYS = frozenset({"responses", "throttle_time"})
_PRODUCE_TOPIC_KEYS = frozenset({"name", "partition_responses"})
_PRODUCE_PARTITION_KEYS = frozenset(
    {"index", "error_code", "base_offset", "log_append_time", "log_start_offset",
     "record_errors", "error_message"}
)  # fmt: skip
_FETCH_KEYS = frozenset({"throttle_time", "error_code", "session_id", "responses"})
_FETCH_TOPIC_KEYS = frozenset({"topic", "topic_id", "partitions"})
_FETCH_PARTITION_KEYS = frozenset(
    {"partition_index", "error_code", "high_watermark", "last_stable_offset",
     "log_start_offset", "aborted_transactions", "preferred_read_replica", "records"}
)  # fmt: skip
_ABORTED_TXN_KEYS = frozenset({"producer_id", "first_offset"})

# codec turns a log append time in ms into a datetime and kio turns it back with
# round(timestamp() * 1000): the identity for every ms a datetime can hold (year 1970 to 9999,
# checked by the tests). Outside that range kio fails, so the fast path declines.
_MAX_APPEND_TIME_MS = 253_402_300_799_999

_BYTES_LIKE = (bytes, bytearray, memoryview)


class _Unsupported(Exception):
    """``data`` is not in the shape these encoders handle; use the generic path."""


def encode_response_data(
    api_key: int, api_version: int, correlation_id: int, data: Mapping[str, Any]
) -> bytes | Chunks:
    """The framed response for a handler's response dict: packed by hand when
    :func:`encode_fast` takes it, otherwise through kio's generic writer."""
    fast = encode_fast(api_key, api_version, correlation_id, data)
    if fast is not None:
        return fast
    return encode_response(correlation_id, build_response(api_key, api_version, data))


def encode_fast(
    api_key: int, api_version: int, correlation_id: int, data: Mapping[str, Any]
) -> bytes | Chunks | None:
    """The framed response for a Produce or Fetch response dict, or None (use the generic path).

    Produce comes back as one ``bytes``; Fetch as a list of chunks in which the stored record
    batches appear as they were passed in (not copied).
    """
    try:
        if api_key == PRODUCE and api_version in PRODUCE_VERSIONS:
            return encode_produce(api_version, correlation_id, data)
        if api_key == FETCH and api_version in FETCH_VERSIONS:
            return encode_fetch(api_version, correlation_id, data)
    except Exception:  # _Unsupported, or a value kio would refuse (struct.error, KeyError, ...)
        return None  # the generic path then encodes it, or raises its own error
    return None


# --- shared pieces ----------------------------------------------------------------------------


def _uvarint(out: bytearray, value: int) -> None:
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _array_length(out: bytearray, count: int, flexible: bool) -> None:
    if flexible:
        _uvarint(out, count + 1)
    else:
        out += _I32.pack(count)


def _string(out: bytearray, value: object, flexible: bool) -> None:
    if type(value) is not str:  # kio's legacy writer needs a str; be as strict everywhere
        raise _Unsupported
    encoded = value.encode()
    if flexible:
        _uvarint(out, len(encoded) + 1)
    else:
        out += _I16.pack(len(encoded))  # struct.error beyond 32767 bytes, as kio refuses too
    out += encoded


def _error_code(value: object) -> int:
    if isinstance(value, ErrorCode):
        return int(value.value)
    raise _Unsupported  # plain ints and anything else: let codec convert (and validate) them


def _check_keys(data: object, allowed: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(data, dict) or not data.keys() <= allowed:
        raise _Unsupported
    return data


def _throttle_ms(data: Mapping[str, Any]) -> int:
    value = data.get("throttle_time", 0)
    if type(value) is not int:  # a timedelta is fine for kio, but handlers never send one
        raise _Unsupported
    return value


def _header(first: bytearray, size: int, correlation_id: int, flexible: bool) -> None:
    """Fill the size prefix and response header reserved at the start of ``first``; ``size`` is
    the whole framed response's."""
    if flexible:
        _HEADER_V1.pack_into(first, 0, size - 4, correlation_id, 0)
    else:
        _HEADER_V0.pack_into(first, 0, size - 4, correlation_id)


# --- Produce ----------------------------------------------------------------------------------


def encode_produce(version: int, correlation_id: int, data: Mapping[str, Any]) -> bytes:
    """ProduceResponse v3-12; raises _Unsupported (or a struct/lookup error) to decline.

    Written flat (checks inline, one struct call per partition) because it runs once per
    Produce request: with one message per request every call counts.
    """
    if type(data) is not dict or not data.keys() <= _PRODUCE_KEYS:
        raise _Unsupported
    flexible = version >= _PRODUCE_FLEXIBLE_FROM
    since_v5 = version >= 5
    partition_struct = _PRODUCE_PARTITION_V5 if since_v5 else _PRODUCE_PARTITION_V3
    tail = _PRODUCE_V9_TAIL if flexible else _PRODUCE_V8_TAIL if version >= 8 else b""
    out = bytearray(_HEADER_V1.size if flexible else _HEADER_V0.size)  # filled in at the end
    topics = data["responses"]
    _array_length(out, len(topics), flexible)
    for topic in topics:
        if type(topic) is not dict or not topic.keys() <= _PRODUCE_TOPIC_KEYS:
            raise _Unsupported
        _string(out, topic["name"], flexible)
        partitions = topic["partition_responses"]
        _array_length(out, len(partitions), flexible)
        for partition in partitions:
            if type(partition) is not dict or not partition.keys() <= _PRODUCE_PARTITION_KEYS:
                raise _Unsupported
            get = partition.get
            record_errors = get("record_errors", ())
            if get("error_message") is not None or record_errors or (
                type(record_errors) is not tuple and type(record_errors) is not list
            ):
                raise _Unsupported
            append_time = get("log_append_time")
            if append_time is None:
                append_time = -1
            elif type(append_time) is not int or not 0 <= append_time <= _MAX_APPEND_TIME_MS:
                raise _Unsupported
            code = _error_code(partition["error_code"])
            if since_v5:
                out += partition_struct.pack(
                    partition["index"], code, partition["base_offset"], append_time,
                    get("log_start_offset", -1),
                )  # fmt: skip
            else:
                out += partition_struct.pack(
                    partition["index"], code, partition["base_offset"], append_time
                )
            out += tail
        if flexible:
            out.append(0)  # topic tag buffer
    out += _I32.pack(_throttle_ms(data))
    if flexible:
        out.append(0)  # top-level tag buffer: node_endpoints (v10+) is empty
    _header(out, len(out), correlation_id, flexible)
    return bytes(out)


# --- Fetch ------------------------------------------------------------------------------------


def encode_fetch(version: int, correlation_id: int, data: Mapping[str, Any]) -> Chunks:
    """FetchResponse v4-16 as chunks; the records of each partition are chunks of their own.

    Raises _Unsupported (or a struct/lookup error) to decline.
    """
    flexible = version >= _FETCH_FLEXIBLE_FROM
    data = _check_keys(data, _FETCH_KEYS)
    chunks: Chunks = []
    first = out = bytearray(_HEADER_V1.size if flexible else _HEADER_V0.size)  # filled in last
    size = 0  # bytes in chunks before ``out``
    if version >= 7:
        out += _TOP_V7.pack(
            _throttle_ms(data), _error_code(data.get("error_code", ErrorCode.none)),
            data.get("session_id", 0),
        )  # fmt: skip
    else:
        out += _I32.pack(_throttle_ms(data))
    partition_struct = _FETCH_PARTITION_V5 if version >= 5 else _FETCH_PARTITION_V4
    by_id = version >= _FETCH_TOPIC_IDS_FROM
    topics = data["responses"]
    _array_length(out, len(topics), flexible)
    for topic in topics:
        topic = _check_keys(topic, _FETCH_TOPIC_KEYS)
        if by_id:
            topic_id = topic["topic_id"]
            if topic_id is None:
                out += _NULL_UUID
            elif type(topic_id) is uuid.UUID:
                out += topic_id.bytes
            else:
                raise _Unsupported
        else:
            _string(out, topic["topic"], flexible)
        partitions = topic["partitions"]
        _array_length(out, len(partitions), flexible)
        for partition in partitions:
            partition = _check_keys(partition, _FETCH_PARTITION_KEYS)
            values: tuple[Any, ...] = (
                partition["partition_index"],
                _error_code(partition["error_code"]),
                partition["high_watermark"],
                partition.get("last_stable_offset", -1),
            )
            if version >= 5:
                values += (partition.get("log_start_offset", -1),)
            out += partition_struct.pack(*values)
            _aborted_transactions(out, partition.get("aborted_transactions"), flexible)
            if version >= 11:
                out += _I32.pack(partition.get("preferred_read_replica", -1))
            records = partition.get("records")
            if records is None:
                out += b"\x00" if flexible else b"\xff\xff\xff\xff"
            elif isinstance(records, _BYTES_LIKE):
                length = len(records)
                if isinstance(records, memoryview) and records.nbytes != length:
                    raise _Unsupported  # kio would write len() items but nbytes bytes
                if flexible:
                    _uvarint(out, length + 1)
                else:
                    out += _I32.pack(length)
                if length:
                    # The stored batches go to the socket as they are: no copy into ``out``.
                    chunks.append(out)
                    chunks.append(records)
                    size += len(out) + length
                    out = bytearray()
            else:
                raise _Unsupported
            if flexible:
                out.append(0)  # partition tag buffer: no diverging epoch, leader or snapshot
        if flexible:
            out.append(0)  # topic tag buffer
    if flexible:
        out.append(0)  # top-level tag buffer: node_endpoints (v16+) is empty
    chunks.append(out)
    size += len(out)
    _header(first, size, correlation_id, flexible)
    return chunks


def _aborted_transactions(out: bytearray, value: object, flexible: bool) -> None:
    if value is None:
        out += b"\x00" if flexible else b"\xff\xff\xff\xff"
        return
    if type(value) not in (list, tuple):
        raise _Unsupported
    assert isinstance(value, (list, tuple))
    _array_length(out, len(value), flexible)
    for item in value:
        item = _check_keys(item, _ABORTED_TXN_KEYS)
        out += _ABORTED_TXN.pack(item["producer_id"], item["first_offset"])
        if flexible:
            out.append(0)
