"""Bad input never takes the reference broker down (DESIGN.md principle 8).

Malformed, truncated and oversized frames, unknown API keys and versions and unknown tagged
fields make the broker answer with an error or close *that* connection, log the event with the
peer address, and keep serving everyone else. The Hypothesis test throws at least 10,000
generated and mutated frames at a live broker process, checking after every example that the
process is alive, that a fresh connection and a bystander connection opened before the storm
still get answers, and at the end that a real client still round-trips.

Each fuzzed frame is followed on the same connection by an ApiVersions v0 "probe": the broker
answers requests strictly in order, so the probe's answer (or the connection closing) says the
fuzzed frame has been dealt with, without waiting on a fixed timeout. Frames whose size prefix
lies are sent last on their connection, which is then half-closed and drained.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import socket
import struct
import time
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kio.index import load_request_schema, load_response_schema
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader

from reference_broker.process import BrokerProcess
from reference_broker.protocol.api_versions import API_VERSIONS
from tests.helpers import (
    SUPPORTED_REQUESTS,
    assert_api_versions_ok,
    connect,
    connection_closed_by_peer,
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
DRAIN_TIMEOUT_S = 2.0
DEFAULT_MAX_REQUEST_BYTES = 104_857_600

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
    "random_payload", "tiny_payload",
)
FRAMING_MUTATIONS = ("prefix_too_long", "prefix_too_short", "prefix_negative", "prefix_oversize")
UNSUPPORTED_KEYS = (4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 22, 50, 67, 1000, -1, 32767)


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def unknown_tagged_field(tag: int, data: bytes) -> bytes:
    """A tagged-field section holding one field with tag ``tag`` (an unknown one for large tags)."""
    return _uvarint(1) + _uvarint(tag) + _uvarint(len(data)) + data


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


@pytest.mark.clients
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
        assert broker.running
