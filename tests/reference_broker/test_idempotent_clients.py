"""Real idempotent producers (confluent-kafka with enable.idempotence=true, kafka-python with its
default) keep producing while the broker restarts, cleanly or by SIGKILL: afterwards every
acknowledged value is in the partition exactly once and the offsets are contiguous.

So that the restart always leaves batches the broker wrote but the producer never heard about
(the case idempotence exists for), the clients reach the broker through a small proxy that, just
before the restart, keeps passing requests on but swallows the responses.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest

from launch.broker_process import BrokerProcess
from tests.kafka_helpers import consume_all, create_topic

pytestmark = pytest.mark.clients

TOPIC = "idem-clients"
MESSAGES = 4000
PACE_S = 0.0005  # between sends: the stream lasts a few seconds, so the restart lands inside it
TIMEOUT_S = 60.0


class ResponseSwallowingProxy:
    """A TCP proxy to the broker that can drop every response while still forwarding requests."""

    def __init__(self) -> None:
        self.upstream_port = 0
        self.swallow_responses = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=1)
            except OSError:
                client.close()  # the broker is down: the client will reconnect later
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, responses: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if not (responses and self.swallow_responses.is_set()):
                    sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Close every proxied connection (both sides)."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.cut()


@attrs.define
class Outcome:
    """What the producer was told: value -> offset for acknowledged sends, and failures."""

    acked: dict[bytes, int] = attrs.Factory(dict)
    failed: list[str] = attrs.Factory(list)
    started: threading.Event = attrs.Factory(threading.Event)


def confluent_stream(bootstrap: str, values: list[bytes], outcome: Outcome) -> None:
    from confluent_kafka import KafkaError, Message, Producer

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "linger.ms": 2, "batch.size": 16384,  # several segments
                         "message.timeout.ms": int(TIMEOUT_S * 1000)})

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is None:
            outcome.acked[msg.value()] = msg.offset()
        else:
            outcome.failed.append(str(err))

    for i, value in enumerate(values):
        producer.produce(TOPIC, value=value, partition=0, on_delivery=on_delivery)
        producer.poll(0)
        if i == len(values) // 4:
            outcome.started.set()
        time.sleep(PACE_S)
    outcome.started.set()
    assert producer.flush(TIMEOUT_S) == 0, "confluent-kafka producer did not drain"


def kafka_python_stream(bootstrap: str, values: list[bytes], outcome: Outcome) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=2)  # idempotent by default
    futures = []
    for i, value in enumerate(values):
        futures.append((value, producer.send(TOPIC, value=value, partition=0)))
        if i == len(values) // 4:
            outcome.started.set()
        time.sleep(PACE_S)
    outcome.started.set()
    producer.flush(TIMEOUT_S)
    for value, future in futures:
        try:
            outcome.acked[value] = future.get(TIMEOUT_S).offset
        except Exception as exc:  # a failed send is allowed; it just is not acknowledged
            outcome.failed.append(repr(exc))
    producer.close(TIMEOUT_S)


def restart_unanswered(broker: BrokerProcess, proxy: ResponseSwallowingProxy, how: str) -> None:
    """Let the broker write batches whose responses are lost, then restart it under the
    producer, which must retry those batches."""
    proxy.swallow_responses.set()
    time.sleep(0.5)  # requests go on reaching the broker; no answer comes back
    if how == "clean":
        broker.stop()
    else:
        broker.kill()
    proxy.cut()
    proxy.swallow_responses.clear()
    time.sleep(0.3)  # the producer finds the broker gone
    broker.start()


@pytest.mark.parametrize("how", ["clean", "kill"])
@pytest.mark.parametrize("client", ["confluent-kafka", "kafka-python"])
def test_an_idempotent_stream_survives_a_broker_restart_without_duplicates(
    tmp_path: Path, client: str, how: str
) -> None:
    """Acknowledged values appear exactly once, at the offsets acknowledged, with no gaps."""
    stream: Callable[[str, list[bytes], Outcome], None] = (
        confluent_stream if client == "confluent-kafka" else kafka_python_stream)
    values = [b"%s-%s-%05d" % (client.encode(), how.encode(), i) for i in range(MESSAGES)]
    outcome = Outcome()
    errors: list[BaseException] = []
    proxy = ResponseSwallowingProxy()
    overrides = {"log.segment.bytes": "65536",  # several segments: roll snapshots plus replay
                 "advertised.listeners": f"PLAINTEXT://127.0.0.1:{proxy.port}"}
    try:
        with BrokerProcess(overrides=overrides, data_dir=tmp_path) as broker:
            proxy.upstream_port = broker.port
            create_topic(broker.bootstrap, TOPIC)

            def run() -> None:
                try:
                    stream(f"127.0.0.1:{proxy.port}", values, outcome)
                except BaseException as exc:  # reported by the main thread
                    errors.append(exc)

            producer = threading.Thread(target=run, daemon=True)
            producer.start()
            assert outcome.started.wait(TIMEOUT_S)
            restart_unanswered(broker, proxy, how)
            producer.join(2 * TIMEOUT_S)
            assert not producer.is_alive(), "producer did not finish"
            assert not errors, errors
            consumed = consume_all(broker.bootstrap, TOPIC, expect=len(outcome.acked))
    finally:
        proxy.close()
    stored = [msg.value() for msg in consumed]
    offsets = [msg.offset() for msg in consumed]
    assert offsets == list(range(len(consumed))), "offsets are not contiguous from 0"
    duplicated = sorted({value for value in stored if stored.count(value) > 1})
    assert not duplicated, f"{len(duplicated)} values stored more than once, e.g. {duplicated[:3]}"
    assert set(stored) <= set(values)
    where = {value: offset for offset, value in zip(offsets, stored)}
    wrong = {v: (o, where.get(v)) for v, o in outcome.acked.items() if where.get(v) != o}
    assert not wrong, f"acknowledged values missing or elsewhere: {list(wrong.items())[:3]}"
    assert len(outcome.acked) > MESSAGES // 2, outcome.failed[:3]
