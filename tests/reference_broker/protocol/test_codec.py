"""The kio codec: request decoding, response building and encoding, and its error mapping."""

from __future__ import annotations

import datetime
import struct
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader

from reference_broker.protocol.api_versions import API_VERSIONS
from reference_broker.protocol.codec import (
    MalformedRequestError,
    UnsupportedApiError,
    build,
    build_response,
    correlation_of,
    decode_request,
    encode_response,
    error_response,
    has_top_level_error_code,
    request_class,
    response_class,
)
from reference_broker.records import Record, build_batch
from tests.helpers import SUPPORTED_REQUESTS, encode_request_payload, request_strategy


def request(api_key: int, api_version: int, data: dict[str, Any]) -> Any:
    return build(request_class(api_key, api_version), data)


EXAMPLES = [
    request(18, 0, {}),
    request(18, 3, {"client_software_name": "kconform", "client_software_version": "0.1"}),
    request(3, 1, {"topics": [{"name": "a"}, {"name": "b"}]}),
    request(3, 12, {"topics": None, "allow_auto_topic_creation": False}),
    request(0, 9, {"acks": -1, "timeout": 5000, "topic_data": [{"name": "t", "partition_data": [
        {"index": 0, "records": build_batch([Record(0, 1, b"k", b"v")], base_offset=0)}]}]}),
    request(1, 12, {"replica_id": -1, "max_wait": 500, "min_bytes": 1, "max_bytes": 1 << 20,
                    "session_epoch": -1, "topics": [{"topic": "t", "partitions": [
                        {"partition": 0, "fetch_offset": 7, "partition_max_bytes": 1 << 20}]}]}),
    request(19, 7, {"topics": [{"name": "t", "num_partitions": 3, "replication_factor": 1,
                                "configs": [{"name": "cleanup.policy", "value": "compact"}]}],
                    "timeout": 30000}),
]


@pytest.mark.parametrize("body", EXAMPLES, ids=lambda b: f"{type(b).__name__}-v{type(b).__version__}")
def test_a_valid_request_decodes_to_what_was_encoded(body: Any) -> None:
    """Header fields and body come back exactly as written, with the frame size."""
    payload = encode_request_payload(body, 12345, "client-1")
    decoded = decode_request(payload)
    assert (decoded.api_key, decoded.api_version) == (type(body).__api_key__, type(body).__version__)
    assert decoded.correlation_id == 12345
    assert decoded.client_id == "client-1"
    assert decoded.body == body
    assert decoded.size == len(payload)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=st.sampled_from(SUPPORTED_REQUESTS).flatmap(lambda kv: request_strategy(*kv)),
    correlation_id=st.integers(-(2**31), 2**31 - 1),
    client_id=st.none() | st.text(max_size=20),
)
def test_any_supported_request_round_trips(case: Any, correlation_id: int, client_id: str | None) -> None:
    """Every request of every supported API and version that kio can encode decodes back equal."""
    decoded = decode_request(encode_request_payload(case, correlation_id, client_id))
    assert decoded.body == case
    assert decoded.correlation_id == correlation_id
    assert decoded.client_id == client_id


def test_an_unsupported_version_names_the_correlation_id() -> None:
    """A version outside the supported range raises UnsupportedApiError carrying the API key,
    version and correlation id (so ApiVersions can still be answered)."""
    high = API_VERSIONS[3][1]
    with pytest.raises(UnsupportedApiError, match=f"supported: 0-{high}") as caught:
        decode_request(struct.pack(">hhih", 3, high + 1, 77, -1))
    assert (caught.value.api_key, caught.value.api_version, caught.value.correlation_id) == (3, high + 1, 77)


def test_an_unknown_api_key_is_unsupported() -> None:
    """An API key missing from the table raises UnsupportedApiError with its correlation id."""
    unknown = 999  # not a Kafka API key (11, used here before, became JoinGroup)
    assert unknown not in API_VERSIONS
    with pytest.raises(UnsupportedApiError) as caught:
        decode_request(struct.pack(">hhih", unknown, 0, 5, -1))
    assert caught.value.correlation_id == 5


def test_a_frame_shorter_than_the_header_prefix_is_malformed() -> None:
    """Fewer than 8 bytes cannot even name an API: MalformedRequestError without a correlation id."""
    with pytest.raises(MalformedRequestError) as caught:
        decode_request(b"\x00\x12\x00")
    assert caught.value.correlation_id is None
    assert correlation_of(b"\x00\x12\x00") is None
    assert correlation_of(struct.pack(">hhi", 18, 0, 99)) == 99


