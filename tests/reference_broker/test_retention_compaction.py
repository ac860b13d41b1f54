"""Segment roll, retention by bytes and by time, compaction and ListOffsets by timestamp,
observed through real clients against a broker process, as Kafka documents them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kio.schema.errors import ErrorCode

from launch.broker_process import BrokerProcess
from tests.kafka_helpers import consume_all, create_topic, produce, wire

HOUR_MS = 3_600_000


@pytest.fixture
def fast_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A broker whose retention check and cleaner run every 200 ms."""
    overrides = {"log.retention.check.interval.ms": "200", "log.cleaner.backoff.ms": "200"}
    with BrokerProcess(overrides=overrides, data_dir=tmp_path) as broker:
        yield broker


def segments(broker: BrokerProcess, topic: str) -> list[Path]:
    return sorted((broker.data_dir / "data" / f"{topic}-0").glob("*.log"))


def eventually(check: Callable[[], bool], timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def list_offset(broker: BrokerProcess, topic: str, timestamp: int) -> tuple[int, int]:
    """(timestamp, offset) from ListOffsets v7 for partition 0."""
    response = wire(broker.bootstrap, 2, 7, {
        "replica_id": -1, "isolation_level": 0,
        "topics": [{"name": topic, "partitions": [
            {"partition_index": 0, "current_leader_epoch": -1, "timestamp": timestamp}]}],
    })
    part = response.topics[0].partitions[0]
    assert part.error_code == ErrorCode.none
    return part.timestamp, part.offset


def test_segments_roll_by_size(broker: BrokerProcess) -> None:
    """A partition with segment.bytes=4096 rolls new segment files named by base offset."""
    create_topic(broker.bootstrap, "roll-size", config={"segment.bytes": "4096"})
    produce(broker.bootstrap, "roll-size", [(None, b"x" * 200) for _ in range(200)],
            **{"linger.ms": 0, "batch.num.messages": 1})
    files = segments(broker, "roll-size")
    assert len(files) > 5
    assert all(f.stat().st_size <= 4096 for f in files[:-1])
    assert files[0].name == "00000000000000000000.log"
    assert int(files[1].stem) > 0


def test_segments_roll_by_age(broker: BrokerProcess) -> None:
    """segment.ms rolls a segment once its age passes, even when it is small."""
    create_topic(broker.bootstrap, "roll-age", config={"segment.ms": "300"})
    produce(broker.bootstrap, "roll-age", [(None, b"first")])
    time.sleep(0.6)
    produce(broker.bootstrap, "roll-age", [(None, b"second")])
    assert [int(f.stem) for f in segments(broker, "roll-age")] == [0, 1]


def test_retention_by_bytes_deletes_oldest_segments(fast_broker: BrokerProcess) -> None:
    """retention.bytes deletes whole oldest segments and advances the log start offset, and
    the rest stays readable from the new earliest offset."""
    config = {"segment.bytes": "4096", "retention.bytes": "12000"}
    create_topic(fast_broker.bootstrap, "ret-bytes", config=config)
    produce(fast_broker.bootstrap, "ret-bytes", [(None, f"{i:04d}".encode() * 50) for i in range(300)],
            **{"linger.ms": 0, "batch.num.messages": 1})
    assert eventually(lambda: list_offset(fast_broker, "ret-bytes", -2)[1] > 0)
    earliest = list_offset(fast_broker, "ret-bytes", -2)[1]
    total = sum(f.stat().st_size for f in segments(fast_broker, "ret-bytes"))
    assert total <= 12000 + 4096
    consumed = consume_all(fast_broker.bootstrap, "ret-bytes", start=earliest)
    assert consumed[0].offset() == earliest and consumed[-1].offset() == 299
    assert consumed[-1].value() == b"0299" * 50


def test_retention_by_time_deletes_expired_segments(fast_broker: BrokerProcess) -> None:
    """Segments whose newest record is older than retention.ms are deleted (the active one
    too, after a roll), while recent records stay."""
    create_topic(fast_broker.bootstrap, "ret-time", config={"retention.ms": "60000",
                                                            "segment.bytes": "4096"})
    old = int(time.time() * 1000) - 2 * HOUR_MS
    produce(fast_broker.bootstrap, "ret-time", [(None, b"old" * 100) for _ in range(50)],
            timestamp_ms=old, **{"linger.ms": 0, "batch.num.messages": 1})
    assert eventually(lambda: list_offset(fast_broker, "ret-time", -2)[1] == 50)
    produce(fast_broker.bootstrap, "ret-time", [(None, b"new")])
    time.sleep(0.5)
    consumed = consume_all(fast_broker.bootstrap, "ret-time", start=50)
    assert [(m.offset(), m.value()) for m in consumed] == [(50, b"new")]


def test_compaction_keeps_latest_value_per_key_at_its_offset(fast_broker: BrokerProcess) -> None:
    """A compacted topic keeps, outside the active segment, only the newest record per key, at
    its original offset; the newest values of all keys stay readable."""
    config = {"cleanup.policy": "compact", "segment.bytes": "2048",
              "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "100000"}
    create_topic(fast_broker.bootstrap, "compacted", config=config)
    messages = [(f"key-{i % 10}".encode(), f"value-{i}".encode() * 5) for i in range(400)]
    offsets = produce(fast_broker.bootstrap, "compacted", messages,
                      **{"linger.ms": 0, "batch.num.messages": 1})
    latest = {key: (offset, value) for (key, value), offset in zip(messages, offsets)}

    def compacted() -> bool:
        return len(consume_all(fast_broker.bootstrap, "compacted", idle_s=0.5)) < 100

    assert eventually(compacted)
    consumed = consume_all(fast_broker.bootstrap, "compacted")
    seen = {m.key(): (m.offset(), m.value()) for m in consumed}
    assert seen == latest
    assert [m.offset() for m in consumed] == sorted(m.offset() for m in consumed)
    for m in consumed:  # every survivor sits at the offset it was produced at
        assert messages[m.offset()] == (m.key(), m.value())


def test_compaction_drops_tombstones_after_delete_retention(fast_broker: BrokerProcess) -> None:
    """A tombstone (null value) first hides older values of its key, and is itself removed
    once delete.retention.ms has passed."""
    config = {"cleanup.policy": "compact", "segment.bytes": "1024",
              "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "500"}
    create_topic(fast_broker.bootstrap, "tombstones", config=config)
    produce(fast_broker.bootstrap, "tombstones",
            [(b"gone", b"v" * 100) for _ in range(5)] + [(b"gone", None)]
            + [(b"filler", b"f" * 100) for _ in range(30)],
            **{"linger.ms": 0, "batch.num.messages": 1})

    def keys() -> list[bytes | None]:
        return [m.key() for m in consume_all(fast_broker.bootstrap, "tombstones", idle_s=0.5)]

    assert eventually(lambda: b"gone" not in keys())


def test_list_offsets_by_timestamp_and_max_timestamp(broker: BrokerProcess) -> None:
    """ListOffsets finds the first offset at or after a timestamp, -1 past the end, and the
    record with the largest timestamp (KIP-734) even when it is not the last one."""
    create_topic(broker.bootstrap, "times")
    base = 1_700_000_000_000
    stamps = [base, base + 1000, base + 5000, base + 2000]  # the max is not last
    for i, ts in enumerate(stamps):
        produce(broker.bootstrap, "times", [(None, f"m{i}".encode())], timestamp_ms=ts)
    assert list_offset(broker, "times", base + 500) == (base + 1000, 1)
    assert list_offset(broker, "times", base + 1000) == (base + 1000, 1)
    assert list_offset(broker, "times", base + 1500) == (base + 5000, 2)
    assert list_offset(broker, "times", base + 9999) == (-1, -1)
    assert list_offset(broker, "times", -3) == (base + 5000, 2)
    assert list_offset(broker, "times", -2)[1] == 0
    assert list_offset(broker, "times", -1)[1] == 4
