"""Bad input never takes the reference broker down (docs/architecture.md, principle 8).

Malformed, truncated and oversized frames and unknown API keys and versions make the broker
answer with an error or close *that* connection, log the event with the peer address, and keep
serving everyone else; unknown tagged fields are skipped (KIP-482). The Hypothesis test throws at least 10,000
generated and mutated frames at a live broker process, checking after every example that the
process is alive, that a fresh connection and a bystander connection opened before the storm
still get answers, and at the end that a real client still round-trips.

Each fuzzed frame is followed on the same connection by an ApiVersions v0 "probe": the broker
answers requests strictly in order, so the probe's answer (or the connection closing) says the
fuzzed frame has been dealt with, without waiting on a fixed timeout. Frames whose size prefix
lies are sent last on their connection, which is then half-closed and drained.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import socket
import struct
import time
import uuid
from pathlib import Path
from typing import Any

import attrs
import pytest
from crc32c import crc32c
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kio.index import load_request_schema, load_response_schema
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader

import reference_broker.topic_admin as topic_admin_module
from launch.broker_process import BrokerProcess
from reference_broker.broker import Broker
from reference_broker.config import load_broker_config
from reference_broker.drivers.broker_server import BrokerServer
from reference_broker.handlers import FETCH, HANDLERS
from reference_broker.handlers.context import CloseConnection, Deferred, RequestContext
from reference_broker.handlers.fetch import handle_fetch
from reference_broker.protocol.api_versions import API_VERSIONS
from reference_broker.protocol.codec import build, build_response, encode_response, request_class
from reference_broker.protocol.prescan import encode_uvarint
from reference_broker.records import Record, build_batch, validate_batches
from reference_broker.testing import add_partitions, create_topic, set_topic_configs
from reference_broker.topic_admin import BrokerError
from tests.helpers import (
    SUPPORTED_REQUESTS,
    assert_api_versions_ok,
    connect,
    connection_closed_by_peer,
    decode_response,
    encode_request,
    encode_request_payload,
    recv_frame,
    request_strategy,
    round_trip,
    size_prefixed,
)

FRAMES_PER_EXAMPLE = 100
EXAMPLES = 100
MIN_FRAMES = 10_000
PROBE_TIMEOUT_S = 0.5  # only a parked Fetch or a frame the broker still waits on reaches this
DRAIN_TIMEOUT_S = 10.0  # a half-closed connection is closed by the broker once it read the rest
DEFAULT_MAX_REQUEST_BYTES = int(load_broker_config().get("socket.request.max.bytes"))

API_VERSIONS_V0 = load_request_schema(18, 0)
API_VERSIONS_RESPONSE_V0 = load_response_schema(18, 0)
METADATA_V12 = load_request_schema(3, 12)
PROBE_CORRELATION_BASE = 0x7F00_0000


# --- fuzzed frames ------------------------------------------------------------------------------


@attrs.frozen
class FuzzFrame:
    """Bytes for the wire (size prefix included) and how they were made, for failure reports."""

    data: bytes
    api_key: int
    api_version: int
    mutation: str
    framing_ok: bool  # the size prefix matches the payload, so the stream stays in sync

    def __repr__(self) -> str:
        return (f"FuzzFrame(key={self.api_key} v{self.api_version} {self.mutation}, "
                f"{len(self.data)} bytes: {self.data[:48].hex()}...)")


# Mutations keeping the size prefix honest (payload-level), then ones that make it lie.
PAYLOAD_MUTATIONS = (
    "none", "none", "none", "none",
    "bit_flips", "bit_flips", "insert_bytes", "delete_bytes", "truncate", "truncate",
    "api_key", "api_version", "unknown_tag_header", "unknown_tag_body", "trailing_bytes",
    "random_payload", "tiny_payload", "huge_count",
)
FRAMING_MUTATIONS = ("prefix_too_long", "prefix_too_short", "prefix_negative", "prefix_oversize")
# API keys the broker does not speak (as of this writing; the test below asserts each is refused).
UNSUPPORTED_KEYS = (4, 5, 6, 7, 17, 24, 29, 50, 67, 1000, -1, 32767)


def unknown_tagged_field(tag: int, data: bytes) -> bytes:
    """A tagged-field section holding one field with tag ``tag`` (an unknown one for large tags)."""
    return encode_uvarint(1) + encode_uvarint(tag) + encode_uvarint(len(data)) + data


def header_tag_section_at(payload: bytes) -> int:
    """Offset of the (empty) tagged-field section of a v2 request header in ``payload``."""
    (client_id_length,) = struct.unpack_from(">h", payload, 8)
    return 10 + max(client_id_length, 0)


@st.composite
def fuzz_frames(draw: Any) -> FuzzFrame:
    api_key, api_version = draw(st.sampled_from(SUPPORTED_REQUESTS))
    body = draw(request_strategy(api_key, api_version))
    correlation_id = draw(st.integers(-(2**31), PROBE_CORRELATION_BASE - 1))
    client_id = draw(st.none() | st.text(max_size=8))
    payload = bytearray(encode_request_payload(body, correlation_id, client_id))
    flexible = type(body).__flexible__
    mutation = draw(st.sampled_from(PAYLOAD_MUTATIONS + FRAMING_MUTATIONS))
    if mutation == "bit_flips":
        for _ in range(draw(st.integers(1, 8))):
            bit = draw(st.integers(0, len(payload) * 8 - 1))
            payload[bit // 8] ^= 1 << (bit % 8)
    elif mutation == "insert_bytes":
        at = draw(st.integers(0, len(payload)))
        payload[at:at] = draw(st.binary(min_size=1, max_size=16))
    elif mutation == "delete_bytes":
        at = draw(st.integers(0, len(payload) - 1))
        del payload[at : at + draw(st.integers(1, 16))]
    elif mutation == "truncate":
        del payload[draw(st.integers(0, len(payload) - 1)):]
    elif mutation == "api_key":
        struct.pack_into(">h", payload, 0, draw(st.sampled_from(UNSUPPORTED_KEYS) | st.integers(-(2**15), 2**15 - 1)))
    elif mutation == "api_version":
        low, high = API_VERSIONS[api_key]
        struct.pack_into(">h", payload, 2, draw(st.sampled_from((low - 1, high + 1, -1, 2**15 - 1))
                                               | st.integers(-(2**15), 2**15 - 1)))
    elif mutation == "unknown_tag_header":
        if flexible:
            at = header_tag_section_at(bytes(payload))
            assert payload[at] == 0, "expected an empty header tag section"
            payload[at : at + 1] = unknown_tagged_field(draw(st.integers(0, 2**20)),
                                                        draw(st.binary(max_size=8)))
        else:
            mutation = "none"
    elif mutation == "unknown_tag_body":
        if flexible and payload[-1] == 0:  # the body's top-level tag section is empty
            payload[-1:] = unknown_tagged_field(draw(st.integers(100, 2**20)), draw(st.binary(max_size=8)))
        else:
            mutation = "none"
    elif mutation == "huge_count":
        # A big int32 or five-byte varint somewhere in the body: where it lands on an array
        # count, kio's native reader would reserve memory for that many elements.
        at = draw(st.integers(8, len(payload) - 1))
        if draw(st.booleans()):
            payload[at : at + 4] = struct.pack(">i", draw(st.sampled_from((2**31 - 1, 2**28, 2**24))))
        else:
            payload[at : at + 1] = draw(st.sampled_from((b"\x80\x80\x80\x80\x40", b"\xff\xff\xff\xff\x0f")))
    elif mutation == "trailing_bytes":
        payload += draw(st.binary(min_size=1, max_size=16))
    elif mutation == "random_payload":
        payload = bytearray(draw(st.binary(max_size=128)))
    elif mutation == "tiny_payload":
        payload = bytearray(draw(st.binary(max_size=9)))
    if mutation not in FRAMING_MUTATIONS:
        return FuzzFrame(size_prefixed(bytes(payload)), api_key, api_version, mutation, True)
    if mutation == "prefix_too_long":
        size = len(payload) + draw(st.integers(1, 4096))
    elif mutation == "prefix_too_short":
        size = draw(st.integers(0, len(payload) - 1))
    elif mutation == "prefix_negative":
        size = draw(st.integers(-(2**31), -1))
    else:
        size = draw(st.integers(DEFAULT_MAX_REQUEST_BYTES + 1, 2**31 - 1))
    return FuzzFrame(struct.pack(">i", size) + payload, api_key, api_version, mutation, False)


# --- the sender ---------------------------------------------------------------------------------


@dataclasses.dataclass
class FuzzStats:
    sent: int = 0
    answered: int = 0  # the probe behind the frame was answered: the connection survived
    closed: int = 0  # the broker closed the connection
    timed_out: int = 0  # no verdict within PROBE_TIMEOUT_S (a parked Fetch): we hung up
    framing: int = 0  # frames with a lying size prefix, sent last on their connection
    mutations: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)


class Fuzzer:
    """Sends fuzzed frames one at a time, reconnecting whenever the broker hangs up."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.stats = FuzzStats()
        self.recent: collections.deque[FuzzFrame] = collections.deque(maxlen=20)
        self._sock: socket.socket | None = None
        self._probe_ids = itertools.count(PROBE_CORRELATION_BASE)

    def _connection(self) -> socket.socket:
        if self._sock is None:
            self._sock = connect(self.bootstrap)
        return self._sock

    def _hang_up(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def send(self, frame: FuzzFrame) -> None:
        self.recent.append(frame)
        self.stats.sent += 1
        self.stats.mutations[frame.mutation] += 1
        sock = self._connection()
        try:
            if frame.framing_ok:
                probe_id = next(self._probe_ids)
                sock.sendall(frame.data + encode_request(API_VERSIONS_V0(), probe_id))
                self._await_probe(sock, probe_id)
            else:
                self.stats.framing += 1
                sock.sendall(frame.data)
                sock.shutdown(socket.SHUT_WR)
                assert connection_closed_by_peer(sock, DRAIN_TIMEOUT_S), (
                    f"the broker kept a half-closed connection open after {frame!r}"
                )
                self._hang_up()
        except (ConnectionResetError, BrokenPipeError):
            self.stats.closed += 1
            self._hang_up()

    def _await_probe(self, sock: socket.socket, probe_id: int) -> None:
        sock.settimeout(PROBE_TIMEOUT_S)
        try:
            while True:
                frame = recv_frame(sock)
                if frame is None:
                    self.stats.closed += 1
                    self._hang_up()
                    return
                (correlation_id,) = struct.unpack_from(">i", frame, 0)
                if correlation_id == probe_id:
                    response, _ = entity_reader(API_VERSIONS_RESPONSE_V0)(frame, 4)
                    assert response.error_code == ErrorCode.none, response
                    self.stats.answered += 1
                    return
        except TimeoutError:
            self.stats.timed_out += 1
            self._hang_up()

    def close(self) -> None:
        self._hang_up()


def report(fuzzer: Fuzzer) -> str:
    recent = "\n  ".join(repr(frame) for frame in fuzzer.recent)
    return f"{fuzzer.stats}\nlast frames sent, oldest first:\n  {recent}"


def broker_log(broker: BrokerProcess) -> str:
    return Path(broker.log_path).read_text(errors="replace")


def bystander_still_served(sock: socket.socket, correlation_id: int) -> None:
    response = round_trip(sock, METADATA_V12(topics=(), allow_auto_topic_creation=False,
                                             include_topic_authorized_operations=False),
                          correlation_id)
    assert len(response.brokers) == 1, response


def real_client_round_trip(bootstrap: str, topic: str, count: int = 100) -> None:
    """confluent-kafka produces ``count`` messages and reads them back from offset 0."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    errors: list[object] = []
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    sent = [f"after-the-storm-{i}".encode() for i in range(count)]
    for value in sent:
        producer.produce(topic, value=value, partition=0,
                         on_delivery=lambda err, _msg: errors.append(err) if err else None)
    assert producer.flush(30) == 0, "confluent-kafka producer did not drain"
    assert not errors, errors[:3]
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused-no-commit",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    got: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + 30
    try:
        while len(got) < count and time.monotonic() < deadline:
            for message in consumer.consume(count, 1.0):
                assert message.error() is None, message.error()
                got.append((message.offset(), message.value()))
    finally:
        consumer.close()
    assert got == list(enumerate(sent)), got[:5]


# --- the storm ----------------------------------------------------------------------------------


def test_broker_survives_10000_fuzzed_frames_and_still_serves_a_real_client(tmp_path: Path) -> None:
    """At least 10,000 generated and mutated frames leave the broker running, answering a fresh
    and a bystander connection after every batch, logging closed peers, and serving a real
    client that produces and consumes 100 messages afterwards."""
    with BrokerProcess(data_dir=tmp_path) as broker:
        fuzzer = Fuzzer(broker.bootstrap)
        bystander = connect(broker.bootstrap)
        checks = itertools.count(1)

        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate],  # the broker is stateful: no shrinking
                  suppress_health_check=list(HealthCheck))
        @given(st.lists(fuzz_frames(), min_size=FRAMES_PER_EXAMPLE, max_size=FRAMES_PER_EXAMPLE))
        def storm(frames: list[FuzzFrame]) -> None:
            for frame in frames:
                fuzzer.send(frame)
                assert broker.running, f"broker died\n{report(fuzzer)}"
            assert broker.running, f"broker died\n{report(fuzzer)}"
            assert_api_versions_ok(broker.bootstrap)
            bystander_still_served(bystander, next(checks))

        try:
            storm()
        finally:
            fuzzer.close()
        print(f"fuzz: {fuzzer.stats}")
        assert fuzzer.stats.sent >= MIN_FRAMES, fuzzer.stats
        # The mix must actually exercise both outcomes, or the generator has gone wrong.
        assert fuzzer.stats.answered > MIN_FRAMES // 10, fuzzer.stats
        assert fuzzer.stats.closed > MIN_FRAMES // 10, fuzzer.stats
        bystander_still_served(bystander, 0)
        bystander.close()

        real_client_round_trip(broker.bootstrap, "after-the-storm")
        log = broker_log(broker)
        assert "closing connection from 127.0.0.1:" in log
        # Handlers must validate what they are sent: a traceback means one raised on some input
        # (contained, but a bug: Kafka would answer with an error code).
        assert "Traceback" not in log, log[log.index("Traceback") - 300 :][:4000]
        assert broker.running


# --- focused cases ------------------------------------------------------------------------------


def request(api_key: int, api_version: int, data: dict[str, Any]) -> Any:
    """A kio request of that version from a dict (unset fields get defaults or zero values)."""
    return build(request_class(api_key, api_version), data)


def local_peer(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"{host}:{port}"


def assert_logged(broker: BrokerProcess, *needles: str, timeout_s: float = 5.0) -> str:
    """Wait until one line of the broker log holds every needle; return that line."""
    deadline = time.monotonic() + timeout_s
    while True:
        for line in broker_log(broker).splitlines():
            if all(needle in line for needle in needles):
                return line
        assert time.monotonic() < deadline, f"no broker log line with {needles}:\n{broker_log(broker)[-3000:]}"
        time.sleep(0.05)


def api_versions_v0_round_trip(sock: socket.socket, correlation_id: int) -> Any:
    response = round_trip(sock, API_VERSIONS_V0(), correlation_id)
    assert response.error_code == ErrorCode.none, response
    return response


def test_oversized_frame_closes_only_that_connection(tmp_path: Path) -> None:
    """A frame over socket.request.max.bytes closes its connection, is logged with the peer,
    and another connection that stays open keeps being answered; a frame of exactly the
    limit is still accepted."""
    limit = 1024
    with BrokerProcess(overrides={"socket.request.max.bytes": str(limit)}, data_dir=tmp_path) as broker, \
            connect(broker.bootstrap) as bystander, connect(broker.bootstrap) as offender:
        api_versions_v0_round_trip(bystander, 1)
        api_versions_v0_round_trip(offender, 1)
        offender.sendall(struct.pack(">i", limit + 1) + b"\x00" * 64)
        assert connection_closed_by_peer(offender), "an oversized frame must close its connection"
        assert_logged(broker, f"closing connection from {local_peer(offender)}",
                      f"exceeds socket.request.max.bytes={limit}")
        api_versions_v0_round_trip(bystander, 2)
        with connect(broker.bootstrap) as exact:
            # Trailing bytes after the body are tolerated (as Kafka does), so padding a valid
            # ApiVersions request makes a frame of exactly the limit.
            payload = encode_request_payload(API_VERSIONS_V0(), 3)
            exact.sendall(size_prefixed(payload + b"\x00" * (limit - len(payload))))
            frame = recv_frame(exact)
            assert frame is not None, "a frame of exactly socket.request.max.bytes was refused"
        assert broker.running


def test_negative_frame_size_closes_the_connection(broker: BrokerProcess) -> None:
    """A negative size prefix closes the connection and the broker stays healthy."""
    with connect(broker.bootstrap) as sock:
        sock.sendall(struct.pack(">i", -5))
        assert connection_closed_by_peer(sock)
        assert_logged(broker, f"closing connection from {local_peer(sock)}", "negative size")
    assert_api_versions_ok(broker.bootstrap)


@pytest.mark.parametrize("api_key", [4, 29, 1000, -1, 32767])  # 4: LeaderAndIsr, 29: DescribeAcls
def test_unknown_api_key_closes_the_connection(broker: BrokerProcess, api_key: int) -> None:
    """A request for an API the broker does not speak closes the connection (what Kafka does),
    logged with the peer address."""
    with connect(broker.bootstrap) as sock:
        api_versions_v0_round_trip(sock, 1)
        sock.sendall(size_prefixed(struct.pack(">hhih", api_key, 0, 2, 1) + b"x" + b"\x00" * 8))
        assert connection_closed_by_peer(sock)
        assert_logged(broker, f"closing connection from {local_peer(sock)}",
                      f"API key {api_key} version 0 is not supported")
    assert_api_versions_ok(broker.bootstrap)


def test_unsupported_version_of_a_known_api_closes_the_connection(broker: BrokerProcess) -> None:
    """Metadata at a version above the advertised range closes the connection."""
    high = API_VERSIONS[3][1]
    with connect(broker.bootstrap) as sock:
        sock.sendall(size_prefixed(struct.pack(">hhih", 3, high + 1, 2, 0) + b"\x00\x00\x00"))
        assert connection_closed_by_peer(sock)
        assert_logged(broker, f"closing connection from {local_peer(sock)}",
                      f"API key 3 version {high + 1} is not supported")


def test_api_versions_v99_gets_a_v0_unsupported_version_answer(broker: BrokerProcess) -> None:
    """ApiVersions at a version the broker does not know is answered in v0 with
    UNSUPPORTED_VERSION and the full list of supported ranges (KIP-511), and the connection
    stays usable for the retry at a supported version."""
    with connect(broker.bootstrap) as sock:
        # A v99 request: a v2 header (flexible) and a body the broker must not try to parse.
        sock.sendall(size_prefixed(struct.pack(">hhih", 18, 99, 4242, 4) + b"kcon" + b"\x00"
                                   + b"\x07\xff\xfe garbage"))
        frame = recv_frame(sock)
        assert frame is not None, "the broker closed the connection instead of answering"
        correlation_id, response = decode_response(18, 0, frame)
        assert correlation_id == 4242
        assert response.error_code == ErrorCode.unsupported_version
        assert response.error_code.value == 35
        ranges = {k.api_key: (k.min_version, k.max_version) for k in response.api_keys}
        assert ranges == API_VERSIONS
        # The client retries at a version both sides speak, on the same connection.
        retried = round_trip(sock, request(18, 3, {"client_software_name": "kconform",
                                                    "client_software_version": "1"}), 4243)
        assert retried.error_code == ErrorCode.none


@pytest.mark.parametrize("where", ["header", "body"])
def test_an_unknown_tagged_field_is_skipped(broker: BrokerProcess, where: str) -> None:
    """KIP-482: a flexible request carrying a tagged field the broker does not know is answered
    as without it, on the same connection, which stays open for the next request."""
    payload = bytearray(encode_request_payload(
        request(3, 12, {"topics": None, "allow_auto_topic_creation": False}), 9))
    if where == "header":
        at = header_tag_section_at(bytes(payload))
        payload[at : at + 1] = unknown_tagged_field(777, b"??")
    else:
        assert payload[-1] == 0
        payload[-1:] = unknown_tagged_field(777, b"??")
    with connect(broker.bootstrap) as sock:
        sock.sendall(size_prefixed(bytes(payload)))
        frame = recv_frame(sock)
        assert frame is not None, "the broker closed the connection"
        correlation, answer = decode_response(3, 12, frame)
        assert correlation == 9 and len(answer.brokers) == 1
        again = round_trip(sock, request(18, 3, {"client_software_name": "kconform",
                                                 "client_software_version": "1"}), 10)
        assert again.error_code == ErrorCode.none
    assert "Unknown tagged field" not in broker_log(broker)


def test_null_array_in_a_non_nullable_field_closes_the_connection(broker: BrokerProcess) -> None:
    """An array of length -1 where the schema forbids null (DeleteTopics v1 topic names) is a
    malformed request, not a handler crash."""
    payload = struct.pack(">hhih", 20, 1, 3, 1) + b"x" + struct.pack(">ii", -1, 1000)
    with connect(broker.bootstrap) as sock:
        sock.sendall(size_prefixed(payload))
        assert connection_closed_by_peer(sock)
        assert_logged(broker, f"closing connection from {local_peer(sock)}",
                      "non-nullable field topic_names is null")
    assert "Traceback" not in broker_log(broker)


@pytest.mark.parametrize("sent", [b"\x00\x00", struct.pack(">i", 100) + b"\x00\x03" + b"\x00" * 40])
def test_truncated_frame_then_client_close_leaves_the_broker_healthy(broker: BrokerProcess,
                                                                     sent: bytes) -> None:
    """A client that sends part of a size prefix or of a frame and then hangs up leaves the
    broker running and answering new connections."""
    with connect(broker.bootstrap) as sock:
        sock.sendall(sent)
    assert_api_versions_ok(broker.bootstrap)
    assert broker.running


def test_huge_partition_counts_are_refused(broker: BrokerProcess) -> None:
    """CreateTopics and CreatePartitions asking for 2**31-1 partitions get INVALID_PARTITIONS
    at once instead of the broker creating directories without end."""
    with connect(broker.bootstrap, timeout_s=10) as sock:
        created = round_trip(sock, request(19, 7, {"topics": [
            {"name": "huge", "num_partitions": 2**31 - 1, "replication_factor": 1},
            {"name": "small", "num_partitions": 2, "replication_factor": 1},
        ], "timeout": 10_000}), 1)
        by_name = {topic.name: topic for topic in created.topics}
        assert by_name["huge"].error_code == ErrorCode.invalid_partitions, by_name["huge"]
        assert "at most 10000" in (by_name["huge"].error_message or "")
        assert by_name["small"].error_code == ErrorCode.none, by_name["small"]
        grown = round_trip(sock, request(37, 3, {"topics": [
            {"name": "small", "count": 2**31 - 1, "assignments": None}], "timeout": 10_000}), 2)
        assert grown.results[0].error_code == ErrorCode.invalid_partitions, grown.results[0]
    assert not list(Path(broker.data_dir, "data").glob("huge-*"))
    assert len(list(Path(broker.data_dir, "data").glob("small-*"))) == 2


def test_produce_with_a_gigantic_declared_batch_length_is_rejected(broker: BrokerProcess) -> None:
    """A batch announcing 2**31-1 bytes in a small request is CORRUPT_MESSAGE, answered on a
    connection that stays open, and nothing is stored."""
    batch = bytearray(build_batch([Record(0, 1_700_000_000_000, b"k", b"v")], base_offset=0))
    struct.pack_into(">i", batch, 8, 2**31 - 1)
    with connect(broker.bootstrap) as sock:
        response = round_trip(sock, request(0, 9, {"acks": -1, "timeout": 5000, "topic_data": [
            {"name": "giant", "partition_data": [{"index": 0, "records": bytes(batch)}]}]}), 1)
        result = response.responses[0].partition_responses[0]
        assert result.error_code == ErrorCode.corrupt_message, result
        api_versions_v0_round_trip(sock, 2)
        listed = round_trip(sock, request(2, 7, {"replica_id": -1, "isolation_level": 0, "topics": [
            {"name": "giant", "partitions": [{"partition_index": 0, "timestamp": -1}]}]}), 3)
        assert listed.topics[0].partitions[0].offset == 0


# Requests that used to make a handler raise (found by the storm above): each must now be
# answered properly, on a connection that stays open.


def test_fetch_v4_without_session_fields_is_answered(broker: BrokerProcess) -> None:
    """Fetch v4-v6 have no session id (KIP-227 came in v7) and v7-v8 partitions no leader
    epoch; both are answered instead of crashing the handler."""
    with connect(broker.bootstrap) as sock:
        for version, correlation_id in ((4, 1), (7, 2)):
            response = round_trip(sock, request(1, version, {
                "replica_id": -1, "max_wait": 0, "min_bytes": 0, "max_bytes": 1000,
                "topics": [{"topic": "nope", "partitions": [
                    {"partition": 0, "fetch_offset": 0, "partition_max_bytes": 1000}]}],
            }), correlation_id)
            partition = response.responses[0].partitions[0]
            assert partition.error_code == ErrorCode.unknown_topic_or_partition, partition
    assert "Traceback" not in broker_log(broker)


@pytest.mark.parametrize("version", [1, 9, 10, 11, 12])
def test_metadata_for_an_empty_topic_name_or_unknown_id_is_answered(broker: BrokerProcess,
                                                                   version: int) -> None:
    """Metadata naming the topic "" (or, from v10, an unknown topic id) gets an error entry for
    it, encodable in every version (the topic name is nullable only from v12)."""
    topics: list[dict[str, Any]] = [{"name": ""}]
    if version >= 10:
        topics.append({"name": None, "topic_id": uuid.uuid4()})
    with connect(broker.bootstrap) as sock:
        response = round_trip(sock, request(3, version, {"topics": topics,
                                                         "allow_auto_topic_creation": True}), 1)
    errors = [topic.error_code for topic in response.topics]
    assert errors[0] in (ErrorCode.invalid_topic_exception, ErrorCode.unknown_topic_or_partition)
    if version >= 10:
        assert errors[1] == ErrorCode.unknown_topic_id
    assert "Traceback" not in broker_log(broker)


def test_parked_fetch_is_dropped_when_its_client_hangs_up(tmp_path: Path) -> None:
    """A Fetch parked for a long max_wait is cancelled when its client disconnects, instead of
    holding a task and a waiter until the deadline (in-process: nothing else can observe it)."""
    async def parked_tasks() -> list[asyncio.Task[Any]]:
        return [task for task in asyncio.all_tasks()
                if getattr(task.get_coro(), "__name__", "") == "_parked"]

    async def eventually(condition: Any) -> None:
        deadline = time.monotonic() + 5
        while not await condition():
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.01)

    async def scenario() -> None:
        config = load_broker_config(None, [("listeners", "PLAINTEXT://127.0.0.1:0"),
                                           ("log.dirs", str(tmp_path))])
        server = BrokerServer(config)
        await server.start()
        try:
            create_topic(server.broker, "parked", 1, 1, {}, 0)
            _, writer = await asyncio.open_connection("127.0.0.1", server.broker.bound_ports["PLAINTEXT"])
            writer.write(encode_request(request(1, 12, {
                "replica_id": -1, "max_wait": 600_000, "min_bytes": 1, "max_bytes": 1000,
                "session_epoch": -1,
                "topics": [{"topic": "parked", "partitions": [
                    {"partition": 0, "fetch_offset": 0, "partition_max_bytes": 1000,
                     "current_leader_epoch": -1, "last_fetched_epoch": -1}]}],
            }), 1))
            await writer.drain()

            async def parked() -> bool:
                return len(await parked_tasks()) == 1

            async def released() -> bool:
                return not await parked_tasks() and not server._fetch_waiters

            await eventually(parked)
            writer.close()
            await writer.wait_closed()
            await eventually(released)
        finally:
            await server.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize("timestamp", [0, -3])
def test_list_offsets_over_an_undecodable_compressed_batch_is_answered(broker: BrokerProcess,
                                                                       timestamp: int) -> None:
    """Produce keeps compressed batches opaque, so a zstd-flagged batch with a garbage body but
    a valid CRC is stored; a ListOffsets timestamp lookup that must decode it answers
    CORRUPT_MESSAGE for that partition instead of crashing the handler."""
    batch = bytearray(build_batch([Record(0, 1_700_000_000_000, b"k", b"v" * 20)], base_offset=0))
    struct.pack_into(">h", batch, 21, 4)  # attributes: zstd
    struct.pack_into(">I", batch, 17, crc32c(bytes(batch[21:])))
    with connect(broker.bootstrap) as sock:
        produced = round_trip(sock, request(0, 9, {"acks": -1, "timeout": 5000, "topic_data": [
            {"name": "opaque", "partition_data": [{"index": 0, "records": bytes(batch)}]}]}), 1)
        assert produced.responses[0].partition_responses[0].error_code == ErrorCode.none
        listed = round_trip(sock, request(2, 7, {"replica_id": -1, "isolation_level": 0, "topics": [
            {"name": "opaque", "partitions": [{"partition_index": 0, "timestamp": timestamp}]}]}), 2)
        assert listed.topics[0].partitions[0].error_code == ErrorCode.corrupt_message
        api_versions_v0_round_trip(sock, 3)
    assert "Traceback" not in broker_log(broker)


def test_a_partition_the_cleaner_cannot_decode_does_not_stop_compaction_of_others(tmp_path: Path) -> None:
    """A stored batch whose compressed body does not decode (produce keeps batches opaque) makes
    the cleaner skip that partition with a logged error, and later partitions still compact."""
    broker = Broker(load_broker_config(None, [("log.dirs", str(tmp_path))]), 0)
    compact = {"segment.bytes": "100", "cleanup.policy": "compact",
               "min.cleanable.dirty.ratio": "0.01", "min.compaction.lag.ms": "0"}
    for name in ("bad", "good"):
        # Created with cleanup.policy=delete (a compacted topic decodes batches on append) and
        # switched to compact once the batches are stored, as IncrementalAlterConfigs may do.
        create_topic(broker, name, 1, 1, {"segment.bytes": "100"}, 0)
        partition = broker.partition(name, 0)
        assert partition is not None
        for i in range(4):
            batch = bytearray(build_batch([Record(0, 1000 + i, b"same-key", b"v" * 20)], base_offset=0))
            if name == "bad" and i == 0:
                struct.pack_into(">h", batch, 21, 4)  # zstd flag over an uncompressed body
                struct.pack_into(">I", batch, 17, crc32c(bytes(batch[21:])))
            # As Produce appends: the high watermark follows, and compaction stops at it.
            partition.append_as_leader(batch, validate_batches(batch), 1000 + i)
    for name in ("bad", "good"):
        set_topic_configs(broker, name, compact)
    before = {name: broker.partition(name, 0).log.size_bytes for name in ("bad", "good")}  # type: ignore[union-attr]
    try:
        broker.run_cleaner(2_000_000_000_000)
        after = {name: broker.partition(name, 0).log.size_bytes for name in ("bad", "good")}  # type: ignore[union-attr]
    finally:
        broker.close()
    assert after["bad"] == before["bad"]
    assert after["good"] < before["good"], (before, after)


HANDLER_EXAMPLES = 3000


def test_every_well_formed_request_gets_an_encodable_answer(tmp_path: Path) -> None:
    """Any well-formed request of any supported API and version gets from its handler a
    response the version can encode, or a deliberate CloseConnection, never an exception."""
    # In-process and stateful (topics one example creates serve the next): this reaches handler
    # paths far faster than the storm over sockets does.
    broker = Broker(load_broker_config(None, [("log.dirs", str(tmp_path))]), 0)
    clock = [1_700_000_000_000]  # only moves forward, across examples too
    requests = st.sampled_from(SUPPORTED_REQUESTS).flatmap(
        lambda kv: st.tuples(st.just(kv), request_strategy(*kv)))

    @settings(max_examples=HANDLER_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(requests)
    def answer(case: tuple[tuple[int, int], Any]) -> None:
        (api_key, api_version), body = case
        ctx = RequestContext(api_key, api_version, 1, "fuzz", "PLAINTEXT", "127.0.0.1:1")
        now_ms = clock[0]
        try:
            if api_key == FETCH:
                response = handle_fetch(broker, ctx, body, now_ms).response
            else:
                response = HANDLERS[api_key](broker, ctx, body, now_ms)
        except CloseConnection:
            return
        if isinstance(response, Deferred):
            # A JoinGroup/SyncGroup held for a rebalance: let the core's timers settle it.
            answers: list[Any] = []
            response.on_resolved(answers.append)
            for _ in range(1000):
                if answers:
                    break
                clock[0] += 1000
                broker.tick(clock[0])
            if not answers:
                return  # still held (e.g. waiting for other members): nothing to encode yet
            response = answers[0]
        if response is not None:
            encode_response(1, build_response(api_key, api_version, response))

    try:
        answer()
    finally:
        broker.close()


def test_partitions_beyond_the_open_file_budget_are_refused(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The node refuses new partitions its open-file limit could not hold (each keeps its
    segment files open), so running out of descriptors cannot stop it accepting connections."""
    monkeypatch.setattr(topic_admin_module, "partition_budget", lambda: 4)
    broker = Broker(load_broker_config(None, [("log.dirs", str(tmp_path))]), 0)
    try:
        broker.admin.check_new_topic("three", 3, 1, {})
        create_topic(broker, "three", 3, 1, {}, 0)
        with pytest.raises(BrokerError, match="open-file limit") as refused:
            broker.admin.check_new_topic("two", 2, 1, {})
        assert refused.value.error == ErrorCode.invalid_partitions
        with pytest.raises(BrokerError, match="open-file limit"):
            add_partitions(broker, "three", 5, 0, validate_only=True)
        add_partitions(broker, "three", 4, 0, validate_only=False)
        assert broker.topics.get("three").partitions == 4  # type: ignore[union-attr]
    finally:
        broker.close()


@pytest.mark.parametrize("frame_payload", [
    struct.pack(">hhih", 3, 1, 1, 0) + struct.pack(">i", 2**31 - 1) + b"\x00" * 8,
    struct.pack(">hhih", 3, 12, 1, 0) + b"\x00" + b"\x80\x80\x80\x80\x40" + b"\x00" * 8,  # 2**34 - 1
], ids=["legacy-2**31-1", "compact-2**34"])
def test_an_array_count_larger_than_the_frame_closes_only_that_connection(
        broker: BrokerProcess, frame_payload: bytes) -> None:
    """A tiny request declaring billions of array elements is refused before kio's native
    reader tries to reserve memory for them (a failed allocation there aborted the broker)."""
    with connect(broker.bootstrap) as sock:
        sock.sendall(size_prefixed(frame_payload))
        assert connection_closed_by_peer(sock)
        assert_logged(broker, f"closing connection from {local_peer(sock)}", "elements but only")
    assert broker.running
    assert_api_versions_ok(broker.bootstrap)
