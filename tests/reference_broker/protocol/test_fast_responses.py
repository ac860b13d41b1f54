"""The hand-written Produce and Fetch response encoders against kio's generic writer.

The fast encoders must produce exactly the bytes of ``encode_response(correlation_id,
build_response(api_key, api_version, data))`` for every version the broker advertises, and
decline (return None, so the generic path runs) for any shape they do not handle.
"""

from __future__ import annotations

import datetime
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from kio.schema.errors import ErrorCode

from reference_broker.broker import Broker
from reference_broker.config import load_broker_config
from reference_broker.handlers.context import RequestContext
from reference_broker.handlers.fetch import handle_fetch
from reference_broker.handlers.produce import handle_produce
from reference_broker.protocol.api_versions import API_VERSIONS
from reference_broker.protocol.codec import build, build_response, encode_response, request_class
from reference_broker.protocol.fast_responses import (
    FETCH,
    FETCH_VERSIONS,
    PRODUCE,
    PRODUCE_VERSIONS,
    encode_fast,
    encode_response_data,
)
from reference_broker.records import Record, build_batch

I16 = st.integers(-(2**15), 2**15 - 1)
I32 = st.integers(-(2**31), 2**31 - 1)
I64 = st.integers(-(2**63), 2**63 - 1)
CORRELATION = I32
MAX_APPEND_TIME_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last datetime
ERRORS = st.sampled_from(list(ErrorCode))
NAMES = st.text(max_size=40)  # any unicode, including multi-byte UTF-8
RECORDS = st.one_of(
    st.none(),
    st.binary(max_size=300),  # lengths around 127/128: one- and two-byte compact lengths
    st.binary(min_size=16_380, max_size=16_390),  # around the three-byte compact length
    st.binary(max_size=64).map(bytearray),
    st.binary(max_size=64).map(memoryview),
)


def optional(**fields: Any) -> Any:
    """A strategy of dicts holding any subset of ``fields``."""
    return st.fixed_dictionaries({}, optional=fields)


def produce_partition() -> Any:
    required = st.fixed_dictionaries({"index": I32, "error_code": ERRORS, "base_offset": I64})
    extra = optional(
        log_append_time=st.one_of(st.none(), st.integers(0, MAX_APPEND_TIME_MS)),
        log_start_offset=I64,
        error_message=st.none(),
        record_errors=st.sampled_from([(), []]),
    )
    return st.builds(lambda a, b: {**a, **b}, required, extra)


def produce_response() -> Any:
    topic = st.fixed_dictionaries(
        {"name": NAMES, "partition_responses": st.lists(produce_partition(), max_size=3)}
    )
    return st.builds(
        lambda topics, extra: {"responses": topics, **extra},
        st.lists(topic, max_size=3),
        optional(throttle_time=I32),
    )


def fetch_partition() -> Any:
    required = st.fixed_dictionaries(
        {"partition_index": I32, "error_code": ERRORS, "high_watermark": I64}
    )
    aborted = st.fixed_dictionaries({"producer_id": I64, "first_offset": I64})
    extra = optional(
        last_stable_offset=I64,
        log_start_offset=I64,
        aborted_transactions=st.one_of(st.none(), st.lists(aborted, max_size=2)),
        preferred_read_replica=I32,
        records=RECORDS,
    )
    return st.builds(lambda a, b: {**a, **b}, required, extra)


def fetch_response() -> Any:
    # Both topic keys: every version finds the one it encodes (names to 12, ids from 13).
    topic = st.fixed_dictionaries(
        {
            "topic": NAMES,
            "topic_id": st.one_of(st.none(), st.uuids()),
            "partitions": st.lists(fetch_partition(), max_size=3),
        }
    )
    return st.builds(
        lambda topics, extra: {"responses": topics, **extra},
        st.lists(topic, max_size=3),
        optional(throttle_time=I32, error_code=ERRORS, session_id=I32),
    )


def generic(api_key: int, version: int, correlation_id: int, data: dict[str, Any]) -> bytes:
    return encode_response(correlation_id, build_response(api_key, version, data))


def joined(encoded: bytes | list[Any] | None) -> bytes:
    assert encoded is not None, "the fast encoder declined a supported shape"
    return encoded if isinstance(encoded, bytes) else b"".join(encoded)


def test_the_encoders_cover_every_advertised_version() -> None:
    """Produce and Fetch versions the broker advertises are exactly those encoded by hand."""
    assert range(API_VERSIONS[PRODUCE][0], API_VERSIONS[PRODUCE][1] + 1) == PRODUCE_VERSIONS
    assert range(API_VERSIONS[FETCH][0], API_VERSIONS[FETCH][1] + 1) == FETCH_VERSIONS


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(version=st.sampled_from(PRODUCE_VERSIONS), correlation_id=CORRELATION, data=produce_response())
@example(version=3, correlation_id=0, data={"responses": []})
@example(
    version=10, correlation_id=7,
    data={"responses": [{"name": "t", "partition_responses": [
        {"index": 0, "error_code": ErrorCode.none, "base_offset": 0, "log_append_time": MAX_APPEND_TIME_MS}
    ]}]},
)  # fmt: skip
def test_produce_responses_are_byte_identical_to_kio(
    version: int, correlation_id: int, data: dict[str, Any]
) -> None:
    """Any Produce response dict in the supported shape encodes to kio's exact bytes."""
    fast = encode_fast(PRODUCE, version, correlation_id, data)
    assert joined(fast) == generic(PRODUCE, version, correlation_id, data)
    assert isinstance(fast, bytes)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(version=st.sampled_from(FETCH_VERSIONS), correlation_id=CORRELATION, data=fetch_response())
