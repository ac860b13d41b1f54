"""The cluster metadata as of some offset of the metadata log: replaying records builds it.

The controller and every broker hold one. The controller's is always current (it appends the
records); a broker's lags by however long its metadata fetch takes, which is exactly the window
in which a deposed leader can still believe it leads (and why leader epochs fence it).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import attrs

from reference_broker.metadata.records import (
    Endpoint,
    FenceBroker,
    MetadataRecord,
    PartitionRecord,
    ProducerIdsRecord,
    RegisterBroker,
    RemoveTopic,
    TopicRecord,
    UnfenceBroker,
)


@attrs.define(slots=True)
class BrokerState:
    node_id: int
    broker_epoch: int
    incarnation_id: str
    endpoints: tuple[Endpoint, ...]
    fenced: bool = True

    def endpoint(self, listener: str) -> Endpoint | None:
        for endpoint in self.endpoints:
            if endpoint.listener == listener:
                return endpoint
        return self.endpoints[0] if self.endpoints else None


@attrs.define(slots=True)
class TopicState:
    name: str
    topic_id: uuid.UUID
    configs: dict[str, str]
    partitions: dict[int, PartitionRecord] = attrs.field(factory=dict)


class MetadataImage:
    """Brokers, topics and partitions after applying every record up to ``offset``."""

    def __init__(self) -> None:
        self.offset = -1  # offset of the last record applied
        self.brokers: dict[int, BrokerState] = {}
        self.topics_by_id: dict[uuid.UUID, TopicState] = {}
        self.topics_by_name: dict[str, TopicState] = {}
        self.next_producer_id = 0

    # --- replay ------------------------------------------------------------------------------

    def apply(self, record: MetadataRecord, offset: int) -> None:
        """Apply one record; records must come in log order."""
        match record:
            case RegisterBroker():
                self.brokers[record.node_id] = BrokerState(
                    record.node_id, record.broker_epoch, record.incarnation_id, record.endpoints
                )
            case FenceBroker() | UnfenceBroker():
                broker = self.brokers.get(record.node_id)
                if broker is not None and broker.broker_epoch == record.broker_epoch:
                    broker.fenced = isinstance(record, FenceBroker)
            case TopicRecord():
                existing = self.topics_by_id.get(record.topic_id)
                topic = TopicState(record.name, record.topic_id, dict(record.configs),
                                   existing.partitions if existing else {})
                self.topics_by_id[record.topic_id] = topic
                self.topics_by_name[record.name] = topic
            case RemoveTopic():
                removed = self.topics_by_id.pop(record.topic_id, None)
                if removed is not None:
                    self.topics_by_name.pop(removed.name, None)
            case PartitionRecord():
                owner = self.topics_by_id.get(record.topic_id)
                if owner is not None:
                    owner.partitions[record.partition] = record
            case ProducerIdsRecord():
                self.next_producer_id = record.next_producer_id
        self.offset = offset

    # --- queries -----------------------------------------------------------------------------

    def live_brokers(self) -> list[BrokerState]:
        """Registered, unfenced brokers, by node id."""
        return sorted((b for b in self.brokers.values() if not b.fenced), key=lambda b: b.node_id)

    def is_live(self, node_id: int) -> bool:
        broker = self.brokers.get(node_id)
        return broker is not None and not broker.fenced

    def topic(self, name: str) -> TopicState | None:
        return self.topics_by_name.get(name)

    def partition(self, topic: str, index: int) -> PartitionRecord | None:
        state = self.topics_by_name.get(topic)
        return state.partitions.get(index) if state else None

    def all_partitions(self) -> Iterator[tuple[TopicState, PartitionRecord]]:
        for topic in list(self.topics_by_id.values()):
            for index in sorted(topic.partitions):
                yield topic, topic.partitions[index]
