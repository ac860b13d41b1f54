"""Real Kafka clients round-trip 10,000 messages through a reference broker process.

Each client library produces 2,500 messages with each of the four compression codecs (keys and
headers included) and then consumes all 10,000 from offset 0: offsets must be contiguous and
every key, value and header must come back intact.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import attrs
import pytest

from launch.broker_process import BrokerProcess
from tests.helpers import require_kcat

pytestmark = pytest.mark.clients

CODECS = ("gzip", "snappy", "lz4", "zstd")
PER_CODEC = 2500
TOTAL = PER_CODEC * len(CODECS)
TIMEOUT_S = 60.0
T = TypeVar("T")


@attrs.frozen
class Message:
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


@attrs.frozen
class Consumed:
    offset: int
    message: Message


def expected_messages(codec: str) -> list[Message]:
    # Values are unique per run and long enough to compress; headers differ per message.
    return [
        Message(
            key=f"key-{codec}-{i % 97}".encode(),
            value=f"{codec}-{i:05d}-".encode() + b"payload " * (i % 13),
            headers=(("codec", codec.encode()), ("seq", str(i).encode())),
        )
        for i in range(PER_CODEC)
    ]


def check_round_trip(consumed: list[Consumed], sent: list[Message]) -> None:
    assert [c.offset for c in consumed] == list(range(len(sent))), "offsets not contiguous from 0"
    for got, want in zip(consumed, sent, strict=True):
        assert got.message == want, f"offset {got.offset}: {got.message} != {want}"


# --- confluent-kafka ----------------------------------------------------------------------------


def confluent_produce(bootstrap: str, topic: str, codec: str, messages: list[Message]) -> None:
    from confluent_kafka import Producer

    errors: list[object] = []
    producer = Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "linger.ms": 5})
    for m in messages:
        producer.produce(topic, key=m.key, value=m.value, headers=list(m.headers),
                         on_delivery=lambda err, _msg: errors.append(err) if err else None)
        producer.poll(0)
    assert producer.flush(TIMEOUT_S) == 0, "confluent-kafka producer did not drain"
    assert not errors, errors[:3]


def confluent_consume(bootstrap: str, topic: str, count: int) -> list[Consumed]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused-no-commit",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    out: list[Consumed] = []
    try:
        for batch in _until(lambda: consumer.consume(1000, 1.0), lambda: len(out) >= count):
            for msg in batch:
                assert msg.error() is None, msg.error()
                headers = tuple((k, v) for k, v in (msg.headers() or []))
                out.append(Consumed(msg.offset(), Message(msg.key(), msg.value(), headers)))
    finally:
        consumer.close()
    return out


# --- kafka-python -------------------------------------------------------------------------------


def kafka_python_produce(bootstrap: str, topic: str, codec: str, messages: list[Message]) -> None:
    from kafka import KafkaProducer

    # kafka-python 3 is idempotent by default (InitProducerId, sequence numbers).
    producer = KafkaProducer(bootstrap_servers=bootstrap, compression_type=codec, linger_ms=5)
    futures = [producer.send(topic, key=m.key, value=m.value, headers=list(m.headers))
               for m in messages]
    producer.flush(TIMEOUT_S)
    for future in futures:
        future.get(TIMEOUT_S)
    producer.close()


def kafka_python_consume(bootstrap: str, topic: str, count: int) -> list[Consumed]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                             enable_auto_commit=False, auto_offset_reset="earliest")
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek(tp, 0)
    out: list[Consumed] = []
    try:
        for polled in _until(lambda: consumer.poll(1000), lambda: len(out) >= count):
            for record in polled.get(tp, []):
                headers = tuple((k, v) for k, v in record.headers)
                out.append(Consumed(record.offset, Message(record.key, record.value, headers)))
    finally:
        consumer.close()
    return out


# --- aiokafka -----------------------------------------------------------------------------------


def aiokafka_produce(bootstrap: str, topic: str, codec: str, messages: list[Message]) -> None:
    from aiokafka import AIOKafkaProducer

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, compression_type=codec,
                                    linger_ms=5)
        await producer.start()
        try:
            futures = [await producer.send(topic, key=m.key, value=m.value,
                                           headers=list(m.headers)) for m in messages]
            await asyncio.wait_for(asyncio.gather(*futures), TIMEOUT_S)
        finally:
            await producer.stop()

    asyncio.run(run())


def aiokafka_consume(bootstrap: str, topic: str, count: int) -> list[Consumed]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def run() -> list[Consumed]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="earliest")
        await consumer.start()
        out: list[Consumed] = []
        try:
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            consumer.seek(tp, 0)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + TIMEOUT_S
            while len(out) < count and loop.time() < deadline:
                polled = await consumer.getmany(tp, timeout_ms=1000)
                for record in polled.get(tp, []):
                    headers = tuple((k, v) for k, v in record.headers)
                    out.append(Consumed(record.offset, Message(record.key, record.value, headers)))
        finally:
            await consumer.stop()
        return out

    return asyncio.run(run())


# --- kcat ---------------------------------------------------------------------------------------


def kcat_produce(bootstrap: str, topic: str, codec: str, messages: list[Message]) -> None:
    # kcat reads one "key<TAB>value" message per line and sets the same -H headers on all of
    # them, so this test sends only the per-codec header and one-line values.
    kcat = require_kcat()
    lines = b"".join(m.key + b"\t" + m.value + b"\n" for m in messages)
    subprocess.run(
        [kcat, "-P", "-b", bootstrap, "-t", topic, "-p", "0", "-z", codec, "-K", "\t",
         "-H", f"codec={codec}", "-X", "linger.ms=5"],
        input=lines, check=True, timeout=TIMEOUT_S,
    )


def kcat_consume(bootstrap: str, topic: str, count: int) -> list[Consumed]:
    kcat = require_kcat()
    result = subprocess.run(
        [kcat, "-C", "-b", bootstrap, "-t", topic, "-p", "0", "-o", "beginning", "-e",
         "-c", str(count), "-f", "%o\t%k\t%h\t%s\n"],
        capture_output=True, check=True, timeout=TIMEOUT_S,
    )
    out = []
    for line in result.stdout.splitlines():
        offset, key, headers, value = line.split(b"\t", 3)
        parsed = tuple(
            (k.decode(), v) for k, _, v in (h.partition(b"=") for h in headers.split(b",") if h)
        )
        out.append(Consumed(int(offset), Message(key, value, parsed)))
    return out


def _until(poll: Callable[[], T], done: Callable[[], bool]) -> Iterator[T]:
    """Call ``poll`` until ``done()`` holds or the timeout passes."""
    deadline = time.monotonic() + TIMEOUT_S
    while not done() and time.monotonic() < deadline:
        yield poll()


CLIENTS = {
    "confluent-kafka": (confluent_produce, confluent_consume),
    "kafka-python": (kafka_python_produce, kafka_python_consume),
    "aiokafka": (aiokafka_produce, aiokafka_consume),
    "kcat": (kcat_produce, kcat_consume),
}


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_client_round_trips_10000_messages_with_every_codec(
    broker: BrokerProcess, client: str
) -> None:
    """A client produces 10,000 keyed messages with headers over all four codecs and reads
    every one back at contiguous offsets from 0, byte for byte."""
    produce, consume = CLIENTS[client]
    topic = f"roundtrip-{client}"
    sent: list[Message] = []
    for codec in CODECS:
        messages = expected_messages(codec)
        if client == "kcat":
            messages = [attrs.evolve(m, headers=(("codec", codec.encode()),)) for m in messages]
        produce(broker.bootstrap, topic, codec, messages)
        sent += messages
    consumed = consume(broker.bootstrap, topic, TOTAL)
    check_round_trip(consumed, sent)