@example(version=4, correlation_id=0, data={"responses": []})
def test_fetch_responses_are_byte_identical_to_kio(
    version: int, correlation_id: int, data: dict[str, Any]
) -> None:
    """Any Fetch response dict in the supported shape encodes to kio's exact bytes."""
    assert joined(encode_fast(FETCH, version, correlation_id, data)) == generic(
        FETCH, version, correlation_id, data
    )


@settings(max_examples=300)
@given(ms=st.integers(0, MAX_APPEND_TIME_MS))
@example(ms=0)
@example(ms=1)
@example(ms=MAX_APPEND_TIME_MS)
def test_log_append_times_survive_kios_datetime_round_trip(ms: int) -> None:
    """The fast path writes a log append time as the int it is; kio goes through a datetime and
    back. The two agree on every millisecond a datetime can hold."""
    data = {"responses": [{"name": "t", "partition_responses": [
        {"index": 0, "error_code": ErrorCode.none, "base_offset": 0, "log_append_time": ms}
    ]}]}  # fmt: skip
    assert joined(encode_fast(PRODUCE, 12, 1, data)) == generic(PRODUCE, 12, 1, data)


def test_fetch_records_are_passed_through_not_copied() -> None:
    """The stored batches of a Fetch response are chunks of their own, the very objects the
    handler passed (the driver writes them to the socket as they are)."""
    records = bytes(range(256)) * 40
    data = {"responses": [{"topic": "t", "topic_id": uuid.uuid4(), "partitions": [
        {"partition_index": 0, "error_code": ErrorCode.none, "high_watermark": 1, "records": records}
    ]}]}  # fmt: skip
    for version in FETCH_VERSIONS:
        chunks = encode_fast(FETCH, version, 3, data)
        assert isinstance(chunks, list)
        assert any(chunk is records for chunk in chunks)
        assert b"".join(chunks) == generic(FETCH, version, 3, data)


PRODUCE_OK = {"index": 0, "error_code": ErrorCode.none, "base_offset": 5}
FETCH_OK = {"partition_index": 0, "error_code": ErrorCode.none, "high_watermark": 5, "records": b""}


def produce_with(**partition: Any) -> dict[str, Any]:
    return {"responses": [{"name": "t", "partition_responses": [{**PRODUCE_OK, **partition}]}]}


def fetch_with(**partition: Any) -> dict[str, Any]:
    return {"error_code": ErrorCode.none, "session_id": 0, "responses": [
        {"topic": "t", "topic_id": uuid.UUID(int=1), "partitions": [{**FETCH_OK, **partition}]}
    ]}  # fmt: skip


UNSUPPORTED_PRODUCE = {
    "error message": produce_with(error_message="the record set is empty"),
    "record errors": produce_with(
        record_errors=[{"batch_index": 0, "batch_index_error_message": "bad"}]
    ),
    "record errors of None": produce_with(record_errors=None),
    "current leader (tagged)": produce_with(current_leader={"leader_id": 1, "leader_epoch": 2}),
    "node endpoints (tagged)": {**produce_with(), "node_endpoints": []},
    "unknown key": produce_with(surprise=1),
    "throttle as timedelta": {**produce_with(), "throttle_time": datetime.timedelta(seconds=1)},
    "error code as int": produce_with(error_code=0),
    "unknown error name": produce_with(error_code="no_such_error"),
    "append time as datetime": produce_with(
        log_append_time=datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    ),
    "append time beyond year 9999": produce_with(log_append_time=MAX_APPEND_TIME_MS + 1),
    "negative append time": produce_with(log_append_time=-5),
    "missing base offset": {"responses": [{"name": "t", "partition_responses": [
        {"index": 0, "error_code": ErrorCode.none}]}]},  # fmt: skip
    "topic name as bytes": {"responses": [{"name": b"t", "partition_responses": []}]},
    "offset out of int64": produce_with(base_offset=2**63),
    "kio dataclass inside": {"responses": [
        build_response(PRODUCE, 9, produce_with()).responses[0]
    ]},  # fmt: skip
}
UNSUPPORTED_FETCH = {
    "diverging epoch (tagged)": fetch_with(diverging_epoch={"epoch": 1, "end_offset": 2}),
    "snapshot id (tagged)": fetch_with(snapshot_id={"epoch": 1, "end_offset": 2}),
    "node endpoints (tagged)": {**fetch_with(), "node_endpoints": []},
    "records as str": fetch_with(records="abc"),
    "records as a memoryview of int32": fetch_with(records=memoryview(b"abcd").cast("i")),
    "aborted transaction with an extra key": fetch_with(
        aborted_transactions=[{"producer_id": 1, "first_offset": 2, "last_offset": 3}]
    ),
    "topic id as str": {"responses": [{"topic_id": "x", "topic": "t", "partitions": []}]},
    "topic name as bytes": {"responses": [{"topic_id": None, "topic": b"t", "partitions": []}]},
    "missing high watermark": fetch_with(high_watermark=None),
    "error code as int": fetch_with(error_code=1),
}


