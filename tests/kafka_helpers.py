"""Thin confluent-kafka and wire-client helpers shared by the broker's integration tests."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from harness.clients import ConsumerSettings, make_consumer
from harness.history import HistoryBuilder
from harness.wire import WireClient
from launch import kafka_jars

TIMEOUT_S = 30.0

CLUSTER_SESSION_MS = 1500
FAST_CLUSTER: dict[str, str] = {
    "broker.session.timeout.ms": str(CLUSTER_SESSION_MS),
    "broker.heartbeat.interval.ms": "300",
    "offsets.topic.num.partitions": "3",
    "group.initial.rebalance.delay.ms": "0",
}
"""Settings for a reference cluster that reacts within a test's patience: a dead broker is fenced
after a short session, the offsets topic is small, and a group does not wait for more members."""


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def create_topic(bootstrap: str, name: str, partitions: int = 1,
                 config: Mapping[str, str] | None = None) -> None:
    client = admin(bootstrap)  # must outlive the future, or librdkafka cancels it
    futures = client.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=dict(config or {}))]
    )
    futures[name].result(TIMEOUT_S)


def produce(
    bootstrap: str,
    topic: str,
    messages: Iterable[tuple[bytes | None, bytes | None]],
    partition: int = 0,
    timestamp_ms: int | None = None,
    **config: Any,
) -> list[int]:
    """Produce (key, value) pairs and return their offsets, failing on any delivery error."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1, **config})
    offsets: list[int] = []
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(err)
        else:
            offsets.append(msg.offset())

    for key, value in messages:
        extra = {"timestamp": timestamp_ms} if timestamp_ms is not None else {}
        producer.produce(topic, key=key, value=value, partition=partition,
                         on_delivery=on_delivery, **extra)
        producer.poll(0)
    assert producer.flush(TIMEOUT_S) == 0, "producer did not drain"
    assert not errors, errors[:3]
    return offsets


def consume_all(bootstrap: str, topic: str, partition: int = 0, start: int = 0,
                expect: int | None = None, idle_s: float = 2.0) -> list[Message]:
    """Read a partition from ``start`` until ``expect`` messages arrived, or nothing came for
    ``idle_s``; returns the messages in order."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "kconform-tests",
                        "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(topic, partition, start)])
    out: list[Message] = []
    last = time.monotonic()
    deadline = last + TIMEOUT_S
    try:
        while time.monotonic() < deadline and (expect is None or len(out) < expect):
            batch = consumer.consume(1000, 0.2)
            for msg in batch:
                if msg.error() is not None:
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise AssertionError(f"consume error: {msg.error()}")
                out.append(msg)
            if batch:
                last = time.monotonic()
            elif time.monotonic() - last > idle_s:
                break
    finally:
        consumer.close()
    return out


def wire(bootstrap: str, api_key: int, version: int, fields: Mapping[str, Any]) -> Any:
    """One request over a fresh wire connection; returns the kio response."""

    async def run() -> Any:
        async with WireClient.for_bootstrap(bootstrap) as client:
            return await client.call(api_key, version, fields)

    return asyncio.run(run())


def topic_id(bootstrap: str, topic: str) -> Any:
    response = wire(bootstrap, 3, 12, {"topics": [{"name": topic, "topic_id": None}],
                                       "allow_auto_topic_creation": False,
                                       "include_topic_authorized_operations": False})
    return response.topics[0].topic_id


def read_values(bootstrap: str, partitions: Iterable[tuple[str, int]], isolation: str, expected: int,
                timeout_s: float = 60.0, idle_s: float = 3.0) -> list[bytes]:
    """What a confluent-kafka consumer at ``isolation`` reads from the start of ``partitions``,
    in the order it returns them: until it has ``expected`` values (within ``timeout_s``, however
    slow the machine), then for ``idle_s`` more, so that a record it must not see has the time
    to show up too. Retriable errors (a leader moving in a cluster) are waited out."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{isolation}",
                         "enable.auto.commit": False, "isolation.level": isolation,
                         "topic.metadata.refresh.interval.ms": 500})
    consumer.assign([TopicPartition(topic, index, 0) for topic, index in partitions])
    values: list[bytes] = []
    try:
        idle = 0.0
        deadline = time.monotonic() + timeout_s
        while (len(values) < expected and time.monotonic() < deadline) or idle < idle_s:
            batch = consumer.consume(100, 0.5)
            idle = 0.0 if batch else idle + 0.5
            for message in batch:
                error = message.error()
                if error is None:
                    values.append(message.value() or b"")
                elif error.code() != KafkaError._PARTITION_EOF and not error.retriable():
                    raise AssertionError(f"consume error: {error}")
    finally:
        consumer.close()
    return values


def kafka_missing(version: str) -> str | None:
    """Why Apache Kafka ``version`` cannot run here (a reason for pytest.skip), or None."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "Java 17+ is needed to run Apache Kafka (apt-get install openjdk-17-jre-headless)"
    if shutil.which("mvn") is None and not kafka_jars.is_installed(version):
        return f"Apache Kafka {version}'s jars are not fetched and Maven is not installed to fetch them (scripts/setup)"
    return None


def read_committed(bootstrap: str, topic: str, history: HistoryBuilder, expected: int) -> list[str]:
    """The values a read_committed confluent-kafka consumer (process c0, recorded into
    ``history``) reads from partitions 0 and 1 of ``topic``, sorted: polls until ``expected``
    arrived (then one more poll, for any extra), or 20 s."""
    consumer = make_consumer("confluent-kafka", bootstrap, settings=ConsumerSettings(
        isolation_level="read_committed"), history=history, process="c0")
    with consumer:
        consumer.assign([(topic, 0), (topic, 1)], {(topic, 0): 0, (topic, 1): 0})
        values: list[str] = []
        for _ in range(40):
            values += [r.value.decode() for r in consumer.poll(0.5) if r.value is not None]
            if len(values) >= expected:
                values += [r.value.decode() for r in consumer.poll(2.0) if r.value is not None]
                break
    return sorted(values)
