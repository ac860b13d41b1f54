"""The array-length prescan that runs before kio's native reader may allocate."""

from __future__ import annotations

import io
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kio.serial import entity_reader
from kio.serial.writers import write_unsigned_varint

from reference_broker.protocol.codec import MalformedRequestError, decode_request, request_class
from reference_broker.protocol.prescan import (
    ArrayTooLongError,
    body_scanner,
    check_array_lengths,
    entity_scanner,
)
from tests.helpers import SUPPORTED_REQUESTS, encode_request_payload, request_strategy

any_request = st.sampled_from(SUPPORTED_REQUESTS).flatmap(lambda kv: request_strategy(*kv))


def uvarint(value: int) -> bytes:
    out = io.BytesIO()
    write_unsigned_varint(out, value)
    return out.getvalue()


def body_offset(cls: type[Any], payload: bytes) -> int:
    return int(entity_reader(cls.__header_schema__)(payload, 0)[1])


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(body=any_request)
def test_the_scan_walks_exactly_the_body_kio_reads(body: Any) -> None:
    """On every valid request the scanner follows the schema as kio does: it ends exactly where
    the body ends (tagged fields, compact and legacy encodings included)."""
    cls = type(body)
    payload = encode_request_payload(body, 1, "client")
    assert entity_scanner(cls)(payload, body_offset(cls, payload), len(payload)) == len(payload)
    check_array_lengths(cls, payload, body_offset(cls, payload))


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(body=any_request, data=st.data())
def test_the_scan_never_fails_on_garbage_except_for_long_arrays(body: Any, data: st.DataObject) -> None:
    """Whatever the bytes, the scan returns or raises ArrayTooLongError, nothing else."""
    cls = type(body)
    payload = bytearray(encode_request_payload(body, 1, "client"))
    offset = body_offset(cls, bytes(payload))
    for _ in range(data.draw(st.integers(1, 6))):
        at = data.draw(st.integers(0, len(payload) - 1))
        payload[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(offset, len(payload)))
    try:
        check_array_lengths(cls, bytes(payload[:cut]), offset)
    except ArrayTooLongError:
        pass


def test_a_legacy_array_longer_than_the_frame_is_refused() -> None:
    """Metadata v1 declaring 2**31-1 topics in an 8-byte remainder is refused before kio reads it."""
    payload = struct.pack(">hhih", 3, 1, 1, 0) + struct.pack(">i", 2**31 - 1) + b"\x00" * 8
    with pytest.raises(ArrayTooLongError, match="topics declares 2147483647 elements but only 8 bytes"):
        check_array_lengths(request_class(3, 1), payload, 10)
    with pytest.raises(MalformedRequestError, match="ArrayTooLongError"):
        decode_request(payload)


def test_a_compact_array_longer_than_the_frame_is_refused() -> None:
    """A five-byte compact length (2**34 elements), which made kio abort the process trying to
    reserve 128 GiB, is refused as a malformed request."""
    payload = struct.pack(">hhih", 3, 12, 1, 0) + b"\x00" + uvarint(2**34) + b"\x00" * 8
    with pytest.raises(ArrayTooLongError, match="declares 17179869183 elements"):
        check_array_lengths(request_class(3, 12), payload, 11)


def test_a_nested_array_is_checked_against_what_is_left() -> None:
    """The count of an array inside an array element is checked too (CreateTopics v2: one topic
    whose configs array claims a million entries)."""
    topic = (struct.pack(">h", 1) + b"t" + struct.pack(">ih", 1, 1)
             + struct.pack(">i", 0) + struct.pack(">i", 1_000_000))
    payload = struct.pack(">hhih", 19, 2, 4, 0) + struct.pack(">i", 1) + topic + b"\x00" * 5
    with pytest.raises(ArrayTooLongError, match="configs declares 1000000"):
        check_array_lengths(request_class(19, 2), payload, 10)