@pytest.mark.parametrize("shape", sorted(UNSUPPORTED_PRODUCE))
@pytest.mark.parametrize("version", [3, 8, 9, 12])
def test_unsupported_produce_shapes_fall_back_to_kio(shape: str, version: int) -> None:
    """A Produce response outside the fast encoder's shape is declined, and the dispatcher's
    output is then kio's (or kio's own error)."""
    data = UNSUPPORTED_PRODUCE[shape]
    assert encode_fast(PRODUCE, version, 1, data) is None
    assert_dispatch_matches_kio(PRODUCE, version, data)


# Shapes whose odd field only some versions have: the others ignore it, as kio does.
FETCH_ONLY_IN = {"topic id as str": range(13, 17), "topic name as bytes": range(4, 13)}


@pytest.mark.parametrize("shape", sorted(UNSUPPORTED_FETCH))
@pytest.mark.parametrize("version", [4, 11, 12, 13, 16])
def test_unsupported_fetch_shapes_fall_back_to_kio(shape: str, version: int) -> None:
    """A Fetch response outside the fast encoder's shape is declined, and the dispatcher's
    output is then kio's (or kio's own error)."""
    data = UNSUPPORTED_FETCH[shape]
    if version in FETCH_ONLY_IN.get(shape, FETCH_VERSIONS):
        assert encode_fast(FETCH, version, 1, data) is None
    assert_dispatch_matches_kio(FETCH, version, data)


def assert_dispatch_matches_kio(api_key: int, version: int, data: dict[str, Any]) -> None:
    try:
        expected: bytes | type[BaseException] = generic(api_key, version, 1, data)
    except Exception as exc:  # noqa: BLE001 - whatever kio raises, the dispatcher must too
        expected = type(exc)
    if isinstance(expected, bytes):
        assert joined(encode_response_data(api_key, version, 1, data)) == expected
    else:
        with pytest.raises(expected):
            encode_response_data(api_key, version, 1, data)


@pytest.mark.parametrize("api_key, version", [(2, 7), (3, 12), (18, 3), (0, 13), (1, 17), (1, 3)])
def test_other_apis_and_versions_are_not_encoded_by_hand(api_key: int, version: int) -> None:
    """Only Produce 3-12 and Fetch 4-16 have fast encoders; everything else returns None."""
    assert encode_fast(api_key, version, 1, {"responses": []}) is None


def test_the_real_handlers_answers_take_the_fast_path(tmp_path: Path) -> None:
    """What handle_produce and handle_fetch actually return (successes, errors without a
    message, empty and non-empty records) is in the fast shape and encodes to kio's bytes."""
    broker = Broker(load_broker_config(None, [("log.dirs", str(tmp_path))]), 0)
    now_ms = 1_700_000_000_000
    try:
        batch = build_batch([Record(0, now_ms, None, b"v" * 100)], base_offset=0)
        for version in PRODUCE_VERSIONS:
            for topic in ("fast", "bad/name"):  # an append, and an error without a message
                body = build(request_class(PRODUCE, version), {
                    "transactional_id": None, "acks": 1, "timeout": 5000,
                    "topic_data": [{"name": topic, "partition_data": [
                        {"index": 0, "records": batch}]}],
                })  # fmt: skip
                ctx = RequestContext(PRODUCE, version, 1, "test", "PLAINTEXT", "127.0.0.1:1")
                response = handle_produce(broker, ctx, body, now_ms)
                assert joined(encode_fast(PRODUCE, version, 1, response)) == generic(
                    PRODUCE, version, 1, response
                )
        topic_id = broker.topics.get("fast").topic_id  # type: ignore[union-attr]
        for version in FETCH_VERSIONS:
            for offset in (0, len(PRODUCE_VERSIONS), 10_000):  # records, none, out of range
                body = build(request_class(FETCH, version), {
                    "max_wait": 0, "min_bytes": 0, "max_bytes": 1 << 20, "isolation_level": 0,
                    "topics": [{"topic": "fast", "topic_id": topic_id, "partitions": [
                        {"partition": 0, "fetch_offset": offset, "partition_max_bytes": 1 << 20,
                         "current_leader_epoch": -1}]}],
                    "forgotten_topics_data": [],
                })  # fmt: skip
                ctx = RequestContext(FETCH, version, 1, "test", "PLAINTEXT", "127.0.0.1:1")
                response = handle_fetch(broker, ctx, body, now_ms).response
                assert joined(encode_fast(FETCH, version, 1, response)) == generic(
                    FETCH, version, 1, response
                )
    finally:
        broker.close()
