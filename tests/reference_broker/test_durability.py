"""Data survives a clean restart and a SIGKILL in the middle of producing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Message, Producer

from launch.broker_process import BrokerProcess
from tests.kafka_helpers import consume_all, create_topic, produce


def test_clean_restart_keeps_every_record(broker: BrokerProcess) -> None:
    """SIGTERM shuts down cleanly (exit 0, clean-shutdown marker) and every record produced
    before it is readable, in order, after the restart."""
    create_topic(broker.bootstrap, "restart")
    values = [f"value-{i}".encode() for i in range(2000)]
    assert produce(broker.bootstrap, "restart", [(None, v) for v in values]) == list(range(2000))
    assert broker.stop() == 0, "SIGTERM should end the broker with a clean exit"
    assert (broker.data_dir / "data" / "restart-0" / ".kafka_cleanshutdown").exists()
    broker.start()
    consumed = consume_all(broker.bootstrap, "restart", expect=len(values))
    assert [m.offset() for m in consumed] == list(range(len(values)))
    assert [m.value() for m in consumed] == values
    # and the log keeps growing from where it was
    assert produce(broker.bootstrap, "restart", [(None, b"after")]) == [2000]


@pytest.mark.parametrize("acks", ["1", "all"])
def test_sigkill_mid_produce_loses_no_acknowledged_record(broker: BrokerProcess, acks: str) -> None:
    """SIGKILL while a producer streams: after restart every acknowledged record is present at
    its acknowledged offset, offsets are contiguous, and the broker needs no manual repair."""
    create_topic(broker.bootstrap, "crash", config={"segment.bytes": "65536"})
    acked: dict[int, bytes] = {}
    stop = threading.Event()

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is None:
            acked[msg.offset()] = msg.value()

    def stream() -> None:
        producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": acks, "linger.ms": 2,
                             "message.timeout.ms": 3000, "retries": 0})
        i = 0
        while not stop.is_set():
            try:
                producer.produce("crash", value=f"crash-{i:07d}".encode(), on_delivery=on_delivery)
                i += 1
            except BufferError:
                pass
            producer.poll(0.001)
        producer.flush(5)

    thread = threading.Thread(target=stream)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while len(acked) < 5000 and time.monotonic() < deadline:
            time.sleep(0.05)
        broker.kill()
    finally:
        stop.set()
        thread.join(30)
    assert len(acked) >= 5000, "the producer did not get going before the kill"
    broker.start()
    consumed = consume_all(broker.bootstrap, "crash")
    stored = {m.offset(): m.value() for m in consumed}
    assert [m.offset() for m in consumed] == list(range(len(consumed))), "offsets not contiguous"
    missing = {offset: value for offset, value in acked.items() if stored.get(offset) != value}
    assert not missing, f"{len(missing)} acknowledged records lost or changed, e.g. {list(missing.items())[:3]}"


def test_torn_tail_is_truncated_on_restart(broker: BrokerProcess) -> None:
    """Garbage after the last complete batch (a torn write) is cut off at restart and the
    complete batches before it stay readable."""
    create_topic(broker.bootstrap, "torn")
    produce(broker.bootstrap, "torn", [(None, f"v{i}".encode()) for i in range(100)])
    broker.kill()
    segment = sorted((broker.data_dir / "data" / "torn-0").glob("*.log"))[-1]
    with open(segment, "ab") as handle:
        handle.write(b"\x00\x00\x00\x00\x00\x00\x00\x64\x00\x00\x01\x00half a batch")
    broker.start()
    consumed = consume_all(broker.bootstrap, "torn")
    assert [m.value() for m in consumed] == [f"v{i}".encode() for i in range(100)]
    assert produce(broker.bootstrap, "torn", [(None, b"next")]) == [100]


def test_data_dir_of_another_node_is_refused(tmp_path: Path) -> None:
    """A broker refuses a data directory written by a different node.id, naming both."""
    with BrokerProcess(data_dir=tmp_path) as first:
        first.stop()
    other = BrokerProcess(data_dir=tmp_path, overrides={"node.id": "7"})
    with pytest.raises(Exception, match="belongs to node.id 0"):
        other.start()
    other.kill()
