"""The metadata log on disk: durable appends, replay, and the batches brokers fetch."""

from __future__ import annotations

import uuid
from pathlib import Path

from reference_broker.metadata.log import METADATA_DIR, MetadataLog, decode_batches
from reference_broker.metadata.records import (
    Endpoint,
    PartitionRecord,
    RegisterBroker,
    TopicRecord,
)

TOPIC = uuid.UUID(int=7)


def test_appended_records_replay_in_order_after_a_reopen(tmp_path: Path) -> None:
    """Batches get consecutive offsets, the last one's is returned, and a reopened log replays
    every record at its offset (from any offset on)."""
    log = MetadataLog(tmp_path, 0)
    first = [RegisterBroker(1, 0, "a", (Endpoint("PLAINTEXT", "h", 1),))]
    second = [TopicRecord("t", TOPIC, (("retention.ms", "5"),)),
              PartitionRecord(TOPIC, 0, (1,), (1,), 1, 0, 0)]
    assert log.append(first, 10) == 0
    assert log.append(second, 20) == 2
    assert log.end_offset == 3
    log.close()
    reopened = MetadataLog(tmp_path, 30)
    assert list(reopened.replay()) == list(enumerate(first + second))
    assert list(reopened.replay(2)) == [(2, second[1])]
    assert (tmp_path / METADATA_DIR).is_dir()
    reopened.close()


def test_fetched_bytes_decode_to_the_same_records(tmp_path: Path) -> None:
    """What a broker fetches (whole batches from an offset) decodes to the records with their
    offsets; a torn tail is left for the next fetch."""
    log = MetadataLog(tmp_path, 0)
    log.append([RegisterBroker(1, 0, "a", ())], 0)
    log.append([RegisterBroker(2, 1, "b", ()), RegisterBroker(3, 2, "c", ())], 0)
    data = log.read(1, 1 << 20)
    assert decode_batches(data) == [(1, RegisterBroker(2, 1, "b", ())),
                                    (2, RegisterBroker(3, 2, "c", ()))]
    assert decode_batches(data[:-3]) == []
    assert log.read(3, 1 << 20) == b""
    log.close()
