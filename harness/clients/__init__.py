"""Workload clients: one producer/consumer interface over confluent-kafka, kafka-python and
aiokafka (``--client``), recording every operation into a history.

``make_producer(client, bootstrap, ...)`` and ``make_consumer(client, bootstrap, ...)`` build
one by its library name (``CLIENTS``). Backends are imported lazily: a missing library raises
:class:`ClientUnavailable` naming the package to install.
"""

from __future__ import annotations

import importlib

from harness.clients.base import (
    TP,
    ClientError,
    ClientUnavailable,
    ConsumedRecord,
    Consumer,
    ConsumerSettings,
    Delivery,
    Producer,
    ProducerSettings,
    SendHandle,
)
from harness.history.write import Recorder

CLIENTS: tuple[str, ...] = ("confluent-kafka", "kafka-python", "aiokafka")

_BACKENDS = {
    "confluent-kafka": ("harness.clients.confluent", "ConfluentProducer", "ConfluentConsumer"),
    "kafka-python": ("harness.clients.kafka_python", "KafkaPythonProducer", "KafkaPythonConsumer"),
    "aiokafka": ("harness.clients.aiokafka_client", "AiokafkaProducer", "AiokafkaConsumer"),
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


__all__ = [
    "CLIENTS",
    "TP",
    "ClientError",
    "ClientUnavailable",
    "ConsumedRecord",
    "Consumer",
    "ConsumerSettings",
    "Delivery",
    "Producer",
    "ProducerSettings",
    "SendHandle",
    "make_consumer",
    "make_producer",
]
