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
import signal
from pathlib import Path
from typing import Any

from reference_broker.config import BrokerConfig, Listener
from reference_broker.controller.node import CONTROLLER_HANDLERS, ControllerNode
from reference_broker.handlers.context import CloseConnection
from reference_broker.meta_properties import load_identity
from reference_broker.metadata.log import METADATA_PARTITION, METADATA_TOPIC
from reference_broker.protocol.api_versions import API_VERSIONS_KEY, CONTROLLER_API_VERSIONS
from reference_broker.protocol.codec import (
    DecodedRequest,
    MalformedRequestError,
    ProtocolError,
    UnsupportedApiError,
    build_response,
    decode_request,
    encode_response,
)
from reference_broker.protocol.framing import Frame
from reference_broker.server import Outgoing, _Connection, now_ms

log = logging.getLogger(__name__)

FETCH = 1
TICK_INTERVAL_S = 0.05


def controller_api_versions_body(error: str = "none") -> dict[str, Any]:
    return {
        "error_code": error,
        "api_keys": [
            {"api_key": key, "min_version": low, "max_version": high}
            for key, (low, high) in sorted(CONTROLLER_API_VERSIONS.items())
        ],
    }


class ControllerServer:
    """A controller node: its listeners, connections and clock."""

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.max_request_bytes = int(config.get("socket.request.max.bytes"))
        data_dir = Path(config.log_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        cluster_id = load_identity(data_dir, config.node_id, create=True)
        self.node = ControllerNode(config, data_dir, cluster_id, now_ms())
        self.node.on_append.append(lambda first, records: self._wake_fetchers())
        self.connections: set[_Connection] = set()
        self.bound_ports: dict[str, int] = {}
        self._servers: list[asyncio.Server] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._fetch_waiters: set[asyncio.Future[None]] = set()

    @property
    def cluster_id(self) -> str:
        return self.node.cluster_id

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for listener in self.config.listeners:
            server = await loop.create_server(
                lambda name=listener.name: _Connection(self, name),
                host=listener.host or None,
                port=listener.port,
                reuse_address=True,
            )
            self._servers.append(server)
            self.bound_ports[listener.name] = server.sockets[0].getsockname()[1]
        self._tasks = [asyncio.create_task(self._ticks(), name="controller-timers")]

    def bound_listeners(self) -> list[Listener]:
        return [Listener(listener.name, listener.host, self.bound_ports[listener.name])
                for listener in self.config.listeners]

    async def _ticks(self) -> None:
        while True:
            await asyncio.sleep(TICK_INTERVAL_S)
            try:
                self.node.tick(now_ms())
            except Exception:  # keep the clock running; the error is logged for the operator
                log.exception("controller tick failed")

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for waiter in list(self._fetch_waiters):
            waiter.cancel()
        for connection in list(self.connections):
            connection.close()
        for server in self._servers:
            await server.wait_closed()
        self.node.close()
        log.info("controller %d stopped cleanly", self.node.node_id)

    # --- requests -------------------------------------------------------------------------------

    def handle_frame(
        self, frame: Frame, listener: str, peer: str
    ) -> Outgoing | None | asyncio.Future[Outgoing | None]:
        try:
            request = decode_request(frame, CONTROLLER_API_VERSIONS)
        except UnsupportedApiError as exc:
            if exc.api_key == API_VERSIONS_KEY and exc.correlation_id is not None:
                body = build_response(API_VERSIONS_KEY, 0,
                                      controller_api_versions_body("unsupported_version"))
                return encode_response(exc.correlation_id, body)
            raise CloseConnection(f"{exc}") from None
        except MalformedRequestError as exc:
            raise CloseConnection(f"malformed request: {exc}") from None
        try:
            if request.api_key == API_VERSIONS_KEY:
                return self._encode(request, controller_api_versions_body())
            if request.api_key == FETCH:
                return self._fetch(request)
            response = CONTROLLER_HANDLERS[request.api_key](self.node, request.body, now_ms())
            return self._encode(request, response)
        except (CloseConnection, ProtocolError):
            raise
        except Exception as exc:
            log.exception("error handling API key %d v%d from %s", request.api_key,
                          request.api_version, peer)
            raise CloseConnection(f"internal error: {exc!r}") from exc

    @staticmethod
    def _encode(request: DecodedRequest, response: dict[str, Any]) -> bytes:
        return encode_response(
            request.correlation_id, build_response(request.api_key, request.api_version, response)
        )

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
                    "partition_index": part.partition, "error_code": "none",
                    "high_watermark": log_.end_offset, "last_stable_offset": log_.end_offset,
                    "log_start_offset": 0, "aborted_transactions": None, "records": b"",
                }
                if topic.topic != METADATA_TOPIC or part.partition != METADATA_PARTITION:
                    entry["error_code"] = "unknown_topic_or_partition"
                    error = True
                elif not 0 <= part.fetch_offset <= log_.end_offset:
                    entry["error_code"] = "offset_out_of_range"
                    error = True
                elif part.fetch_offset < log_.end_offset:
                    records = log_.read(part.fetch_offset, max(part.partition_max_bytes, 1))
                    entry["records"] = records
                    total += len(records)
                partitions_out.append(entry)
            topics_out.append({"topic": topic.topic, "partitions": partitions_out})
        return {"error_code": "none", "session_id": 0, "responses": topics_out}, total, error

    def _fetch(self, request: DecodedRequest) -> Outgoing | asyncio.Future[Outgoing | None]:
        response, size, error = self._metadata_fetch(request.body)
        max_wait_s = request.body.max_wait.total_seconds()
        if error or size >= max(request.body.min_bytes, 1) or max_wait_s <= 0:
            return self._encode(request, response)
        return asyncio.ensure_future(self._parked_fetch(request, max_wait_s))

    async def _parked_fetch(self, request: DecodedRequest, max_wait_s: float) -> Outgoing | None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._fetch_waiters.add(waiter)
        try:
            await asyncio.wait_for(waiter, max_wait_s)
        except TimeoutError:
            pass
        finally:
            self._fetch_waiters.discard(waiter)
        response, _, _ = self._metadata_fetch(request.body)
        return self._encode(request, response)

    def _wake_fetchers(self) -> None:
        for waiter in self._fetch_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._fetch_waiters.clear()


async def run_controller(config: BrokerConfig, ready_line: bool = True) -> None:
    """Run a controller-only node until SIGINT or SIGTERM."""
    server = ControllerServer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
        if ready_line:
            bound = ",".join(str(listener) for listener in server.bound_listeners())
            print(
                f"kconform controller node {config.node_id} ready: listening on {bound}, "
                f"advertising {bound}, data in {config.log_dir}",
                flush=True,
            )
        await stop.wait()
    finally:
        await server.stop()
