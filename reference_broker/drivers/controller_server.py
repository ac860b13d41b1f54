"""The asyncio driver of a controller-only node (``process.roles=controller``).

It serves the controller APIs of :class:`~reference_broker.controller.node.ControllerNode` on
its controller listener(s) (Kafka's ``listeners=CONTROLLER://...`` with
``controller.listener.names=CONTROLLER``): BrokerRegistration, BrokerHeartbeat, AlterPartition,
AllocateProducerIds, the admin requests brokers forward, ApiVersions, and Fetch of topic
``__cluster_metadata`` partition 0, which brokers long-poll to follow the metadata log (a fetch
at the end of the log is parked until records are appended or ``max_wait`` passes). A timer
runs the controller's clock: brokers whose heartbeats stop for ``broker.session.timeout.ms`` are
fenced and their partitions get new leaders.

Everything the controller decides is in its metadata log, fsynced before anyone hears of it, so
a restarted controller replays the log and carries on; every broker gets a full session timeout
to heartbeat again before it is fenced.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from kio.schema.errors import ErrorCode

from reference_broker.config import BrokerConfig
from reference_broker.controller.node import CONTROLLER_HANDLERS, ControllerNode
from reference_broker.drivers.node_server import NodeServer, Outgoing, now_ms, run_node
from reference_broker.log.meta_properties import load_identity
from reference_broker.metadata.log import METADATA_PARTITION, METADATA_TOPIC
from reference_broker.protocol.api_keys import ApiKey
from reference_broker.protocol.api_versions import (
    API_VERSIONS_KEY,
    CONTROLLER_API_VERSIONS,
    api_versions_body,
)
from reference_broker.protocol.codec import DecodedRequest

log = logging.getLogger(__name__)

FETCH = ApiKey.FETCH
TICK_INTERVAL_S = 0.05


class ControllerServer(NodeServer):
    """A controller node: its listeners, connections and clock."""

    api_versions = CONTROLLER_API_VERSIONS

    def __init__(self, config: BrokerConfig) -> None:
        super().__init__(config)
        data_dir = Path(config.log_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        cluster_id = load_identity(data_dir, config.node_id, create=True)
        self.node = ControllerNode(config, data_dir, cluster_id, now_ms())
        self.node.on_append.append(lambda first, records: self.wake_fetchers())

    @property
    def cluster_id(self) -> str:
        return self.node.cluster_id

    async def start(self) -> None:
        await self.bind_listeners()
        self.every(TICK_INTERVAL_S, self.node.tick, "controller-timers")

    async def stop(self) -> None:
        await self.close_network()
        self.node.close()
        log.info("controller %d stopped cleanly", self.node.node_id)

    # --- requests -------------------------------------------------------------------------------

    def dispatch(
        self, request: DecodedRequest, listener: str, peer: str
    ) -> Outgoing | None | asyncio.Future[Outgoing | None]:
        if request.api_key == API_VERSIONS_KEY:
            return self.encode(request, api_versions_body(CONTROLLER_API_VERSIONS))
        if request.api_key == FETCH:
            return self.fetch(request, lambda: self._metadata_fetch(request.body))
        response = CONTROLLER_HANDLERS[request.api_key](self.node, request.body, now_ms())
        return self.encode(request, response)

    # --- Fetch of the metadata log --------------------------------------------------------------

    def _metadata_fetch(self, body: Any) -> tuple[dict[str, Any], int, bool]:
        """(response, bytes returned, whether it answers now regardless of data)."""
        log_ = self.node.log
        topics_out = []
        total = 0
        error = False
        for topic in body.topics:
            partitions_out = []
            for part in topic.partitions:
                entry: dict[str, Any] = {
                    "partition_index": part.partition, "error_code": ErrorCode.none,
                    "high_watermark": log_.end_offset, "last_stable_offset": log_.end_offset,
                    "log_start_offset": 0, "aborted_transactions": None, "records": b"",
                }
                if topic.topic != METADATA_TOPIC or part.partition != METADATA_PARTITION:
                    entry["error_code"] = ErrorCode.unknown_topic_or_partition
                    error = True
                elif not 0 <= part.fetch_offset <= log_.end_offset:
                    entry["error_code"] = ErrorCode.offset_out_of_range
                    error = True
                elif part.fetch_offset < log_.end_offset:
                    records = log_.read(part.fetch_offset, max(part.partition_max_bytes, 1))
                    entry["records"] = records
                    total += len(records)
                partitions_out.append(entry)
            topics_out.append({"topic": topic.topic, "partitions": partitions_out})
        return {"error_code": ErrorCode.none, "session_id": 0, "responses": topics_out}, total, error


async def run_controller(config: BrokerConfig, ready_line: bool = True) -> None:
    """Run a controller-only node until SIGINT or SIGTERM."""
    server = ControllerServer(config)

    def ready() -> str:
        bound = ",".join(str(listener) for listener in server.bound_listeners())
        return (f"kconform controller node {config.node_id} ready: listening on {bound}, "
                f"advertising {bound}, data in {config.log_dir}")

    await run_node(server.start, ready if ready_line else None, None, server.stop)
