"""Workload clients: one producer/consumer interface over confluent-kafka, kafka-python,
aiokafka and Apache Kafka's own Java client (``--client``), recording every operation into a
history.

``make_producer(client, bootstrap, ...)`` and ``make_consumer(client, bootstrap, ...)`` build
one by its library name (``CLIENTS``). Backends are imported lazily: a missing library (or, for
``java``, a missing JDK or Kafka jars) raises :class:`ClientUnavailable` naming what to install.
:func:`describe_client` names a client's library and version, for reports.
"""

from __future__ import annotations

import importlib
import importlib.metadata

from harness.clients.base import (
    TP,
    ClientError,
    ClientUnavailable,
    Consumed,
    ConsumedRecord,
    Consumer,
    ConsumerSettings,
    Delivery,
    Producer,
    ProducerSettings,
    SendHandle,
    next_offsets,
    rows,
)
from harness.history.write import Recorder

CLIENTS: tuple[str, ...] = ("confluent-kafka", "kafka-python", "aiokafka", "java")

_BACKENDS = {
    "confluent-kafka": ("harness.clients.confluent", "ConfluentProducer", "ConfluentConsumer"),
    "kafka-python": ("harness.clients.kafka_python", "KafkaPythonProducer", "KafkaPythonConsumer"),
    "aiokafka": ("harness.clients.aiokafka_client", "AiokafkaProducer", "AiokafkaConsumer"),
    "java": ("harness.clients.java_client", "JavaProducer", "JavaConsumer"),
}


def _backend(client: str, which: int) -> type[object]:
    if client not in _BACKENDS:
        raise ValueError(f"unknown client {client!r}; known: {', '.join(CLIENTS)}")
    module_name, *classes = _BACKENDS[client]
    cls: type[object] = getattr(importlib.import_module(module_name), classes[which])
    return cls


def make_producer(client: str, bootstrap: str, settings: ProducerSettings | None = None,
                  history: Recorder | None = None, process: str = "p0") -> Producer:
    """A producer over the library ``client``."""
    cls = _backend(client, 0)
    producer = cls(bootstrap, settings, history, process)  # type: ignore[call-arg]
    assert isinstance(producer, Producer)
    return producer


def make_consumer(client: str, bootstrap: str, group: str | None = None,
                  settings: ConsumerSettings | None = None, history: Recorder | None = None,
                  process: str = "c0") -> Consumer:
    """A consumer over the library ``client`` (in ``group`` when given)."""
    cls = _backend(client, 1)
    consumer = cls(bootstrap, group, settings, history, process)  # type: ignore[call-arg]
    assert isinstance(consumer, Consumer)
    return consumer


def describe_client(client: str) -> str:
    """The library behind ``client`` and its version, e.g. ``"confluent-kafka 2.16.1 (librdkafka
    2.16.0)"`` or ``"java (Apache Kafka kafka-clients 4.4.0)"``; ``"... (not installed)"`` when it
    is missing. Starts nothing (the Java client's version is read from its jar's name)."""
    if client not in _BACKENDS:
        raise ValueError(f"unknown client {client!r}; known: {', '.join(CLIENTS)}")
    if client == "java":
        from harness.clients import java_client

        return java_client.describe()
    try:
        version = importlib.metadata.version(client)
    except importlib.metadata.PackageNotFoundError:
        return f"{client} (not installed)"
    if client == "confluent-kafka":
        try:
            import confluent_kafka

            return f"{client} {version} (librdkafka {confluent_kafka.libversion()[0]})"
        except ImportError:
            pass
    return f"{client} {version}"


__all__ = [
    "CLIENTS",
    "TP",
    "ClientError",
    "ClientUnavailable",
    "Consumed",
    "ConsumedRecord",
    "Consumer",
    "ConsumerSettings",
    "Delivery",
    "Producer",
    "ProducerSettings",
    "SendHandle",
    "describe_client",
    "make_consumer",
    "make_producer",
    "next_offsets",
    "rows",
]
