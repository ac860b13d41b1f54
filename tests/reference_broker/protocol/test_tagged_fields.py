"""KIP-482: tagged fields the schema does not know are skipped, in requests the broker decodes
and in responses the harness's wire client decodes, wherever they sit (header, body, nested)."""

from __future__ import annotations

import io

import pytest
from kio.serial import entity_writer

from harness.session import header_tags_position, with_unknown_tag
from reference_broker.drivers.wire_client import decode_response, encode_request
from reference_broker.protocol.codec import MalformedRequestError, build, decode_request, request_class, response_class
from reference_broker.protocol.prescan import without_unknown_tags

METADATA_V12 = {"topics": [{"name": "t", "topic_id": None}, {"name": "u", "topic_id": None}],
                "allow_auto_topic_creation": False, "include_topic_authorized_operations": False}


def _metadata(correlation: int = 5) -> bytes:
    return encode_request(build(request_class(3, 12), METADATA_V12), correlation)


def test_unknown_tags_in_the_header_the_body_and_a_nested_struct_are_skipped() -> None:
    plain = _metadata()
    tagged = with_unknown_tag(plain, -4)  # the second topic's tagged fields
    tagged = with_unknown_tag(tagged, -1)
    tagged = with_unknown_tag(tagged, header_tags_position(tagged), tag=3, value=b"")
    assert len(tagged) > len(plain)
    assert decode_request(tagged[4:]).body == decode_request(plain[4:]).body
    assert decode_request(tagged[4:]).client_id == "kconform"


def test_many_unknown_tags_shrink_the_count_across_a_varint_boundary() -> None:
    """128 unknown tags take a two-byte count; without them it is one byte (0)."""
    plain = _metadata()[4:]
    entries = b"".join(bytes([tag, 0]) for tag in range(10, 138)[:118]) + \
        b"".join(bytes([0x80 | (tag & 0x7F), tag >> 7, 0]) for tag in range(138, 148))
    tagged = plain[:-1] + bytes([0x80, 0x01]) + entries
    assert decode_request(tagged).body == decode_request(plain).body
    cls = request_class(3, 12)
    assert without_unknown_tags(cls.__header_schema__, cls, tagged) == plain
    assert without_unknown_tags(cls.__header_schema__, cls, plain) is None


def test_a_known_tag_stays_and_a_broken_frame_is_still_refused() -> None:
    # FetchRequest v12+ knows tag 0 (cluster_id): kept, while tag 9999 beside it goes.
    cls = request_class(1, 12)
    fields = {"replica_id": -1, "max_wait": 0, "min_bytes": 0, "max_bytes": 1 << 20, "isolation_level": 0,
              "session_id": 0, "session_epoch": -1, "topics": [], "forgotten_topics_data": [], "rack_id": "",
              "cluster_id": "abc"}
    plain = encode_request(build(cls, fields), 9)
    frame = plain[:-len("abc") - 4] + bytes([2, 0, 4, 4]) + b"abc" + bytes([0x8F, 0x4E, 1, 7])
    frame = len(frame[4:]).to_bytes(4, "big") + frame[4:]
    assert plain.endswith(bytes([1, 0, 4, 4]) + b"abc")  # one tag: 0 (cluster_id), 4 bytes
    body = decode_request(frame[4:]).body
    assert body.cluster_id == "abc" and body.topics == ()
    broken = frame[:-2]  # the unknown tag's value cut short
    with pytest.raises(MalformedRequestError):
        decode_request(broken[4:])


def test_the_wire_client_skips_unknown_tags_in_responses() -> None:
    cls = response_class(18, 3)
    out = io.BytesIO()
    entity_writer(cls.__header_schema__)(out, cls.__header_schema__(correlation_id=77))
    entity_writer(cls)(out, build(cls, {"error_code": 0, "api_keys": [
        {"api_key": 18, "min_version": 0, "max_version": 3}], "throttle_time": 0, "supported_features": [],
        "finalized_features_epoch": -1, "finalized_features": [], "zk_migration_ready": False}))
    payload = out.getvalue()
    framed = with_unknown_tag(len(payload).to_bytes(4, "big") + payload, -1)
    correlation, body = decode_response(18, 3, framed[4:])
    assert correlation == 77 and [int(k.api_key) for k in body.api_keys] == [18]
