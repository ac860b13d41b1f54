"""The inter-broker requests of transactions: the coordinator's markers to the partition
leaders (the I/O half of :mod:`reference_broker.transactions.marker_channel`), and the partition
leaders' verification questions to coordinators on other brokers (KIP-890 part 1,
:mod:`reference_broker.transactions.verification`).

Whenever the coordinator has decided a transaction (or a retry is due), the sender asks the
broker for the WriteTxnMarkers requests to send, one per leader. Markers of partitions this node
leads are written here directly (the same code as the WriteTxnMarkers handler); the others go
over the inter-broker listener (``kconform.replica.peer.addresses`` when set, so chaos on a
replication link also delays markers), one request in flight per leader. Every answer, or a
failed connection, goes back to the channel, which decides what is retried.

A verification is one AddPartitionsToTxn v4 request with ``verify_only`` to the coordinator's
broker, over the same connections; an add for a client of transaction version 2 (KIP-890 part
2) is one v5 request without it. A failed one answers REQUEST_TIMED_OUT for its partitions
(the producer is told to retry).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from kio.schema.errors import ErrorCode

from reference_broker.broker import Broker
from reference_broker.drivers.wire_client import WireClient, WireError
from reference_broker.handlers.txn_markers import MARKER_TIMEOUT_MS, MarkerErrors, write_markers
from reference_broker.protocol.api_keys import ApiKey
from reference_broker.protocol.codec import build, request_class
from reference_broker.transactions.marker_channel import RETRY_BACKOFF_MS, MarkerRequest
from reference_broker.transactions.verification import Verification

log = logging.getLogger(__name__)

WRITE_TXN_MARKERS_VERSION = 1
VERIFY_VERSION = 4  # AddPartitionsToTxn's batched form, from brokers (KIP-890 part 1)
ADD_VERSION = 5  # the adding of a Produce 12's or TxnOffsetCommit 5's partitions (KIP-890 part 2)
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


def _verify_body(verification: Verification) -> object:
    topics: dict[str, list[int]] = {}
    for topic, index in verification.partitions:
        topics.setdefault(topic, []).append(index)
    version = ADD_VERSION if verification.add else VERIFY_VERSION
    return build(request_class(ApiKey.ADD_PARTITIONS_TO_TXN, version), {"transactions": [{
        "transactional_id": verification.transactional_id, "producer_id": verification.producer_id,
        "producer_epoch": verification.producer_epoch, "verify_only": not verification.add,
        "topics": [{"name": name, "partitions": indexes} for name, indexes in topics.items()],
    }]})


def _verify_answers(verification: Verification, response: object) -> dict[tuple[str, int], ErrorCode]:
    top = ErrorCode(response.error_code)  # type: ignore[attr-defined]
    if top is not ErrorCode.none:
        return dict.fromkeys(verification.partitions, top)
    answers = {
        (topic.name, int(p.partition_index)): ErrorCode(p.partition_error_code)
        for txn in response.results_by_transaction  # type: ignore[attr-defined]
        for topic in txn.topic_results for p in topic.results_by_partition
    }
    return {tp: answers.get(tp, ErrorCode.request_timed_out) for tp in verification.partitions}


class TransactionSender:
    """One task that hands out the markers and verifications, and one connection per broker."""

    def __init__(self, broker: Broker, now_ms: Callable[[], int]) -> None:
        self.broker = broker
        self.now_ms = now_ms
        self._wake = asyncio.Event()
        broker.transactions.on_markers = self._wake.set
        broker.on_verification = self._wake.set
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
        verifications, self.broker.verifications = self.broker.verifications, []
        for verification in verifications:
            self._spawn(self._verify(verification), verification.coordinator)
        now = self.now_ms()
        for request in self.broker.marker_requests(now):
            if request.leader == self.broker.node_id:
                write_markers(self.broker, request.entries, now, self._answer_to(request))
            else:
                self._spawn(self._send(request), request.leader)

    def _spawn(self, coroutine: Coroutine[Any, Any, None], broker: int) -> None:
        task = asyncio.create_task(coroutine, name=f"txn-requests-{broker}")
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    def _answer_to(self, request: MarkerRequest) -> Callable[[MarkerErrors], None]:
        return lambda errors: self._answered(request, errors)

    def _answered(self, request: MarkerRequest, errors: MarkerErrors) -> None:
        self.broker.txn_markers.answered(request, errors, self.now_ms())
        self._wake.set()

    async def _send(self, request: MarkerRequest) -> None:
        response = await self._ask(request.leader, _request_body(request), "transaction markers")
        self._answered(request, {} if response is None else _errors_of(response))

    async def _verify(self, verification: Verification) -> None:
        response = await self._ask(verification.coordinator, _verify_body(verification), "verification")
        verification.callback(dict.fromkeys(verification.partitions, ErrorCode.request_timed_out)
                              if response is None else _verify_answers(verification, response))

    async def _ask(self, broker: int, body: object, what: str) -> Any:
        """Send ``body`` to ``broker`` (one request in flight per broker); None if it failed."""
        async with self._locks.setdefault(broker, asyncio.Lock()):
            try:
                client = await self._connect(broker)
                return await client.request(body)
            except (WireError, OSError, TimeoutError) as exc:
                log.info("%s to broker %d failed: %s", what, broker, exc or type(exc).__name__)
                await self._disconnect(broker)
                return None

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