def test_an_array_count_equal_to_the_bytes_left_is_let_through() -> None:
    """The check is Kafka's: a count no larger than the bytes remaining passes (kio then reports
    whatever else is wrong)."""
    payload = struct.pack(">hhih", 3, 1, 1, 0) + struct.pack(">i", 4) + b"\x00" * 4
    check_array_lengths(request_class(3, 1), payload, 10)


PRODUCE_VERSIONS = [version for key, version in SUPPORTED_REQUESTS if key == 0]
any_produce = st.sampled_from(PRODUCE_VERSIONS).flatmap(lambda version: request_strategy(0, version))


def scan_outcome(scan: Any, payload: bytes, offset: int) -> object:
    """What a scanner does with ``payload``: its end position, or the error it raises."""
    try:
        return scan(payload, offset, len(payload))
    except ArrayTooLongError as exc:
        return f"ArrayTooLongError: {exc}"
    except Exception as exc:  # noqa: BLE001 - _Stop, compared by type
        return type(exc).__name__


def test_produce_requests_get_the_hand_written_scanner() -> None:
    """Every supported Produce version is scanned by hand; other APIs by the generic walk."""
    for version in PRODUCE_VERSIONS:
        assert body_scanner(request_class(0, version)) is not entity_scanner(request_class(0, version))
    assert body_scanner(request_class(1, 12)) is entity_scanner(request_class(1, 12))


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(body=any_produce, data=st.data())
def test_the_hand_written_produce_scan_matches_the_generic_one(body: Any, data: st.DataObject) -> None:
    """On valid Produce requests and on mangled or cut ones (including huge counts, long
    varints and unknown tagged fields), the hand-written scanner ends where the generic one
    does, or raises the same error with the same message."""
    cls = type(body)
    payload = bytearray(encode_request_payload(body, 1, "client"))
    offset = body_offset(cls, bytes(payload))
    scanners = (body_scanner(cls), entity_scanner(cls))
    assert scan_outcome(scanners[0], bytes(payload), offset) == len(payload)
    for _ in range(data.draw(st.integers(0, 6))):
        at = data.draw(st.integers(offset, len(payload) - 1))
        payload[at] = data.draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF, data.draw(st.integers(0, 255))]))
    if data.draw(st.booleans()):
        at = data.draw(st.integers(offset, len(payload)))
        payload[at:at] = data.draw(st.binary(min_size=1, max_size=6))
    cut = data.draw(st.integers(offset, len(payload)))
    mangled = bytes(payload[:cut])
    assert scan_outcome(scanners[0], mangled, offset) == scan_outcome(scanners[1], mangled, offset)
    assert scan_outcome(scanners[0], memoryview(mangled), offset) == scan_outcome(
        scanners[1], mangled, offset
    )


@pytest.mark.parametrize("version", [3, 8, 9, 12])
def test_a_produce_with_a_huge_partition_count_is_refused_by_the_hand_written_scan(version: int) -> None:
    """The hand-written scan keeps the guarantee: a partition count larger than the bytes left
    (legacy int32, or a five-byte compact varint) never reaches kio."""
    flexible = version >= 9
    if flexible:
        body = b"\x00" + struct.pack(">hi", 1, 1000) + b"\x02" + b"\x02t" + uvarint(2**34) + b"\x00" * 8
        header = struct.pack(">hhih", 0, version, 1, -1) + b"\x00"
    else:
        body = struct.pack(">hhi", -1, 1, 1000) + struct.pack(">i", 1) + struct.pack(">h", 1) + b"t"
        body += struct.pack(">i", 2**31 - 1) + b"\x00" * 8
        header = struct.pack(">hhih", 0, version, 1, -1)
    payload = header + body
    with pytest.raises(ArrayTooLongError, match="partition_data declares"):
        check_array_lengths(request_class(0, version), payload, len(header))
    with pytest.raises(MalformedRequestError, match="ArrayTooLongError"):
        decode_request(payload)
