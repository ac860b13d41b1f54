"""A broker's channel to a controller in another process (``process.roles=broker``).

The asyncio half of :class:`~reference_broker.controller_channel.ControllerChannel`: requests go
over the wire (:class:`~reference_broker.drivers.wire_client.WireClient`) to the controller named by
``controller.quorum.voters``, and a long-polling Fetch of ``__cluster_metadata`` partition 0
(with this broker's id as the replica id, as KRaft observers fetch) brings the metadata log,
which is handed to the broker as it arrives.

Three connections, so that no kind of traffic waits behind another: one for registration and
heartbeats (a slow admin request must not cost a broker its session), one for other requests
(AlterPartition, AllocateProducerIds, forwarded admin requests), one for the metadata fetch.
A request that fails (connection refused or lost, timeout) drops its connection; unless it is
a heartbeat it is sent again on a new one until its timeout, and then answered ``None``. While the controller is unreachable the
broker keeps serving with the metadata it has.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable
from typing import Any

from kio.schema.errors import ErrorCode

from reference_broker.config import BrokerConfig
from reference_broker.controller_channel import (
    ControllerRequest,
    MetadataSink,
    ResponseCallback,
    controller_request,
)
from reference_broker.drivers.wire_client import WireClient
from reference_broker.metadata.log import METADATA_PARTITION, METADATA_TOPIC, decode_batches
from reference_broker.metadata.records import MetadataRecordError
from reference_broker.protocol.api_keys import ApiKey

log = logging.getLogger(__name__)

LIFECYCLE_APIS = frozenset({ApiKey.BROKER_REGISTRATION, ApiKey.BROKER_HEARTBEAT})
FETCH_MAX_WAIT_MS = 500  # Kafka's replica.fetch.wait.max.ms default
FETCH_MAX_BYTES = 8 * 1024 * 1024
RETRY_BACKOFF_S = 0.1
MAX_RETRY_BACKOFF_S = 1.0


class ControllerUnreachable(Exception):
    """The request could not be sent or its answer did not come."""


class ControllerConnection:
    """One connection to the controller carrying one request at a time; reconnects on demand."""

    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self._client: WireClient | None = None
        self._lock = asyncio.Lock()

    async def request(self, body: Any) -> Any:
        async with self._lock:
            try:
                if self._client is None:
                    self._client = await WireClient(self.host, self.port, self.timeout_s).connect()
                return await self._client.request(body)
            except asyncio.CancelledError:
                await self._drop()
                raise
            except Exception as exc:  # refused, reset, timed out, undecodable: start over
                await self._drop()
                raise ControllerUnreachable(f"{type(exc).__name__}: {exc}") from exc

    async def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.close()
            except Exception:  # closing a broken connection may fail too; it is gone either way
                pass

    async def close(self) -> None:
        await self._drop()


class RemoteControllerChannel:
    """See the module docstring."""

    def __init__(self, config: BrokerConfig, clock: Callable[[], int]) -> None:
        voter = config.controller_voter
        if voter is None:
            raise ValueError("controller.quorum.voters is not set")
        self.node_id = config.node_id
        self.address = (voter.host, voter.port)
        self._clock = clock
        session_s = int(config.get("broker.session.timeout.ms")) / 1000
        self._lifecycle = ControllerConnection(voter.host, voter.port, max(1.0, session_s / 2))
        self._requests = ControllerConnection(voter.host, voter.port, max(5.0, session_s))
        self._fetch = ControllerConnection(voter.host, voter.port,
                                           FETCH_MAX_WAIT_MS / 1000 + max(2.0, session_s))
        self._sink: MetadataSink | None = None
        self._next_offset: Callable[[], int] = lambda: 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._fetcher: asyncio.Task[None] | None = None
        self._unreachable_logged = False

    @property
    def local(self) -> bool:
        return False

    def attach(self, sink: MetadataSink, now_ms: int) -> None:
        self._sink = sink

    def follow(self, next_offset: Callable[[], int]) -> None:
        """Start long-polling the metadata log from ``next_offset()`` (the driver calls this
        once its event loop runs)."""
        self._next_offset = next_offset
        if self._fetcher is None:
            self._fetcher = asyncio.get_running_loop().create_task(
                self._fetch_loop(), name="metadata-fetcher"
            )

    def send(self, request: ControllerRequest, callback: ResponseCallback, now_ms: int) -> None:
        connection = self._lifecycle if ApiKey(request.__api_key__) in LIFECYCLE_APIS else self._requests
        task = asyncio.get_running_loop().create_task(self._call(connection, request, callback))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _call(self, connection: ControllerConnection, body: Any,
                    callback: ResponseCallback) -> None:
        # Like Kafka's NodeToControllerChannelManager, a request that fails fast is sent again
        # on a new connection until its timeout: a connection a fault left broken (a black hole
        # swallowed bytes) must not fail the first request after the fault heals. Heartbeats
        # are not retried: the next one is due soon anyway.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + connection.timeout_s
        backoff = RETRY_BACKOFF_S
        while True:
            try:
                response = await connection.request(body)
            except ControllerUnreachable as exc:
                self._log_unreachable(exc)
                if connection is self._lifecycle or loop.time() + backoff >= deadline:
                    response = None
                    break
                await asyncio.sleep(backoff)
                backoff = min(2 * backoff, MAX_RETRY_BACKOFF_S)
            else:
                self._reachable()
                break
        try:
            callback(response)
        except Exception:
            log.exception("handling the controller's answer to API key %d failed",
                          type(body).__api_key__)

    def tick(self, now_ms: int) -> None:
        return None

    def _log_unreachable(self, exc: Exception) -> None:
        if not self._unreachable_logged:
            self._unreachable_logged = True
            log.warning("controller %s:%d unreachable: %s", *self.address, exc)

    def _reachable(self) -> None:
        if self._unreachable_logged:
            self._unreachable_logged = False
            log.info("controller %s:%d reachable again", *self.address)

    def _fetch_request(self, offset: int) -> Any:
        return controller_request(1, {
            "replica_id": self.node_id,
            "max_wait": datetime.timedelta(milliseconds=FETCH_MAX_WAIT_MS),
            "min_bytes": 1,
            "max_bytes": FETCH_MAX_BYTES,
            "isolation_level": 0,
            "session_id": 0,
            "session_epoch": -1,
            "topics": [{"topic": METADATA_TOPIC, "partitions": [{
                "partition": METADATA_PARTITION, "fetch_offset": offset,
                "partition_max_bytes": FETCH_MAX_BYTES, "current_leader_epoch": -1,
                "log_start_offset": -1, "last_fetched_epoch": -1,
            }]}],
            "forgotten_topics_data": [],
            "rack_id": "",
        })

    async def _fetch_loop(self) -> None:
        backoff = RETRY_BACKOFF_S
        while True:
            offset = self._next_offset()
            try:
                response = await self._fetch.request(self._fetch_request(offset))
            except ControllerUnreachable as exc:
                self._log_unreachable(exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_RETRY_BACKOFF_S)
                continue
            backoff = RETRY_BACKOFF_S
            self._reachable()
            part = response.responses[0].partitions[0]
            if part.error_code != ErrorCode.none:
                log.error("metadata fetch from offset %d failed: %s", offset, part.error_code.name)
                await asyncio.sleep(MAX_RETRY_BACKOFF_S)
                continue
            try:
                records = decode_batches(part.records or b"")
            except MetadataRecordError:
                log.exception("undecodable metadata from the controller at offset %d", offset)
                await asyncio.sleep(MAX_RETRY_BACKOFF_S)
                continue
            if self._sink is not None:
                try:
                    self._sink.apply_metadata(records, int(part.high_watermark), self._clock())
                except Exception:  # a bug applying metadata must not stop the fetcher for good
                    log.exception("applying metadata from offset %d failed", offset)
                    await asyncio.sleep(MAX_RETRY_BACKOFF_S)

    async def close(self) -> None:
        tasks = [task for task in (self._fetcher, *self._tasks) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for connection in (self._lifecycle, self._requests, self._fetch):
            await connection.close()
