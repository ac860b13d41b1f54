"""The controller of a node: the decisions of :class:`ControllerCore` over the durable metadata
log, plus the requests that reach it (from brokers, or forwarded admin requests).

It has no sockets and no clock of its own. In combined mode
(``process.roles=broker,controller``) the broker in the same process calls it directly
(:mod:`reference_broker.controller_channel`); a controller-only process
(``process.roles=controller``) serves the same calls over its listener
(:mod:`reference_broker.drivers.controller_server`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from reference_broker.config import BrokerConfig
from reference_broker.controller import api
from reference_broker.controller.core import ControllerCore, ControllerSettings
from reference_broker.metadata.image import MetadataImage
from reference_broker.metadata.log import MetadataLog
from reference_broker.metadata.records import (
    FenceBroker,
    MetadataRecord,
    PartitionRecord,
    RegisterBroker,
    RemoveTopic,
    TopicRecord,
    UnfenceBroker,
)

log = logging.getLogger(__name__)

RequestHandler = Callable[["ControllerNode", Any, int], dict[str, Any]]

# The controller APIs (api key -> handler); Fetch of the metadata log is the driver's (it waits).
CONTROLLER_HANDLERS: dict[int, RequestHandler] = {
    19: api.handle_create_topics,
    20: api.handle_delete_topics,
    32: api.handle_describe_configs,
    37: api.handle_create_partitions,
    44: api.handle_incremental_alter_configs,
    56: api.handle_alter_partition,
    62: api.handle_broker_registration,
    63: api.handle_broker_heartbeat,
    64: api.handle_unregister_broker,
    67: api.handle_allocate_producer_ids,
}


def controller_settings(config: BrokerConfig) -> ControllerSettings:
    return ControllerSettings(
        session_timeout_ms=int(config.get("broker.session.timeout.ms")),
        unclean_leader_election=bool(config.get("unclean.leader.election.enable")),
    )


class ControllerNode:
    """The metadata log, the image it replays into, and the controller's decisions over it."""

    def __init__(self, config: BrokerConfig, data_dir: Path, cluster_id: str, now_ms: int) -> None:
        self.config = config
        self.node_id = config.node_id
        self.cluster_id = cluster_id
        self._now_ms = now_ms
        self.log = MetadataLog(data_dir, now_ms)
        image = MetadataImage()
        for offset, record in self.log.replay():
            image.apply(record, offset)
        if image.offset >= 0:
            log.info("controller %d: replayed the metadata log up to offset %d (%d broker(s), "
                     "%d topic(s))", self.node_id, image.offset, len(image.brokers),
                     len(image.topics_by_id))
        self.core = ControllerCore(controller_settings(config), image, self._append, now_ms)
        # Called with (first offset, records) after every append, once the records are durable:
        # wakes metadata fetches, or, in combined mode, queues the records for the broker.
        self.on_append: list[Callable[[int, Sequence[MetadataRecord]], None]] = []

    @property
    def image(self) -> MetadataImage:
        return self.core.image

    def _append(self, records: Sequence[MetadataRecord]) -> int:
        moves = [move for record in records if (move := self._log_decision(record))]
        if len(moves) <= 10:
            for move in moves:
                log.info("%s", move)
        else:
            log.info("%d partitions changed leader: %s, ...", len(moves), "; ".join(moves[:5]))
        last = self.log.append(records, self._now_ms)
        for callback in self.on_append:
            callback(last - len(records) + 1, records)
        return last

    def _log_decision(self, record: MetadataRecord) -> str | None:
        """Log the decisions an operator cares about (the image is still the old one); a leader
        change is returned instead, to be logged with the others of its batch."""
        image = self.core.image
        match record:
            case RegisterBroker():
                log.info("broker %d registered (broker epoch %d)", record.node_id,
                         record.broker_epoch)
            case FenceBroker():
                log.info("broker %d fenced", record.node_id)
            case UnfenceBroker():
                log.info("broker %d unfenced", record.node_id)
            case TopicRecord() if record.topic_id not in image.topics_by_id:
                log.info("topic %s created (id %s)", record.name, record.topic_id)
            case RemoveTopic():
                topic = image.topics_by_id.get(record.topic_id)
                log.info("topic %s deleted", topic.name if topic else record.topic_id)
            case PartitionRecord():
                topic = image.topics_by_id.get(record.topic_id)
                before = topic.partitions.get(record.partition) if topic else None
                if topic is not None and before is not None and before.leader != record.leader:
                    return (f"{topic.name}-{record.partition}: leader {before.leader} -> "
                            f"{record.leader} at epoch {record.leader_epoch}, ISR {list(record.isr)}")
        return None

    def handle(self, api_key: int, request: Any, now_ms: int) -> dict[str, Any]:
        """Answer one controller API request (a kio request dataclass) as a response dict."""
        self._now_ms = max(self._now_ms, now_ms)
        return CONTROLLER_HANDLERS[api_key](self, request, now_ms)

    def tick(self, now_ms: int) -> None:
        """Fence brokers whose session expired, retry elections of offline partitions."""
        self._now_ms = max(self._now_ms, now_ms)
        self.core.tick(now_ms)

    def close(self) -> None:
        self.log.close()
