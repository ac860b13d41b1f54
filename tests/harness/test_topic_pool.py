"""The state machines' topic pool: every topic handed out once, batches grow only where the
broker creates many topics for the price of one."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import pytest

from harness.session import WireSession
from harness.stateful.topics import MAX_BATCH, TopicPool


class FakeBroker(WireSession):
    """A session whose CreateTopics costs ``fixed_s`` per request plus ``per_topic_s`` per topic."""

    def __init__(self, fixed_s: float, per_topic_s: float, cold_s: float = 0.0) -> None:
        super().__init__("127.0.0.1:9")
        self.fixed_s, self.per_topic_s, self.cold_s = fixed_s, per_topic_s, cold_s
        self.requests: list[list[str]] = []
        self.deleted: list[str] = []

    def create_topics(self, topics: Mapping[str, tuple[int, Mapping[str, str]]]) -> dict[str, tuple[str, int]]:
        self.requests.append(list(topics))
        time.sleep(self.fixed_s + self.per_topic_s * len(topics) + (self.cold_s if len(self.requests) == 1 else 0))
        return {name: ("NONE", partitions) for name, (partitions, _) in topics.items()}

    def delete_topics(self, names: Sequence[str], per_request: int = 200) -> dict[str, str]:
        self.deleted += names
        return {name: "NONE" for name in names}


def _take(pool: TopicPool, broker: FakeBroker, count: int, partitions: int = 1,
          configs: Mapping[str, str] | None = None) -> list[str]:
    return [pool.take(broker, partitions, configs or {}).name for _ in range(count)]


def test_a_broker_that_amortises_gets_growing_batches() -> None:
    """A Kafka-like broker (cost per request): one topic twice, then two, four, ... up to MAX_BATCH."""
    broker = FakeBroker(fixed_s=0.1, per_topic_s=0.0)  # halving per doubling: room for a loaded machine
    pool = TopicPool()
    names = _take(pool, broker, 40)
    sizes = [len(r) for r in broker.requests]
    assert sizes[:5] == [1, 1, 2, 4, 8] and max(sizes) == MAX_BATCH
    assert len(set(names)) == 40, "a topic is handed out once"
    broker.close()


def test_a_broker_that_pays_per_topic_gets_one_topic_per_request() -> None:
    """A reference-like broker (cost per topic): after one probe of two, never ahead again."""
    broker = FakeBroker(fixed_s=0.0, per_topic_s=0.05)
    pool = TopicPool()
    _take(pool, broker, 8)
    assert [len(r) for r in broker.requests] == [1, 1, 2, 1, 1, 1, 1]
    assert pool.created - 8 <= 1, "at most the probe's spare topic is left unused"
    broker.close()


def test_a_slow_first_creation_does_not_fool_the_pool() -> None:
    """A fresh broker's first CreateTopics is slow; measured against it, two topics would look
    cheap. The baseline is the cheaper of the first two."""
    broker = FakeBroker(fixed_s=0.0, per_topic_s=0.05, cold_s=0.3)
    pool = TopicPool()
    _take(pool, broker, 8)
    assert [len(r) for r in broker.requests] == [1, 1, 2, 1, 1, 1, 1]
    broker.close()


@pytest.mark.parametrize("configs", [{}, {"retention.ms": "-1"}])
def test_topics_of_another_shape_are_never_handed_out(configs: dict[str, str]) -> None:
    """Partitions and configs are part of the shape: a pooled topic has exactly what was asked."""
    broker = FakeBroker(fixed_s=0.1, per_topic_s=0.0)
    pool = TopicPool()
    spare = _take(pool, broker, 3, partitions=2)  # the third request created two: one is spare
    taken = pool.take(broker, 3, configs)
    assert (taken.partitions, taken.configs, taken.seen_partitions) == (3, configs, 3)
    assert taken.name in broker.requests[-1] and taken.name not in spare
    assert len(broker.requests) == 4, "a topic of another shape needs a request of its own"
    broker.close()


def test_every_topic_created_is_deleted_at_the_end_spares_included() -> None:
    broker = FakeBroker(fixed_s=0.1, per_topic_s=0.0)
    pool = TopicPool()
    taken = _take(pool, broker, 5)
    assert pool.created > 5, "the last batch left spares"
    assert pool.delete_all(broker) == 0
    assert set(taken) < set(broker.deleted) and len(broker.deleted) == pool.created
    broker.close()
