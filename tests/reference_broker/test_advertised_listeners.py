"""The seed's two advertised-listener scenarios: clients use the address in Metadata, not the
one they bootstrapped with."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Producer

from launch.broker_process import BrokerProcess
from tests.kafka_helpers import consume_all, produce, wire


class Forwarder(socketserver.ThreadingTCPServer):
    """A loopback TCP forwarder standing in for the address a broker advertises (a NAT, a
    load balancer or, in chaos campaigns, a Toxiproxy proxy). Counts the connections it
    carried."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.target: tuple[str, int] | None = None
        self.connections = 0
        super().__init__(("127.0.0.1", 0), _Pipe)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _Pipe(socketserver.BaseRequestHandler):
    server: Forwarder

    def handle(self) -> None:
        assert self.server.target is not None
        self.server.connections += 1
        upstream = socket.create_connection(self.server.target)
        pump = threading.Thread(target=_copy, args=(upstream, self.request), daemon=True)
        pump.start()
        _copy(self.request, upstream)
        pump.join(5)


def _copy(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.fixture
def forwarder() -> Iterator[Forwarder]:
    server = Forwarder()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def metadata_broker(bootstrap: str) -> tuple[str, int]:
    response = wire(bootstrap, 3, 12, {"topics": None, "allow_auto_topic_creation": False,
                                       "include_topic_authorized_operations": False})
    (entry,) = response.brokers
    return entry.host, entry.port


def test_clients_follow_the_advertised_address(tmp_path: Path, forwarder: Forwarder) -> None:
    """Scenario 1: the broker advertises a reachable address other than the one it binds (here a
    forwarder); clients that bootstrap anywhere then send all their traffic there."""
    overrides = {"advertised.listeners": f"PLAINTEXT://127.0.0.1:{forwarder.port}"}
    with BrokerProcess(overrides=overrides, data_dir=tmp_path) as broker:
        forwarder.target = ("127.0.0.1", broker.port)
        assert metadata_broker(broker.bootstrap) == ("127.0.0.1", forwarder.port)
        before = forwarder.connections
        assert produce(broker.bootstrap, "via-advertised", [(None, b"hello")]) == [0]
        assert forwarder.connections > before, "the producer bypassed the advertised address"
        assert [m.value() for m in consume_all(broker.bootstrap, "via-advertised")] == [b"hello"]


def test_unreachable_advertised_address_breaks_clients_after_bootstrap(tmp_path: Path) -> None:
    """Scenario 2: the broker advertises an address clients cannot reach (say, a container's
    internal name); bootstrap succeeds but every produce then fails."""
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    overrides = {"advertised.listeners": f"PLAINTEXT://127.0.0.1:{dead_port}"}
    with BrokerProcess(overrides=overrides, data_dir=tmp_path) as broker:
        assert metadata_broker(broker.bootstrap) == ("127.0.0.1", dead_port)
        errors: list[KafkaError] = []
        producer = Producer({"bootstrap.servers": broker.bootstrap, "message.timeout.ms": 3000})
        producer.produce("unreachable", b"lost", on_delivery=lambda err, _m: errors.append(err))
        producer.flush(10)
        assert errors and errors[0] is not None, "delivery should fail: the address is unreachable"