def test_a_truncated_body_is_malformed() -> None:
    """A body cut short raises MalformedRequestError with the correlation id, never kio's own
    exception."""
    payload = encode_request_payload(EXAMPLES[4], 31)
    for cut in (len(payload) - 1, len(payload) // 2, 12):
        with pytest.raises(MalformedRequestError) as caught:
            decode_request(payload[:cut])
        assert caught.value.correlation_id == 31


def test_trailing_bytes_after_the_body_are_ignored() -> None:
    """Bytes after a complete body are tolerated, as Kafka's parser does (librdkafka 2.x sends
    Metadata v13 with extra bytes)."""
    payload = encode_request_payload(EXAMPLES[3], 8)
    decoded = decode_request(payload + b"\x00\x01\x02")
    assert decoded.body == EXAMPLES[3]
    assert decoded.size == len(payload) + 3


@pytest.mark.parametrize("where", ["header", "body"])
def test_an_unknown_tagged_field_is_skipped_and_a_cut_one_is_malformed(where: str) -> None:
    """KIP-482: a tagged field the schema does not know is skipped (kio alone would refuse it);
    one whose value is cut short is MalformedRequestError with the correlation id."""
    payload = bytearray(encode_request_payload(EXAMPLES[3], 21, "c"))
    unknown = b"\x01" + b"\x90\x03" + b"\x02" + b"??"  # one field, tag 400, two bytes
    at = 8 + 2 + 1 if where == "header" else len(payload) - 1  # the empty tag sections
    assert payload[at] == 0
    tagged = payload[:at] + unknown + payload[at + 1:]
    decoded = decode_request(bytes(tagged))
    assert decoded.body == EXAMPLES[3] and decoded.client_id == "c"
    cut = payload[:at] + unknown[:-1] + (payload[at + 1:] if where == "header" else b"")
    with pytest.raises(MalformedRequestError) as caught:
        decode_request(bytes(cut))
    assert caught.value.correlation_id == 21


def test_a_null_array_where_the_schema_forbids_it_is_malformed() -> None:
    """kio reads an array of length -1 as None even where the field is not nullable; the codec
    refuses it, naming the field, including inside nested structs."""
    header = struct.pack(">hhih", 20, 1, 3, 1) + b"x"
    with pytest.raises(MalformedRequestError, match="non-nullable field topic_names is null"):
        decode_request(header + struct.pack(">ii", -1, 1000))
    # CreateTopics v2: one topic whose assignments array is null.
    topic = struct.pack(">h", 1) + b"t" + struct.pack(">ihi", 1, 1, -1) + struct.pack(">i", 0)
    header = struct.pack(">hhih", 19, 2, 4, 1) + b"x"
    body = struct.pack(">i", 1) + topic + struct.pack(">i?", 1000, False)
    with pytest.raises(MalformedRequestError, match="topics.assignments is null"):
        decode_request(header + body)


def test_a_nullable_array_may_be_null() -> None:
    """Metadata v1+ topics is nullable ("all topics"): null decodes to None."""
    decoded = decode_request(struct.pack(">hhih", 3, 1, 1, -1) + struct.pack(">i", -1))
    assert decoded.body.topics is None


def test_build_fills_defaults_and_zero_values() -> None:
    """Fields left out get their schema default, or a zero value of their type."""
    response = build_response(3, 12, {"topics": [{"name": "t"}]})
    assert response.controller_id == -1  # schema default
    assert response.cluster_id is None  # nullable, default None
    assert response.throttle_time == datetime.timedelta(0)
    assert response.brokers == ()
    (entry,) = response.topics
    assert entry.error_code == ErrorCode.none
    assert entry.partitions == ()
    assert entry.is_internal is False
    assert entry.topic_id is None  # nullable in kio: written as the zero UUID


def test_build_drops_fields_the_version_lacks_and_converts_plain_values() -> None:
    """One dict serves every version: keys a version lacks are ignored, error names become
    ErrorCode members, milliseconds become timedeltas, nested dicts become dataclasses."""
    data = {
        "throttle_time": 250,
        "cluster_id": "cluster",  # Metadata v2+
        "brokers": [{"node_id": 1, "host": "h", "port": 9092, "rack": "r"}],  # rack: v1+
        "topics": [{"name": "t", "error_code": ErrorCode.unknown_topic_or_partition, "topic_id": uuid.UUID(int=5)}],
    }
    v0 = build_response(3, 0, data)
    assert not hasattr(v0, "cluster_id") and not hasattr(v0.brokers[0], "rack")
    assert v0.topics[0].error_code == ErrorCode.unknown_topic_or_partition
    v12 = build_response(3, 12, data)
    assert v12.cluster_id == "cluster"
    assert v12.brokers[0].rack == "r"
    assert v12.throttle_time == datetime.timedelta(milliseconds=250)
    assert v12.topics[0].topic_id == uuid.UUID(int=5)
    for version in (0, 12):  # both encode
        encode_response(1, build_response(3, version, data))


def _response_frame(correlation_id: int, response: Any) -> bytes:
    frame = encode_response(correlation_id, response)
    (size,) = struct.unpack_from(">i", frame, 0)
    assert size == len(frame) - 4
    return frame[4:]


def test_api_versions_responses_use_the_v0_header_even_when_flexible() -> None:
    """KIP-511: ApiVersions answers always use response header v0 (no tagged fields), so a
    client can parse them before it knows the version; other flexible APIs use header v1."""
    body = _response_frame(7, build_response(18, 3, {"error_code": ErrorCode.none, "api_keys": [
        {"api_key": 18, "min_version": 0, "max_version": 4}]}))
    assert struct.unpack_from(">ih", body, 0) == (7, 0)  # correlation id, then error_code at once
    parsed, size = entity_reader(response_class(18, 3))(body, 4)
    assert size == len(body) - 4
    assert parsed.api_keys[0].max_version == 4
    metadata = _response_frame(7, build_response(3, 12, {}))
    assert metadata[4] == 0  # header v1: an empty tagged-field section after the correlation id


def test_error_response_sets_the_top_level_error() -> None:
    """error_response fills the top-level error code of APIs that have one."""
    assert has_top_level_error_code(18, 0)
    assert not has_top_level_error_code(3, 12)
    response = error_response(18, 0, ErrorCode.unsupported_version)
    assert response.error_code == ErrorCode.unsupported_version
    assert response.api_keys == ()
