"""Sends the transaction coordinator's markers to the partition leaders (the I/O half of
:mod:`reference_broker.transactions.marker_channel`).

Whenever the coordinator has decided a transaction (or a retry is due), the sender asks the
broker for the WriteTxnMarkers requests to send, one per leader. Markers of partitions this node
leads are written here directly (the same code as the WriteTxnMarkers handler); the others go
over the inter-broker listener (``kconform.replica.peer.addresses`` when set, so chaos on a
replication link also delays markers), one request in flight per leader. Every answer, or a
failed connection, goes back to the channel, which decides what is retried.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from kio.schema.errors import ErrorCode

from reference_broker.broker import Broker
from reference_broker.drivers.wire_client import WireClient, WireError
from reference_broker.handlers.txn_markers import MARKER_TIMEOUT_MS, MarkerErrors, write_markers
from reference_broker.protocol.api_keys import ApiKey
from reference_broker.protocol.codec import build, request_class
from reference_broker.transactions.marker_channel import RETRY_BACKOFF_MS, MarkerRequest

log = logging.getLogger(__name__)

WRITE_TXN_MARKERS_VERSION = 1
# A leader answers within its marker timeout; allow for the network on top.
ANSWER_TIMEOUT_S = MARKER_TIMEOUT_MS / 1000 + 10


def _request_body(request: MarkerRequest) -> object:
    """The WriteTxnMarkers request: one marker per transaction, its partitions by topic."""
    markers: dict[tuple[int, int, int, bool], dict[str, list[int]]] = {}
    for entry in request.entries:
        key = (entry.producer_id, entry.producer_epoch, entry.coordinator_epoch, entry.commit)
        topic, index = entry.topic_partition
        markers.setdefault(key, {}).setdefault(topic, []).append(index)
    return build(request_class(ApiKey.WRITE_TXN_MARKERS, WRITE_TXN_MARKERS_VERSION), {"markers": [
        {"producer_id": pid, "producer_epoch": epoch, "coordinator_epoch": coordinator_epoch,
         "transaction_result": commit,
         "topics": [{"name": name, "partition_indexes": indexes} for name, indexes in topics.items()]}
        for (pid, epoch, coordinator_epoch, commit), topics in markers.items()
    ]})


def _errors_of(response: object) -> MarkerErrors:
    return {
        (int(marker.producer_id), (topic.name, int(partition.partition_index))): ErrorCode(partition.error_code)
        for marker in response.markers  # type: ignore[attr-defined]
        for topic in marker.topics for partition in topic.partitions
    }


class TxnMarkerSender:
    """One task that hands out the markers, and one connection per remote leader."""

    def __init__(self, broker: Broker, now_ms: Callable[[], int]) -> None:
        self.broker = broker
        self.now_ms = now_ms
        self._wake = asyncio.Event()
        broker.transactions.on_markers = self._wake.set
        self._clients: dict[int, WireClient] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._sends: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="txn-marker-sender")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._sends) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        for leader in list(self._clients):
            await self._disconnect(leader)

    async def _run(self) -> None:
        while True:
            try:
                self._send_due()
            except Exception:  # keep the markers moving; the error is logged
                log.exception("sending transaction markers failed")
            wait = RETRY_BACKOFF_MS / 1000 if len(self.broker.txn_markers) else None
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except TimeoutError:
                pass
            self._wake.clear()

    def _send_due(self) -> None:
        now = self.now_ms()
        for request in self.broker.marker_requests(now):
            if request.leader == self.broker.node_id:
                write_markers(self.broker, request.entries, now, self._answer_to(request))
            else:
                task = asyncio.create_task(self._send(request), name=f"txn-markers-{request.leader}")
                self._sends.add(task)
                task.add_done_callback(self._sends.discard)

    def _answer_to(self, request: MarkerRequest) -> Callable[[MarkerErrors], None]:
        return lambda errors: self._answered(request, errors)

    def _answered(self, request: MarkerRequest, errors: MarkerErrors) -> None:
        self.broker.txn_markers.answered(request, errors, self.now_ms())
        self._wake.set()

    async def _send(self, request: MarkerRequest) -> None:
        errors: MarkerErrors = {}
        async with self._locks.setdefault(request.leader, asyncio.Lock()):
            try:
                client = await self._connect(request.leader)
                errors = _errors_of(await client.request(_request_body(request)))
            except (WireError, OSError, TimeoutError) as exc:
                log.info("transaction markers to broker %d failed: %s", request.leader,
                         exc or type(exc).__name__)
                await self._disconnect(request.leader)
        self._answered(request, errors)

    async def _connect(self, leader: int) -> WireClient:
        address = self.broker.peer_address(leader)
        if address is None:
            raise WireError(f"no known address for broker {leader}")
        client = self._clients.get(leader)
        if client is not None and (client.host, client.port) == address:
            return client
        await self._disconnect(leader)
        client = WireClient(address[0], address[1], ANSWER_TIMEOUT_S)
        await client.connect()
        self._clients[leader] = client
        return client

    async def _disconnect(self, leader: int) -> None:
        client = self._clients.pop(leader, None)
        if client is not None:
            await client.close()
