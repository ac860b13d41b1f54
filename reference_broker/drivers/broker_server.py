"""The broker's asyncio driver: sockets in, broker calls, sockets out.

This and :mod:`reference_broker.drivers.controller_server` are the only modules that touch sockets or
read the clock (the shared machinery is :mod:`reference_broker.drivers.node_server`). A Fetch with too
little data is parked until data arrives, the high watermark moves, or ``max_wait`` passes.

Bad input never takes the broker down: an oversized or undecodable frame, an unknown API, or a
handler bug closes that one connection after logging the peer address; every other client
carries on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from reference_broker.broker import Broker
from reference_broker.config import BrokerConfig, Listener
from reference_broker.drivers.fetcher import FetcherConfig, ReplicaFetcherManager
from reference_broker.drivers.node_server import NodeServer, Outgoing, now_ms, run_node
from reference_broker.drivers.remote_controller import RemoteControllerChannel
from reference_broker.drivers.txn_sender import TransactionSender
from reference_broker.handlers import FETCH, HANDLERS
from reference_broker.handlers.context import Deferred, RequestContext
from reference_broker.handlers.fetch import handle_fetch
from reference_broker.log.dir_lock import locked_log_dir
from reference_broker.protocol.api_versions import offered_versions
from reference_broker.protocol.codec import DecodedRequest
from reference_broker.protocol.fast_responses import encode_response_data

log = logging.getLogger(__name__)

FLUSH_CHECK_INTERVAL_S = 1.0
# How often the core's timers (session and rebalance timeouts, delayed joins) are checked.
TICK_INTERVAL_S = 0.05


class BrokerServer(NodeServer):
    """One broker node: its listeners, connections and periodic maintenance."""

    def __init__(self, config: BrokerConfig) -> None:
        super().__init__(config)
        # process.roles=broker: the controller is another process; combined mode: in here.
        self.remote_controller = (
            RemoteControllerChannel(config, now_ms) if config.is_broker_only else None
        )
        self.broker = Broker(config, now_ms(), self.remote_controller)
        # What a request may use, as ApiVersions answers it: by the transaction version.
        self.api_versions = offered_versions(self.broker.transactions.config.transaction_version)
        # A moving high watermark lets parked consumer fetches read further and tells parked
        # follower fetches the new HW.
        self.broker.on_high_watermark = lambda partition: self.wake_fetchers()
        # Followers copy their leaders' logs (started with the listeners).
        self.replica_fetchers = ReplicaFetcherManager(
            self.broker, FetcherConfig.from_broker(config.get), now_ms
        )
        # Markers to partition leaders and verifications to coordinators on other brokers.
        self.txn_requests = TransactionSender(self.broker, now_ms)

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        await self.bind_listeners()
        self.broker.bound_ports.update(self.bound_ports)
        if self.remote_controller is not None:
            # Registered once the ports are bound, so the controller learns real addresses.
            self.broker.lifecycle.start(now_ms())
            self.remote_controller.follow(lambda: self.broker.image.offset + 1)
        config = self.config
        self.every(int(config.get("log.retention.check.interval.ms")) / 1000,
                   self.broker.run_retention, "retention")
        self.every(max(int(config.get("log.cleaner.backoff.ms")), 1) / 1000,
                   self.broker.run_cleaner, "cleaner")
        self.every(FLUSH_CHECK_INTERVAL_S, self.broker.flush_due, "flusher")
        self.every(TICK_INTERVAL_S, self.broker.tick, "timers")
        self.replica_fetchers.start()
        self.txn_requests.start()

    def advertised_listeners(self) -> list[Listener]:
        return [
            Listener(adv.name, *self.broker.advertised_endpoint(adv.name))
            for adv in self.config.advertised_listeners
        ]

    async def controlled_shutdown(self, timeout_s: float) -> bool:
        """Ask the controller to move leadership away from this broker and wait (at most
        ``timeout_s``) until it has; whether it did. Only for process.roles=broker."""
        if self.remote_controller is None:
            return True
        log.info("broker %d: controlled shutdown: asking the controller to move leadership away",
                 self.broker.node_id)
        self.broker.lifecycle.begin_controlled_shutdown(now_ms())
        deadline = time.monotonic() + timeout_s
        while not self.broker.lifecycle.shutdown_allowed and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self.broker.lifecycle.shutdown_allowed:
            log.info("broker %d: controlled shutdown complete", self.broker.node_id)
        else:
            log.warning("broker %d: controlled shutdown not acknowledged within %.1fs; "
                        "stopping anyway", self.broker.node_id, timeout_s)
        return self.broker.lifecycle.shutdown_allowed

    async def stop(self) -> None:
        await self.txn_requests.stop()
        await self.replica_fetchers.stop()
        if self.remote_controller is not None:
            await self.remote_controller.close()
        await self.close_network()
        self.broker.close()
        log.info("broker %d stopped cleanly", self.broker.node_id)

    # --- requests -----------------------------------------------------------------------------

    def dispatch(
        self, request: DecodedRequest, listener: str, peer: str
    ) -> Outgoing | None | asyncio.Future[Outgoing | None]:
        ctx = RequestContext(
            request.api_key, request.api_version, request.correlation_id, request.client_id,
            listener, peer,
        )
        if request.api_key == FETCH:
            def look() -> tuple[dict[str, Any], int, bool]:
                outcome = handle_fetch(self.broker, ctx, request.body, now_ms())
                return outcome.response, outcome.bytes, outcome.error

            return self.fetch(request, look)
        response = HANDLERS[request.api_key](self.broker, ctx, request.body, now_ms())
        if request.api_key == 0:
            self.wake_fetchers()
        if isinstance(response, Deferred):
            return self._await_deferred(request, response)
        if response is None:
            return None
        return self.encode(request, response)

    def encode(self, request: DecodedRequest, response: dict[str, Any]) -> Outgoing:
        # Produce and Fetch responses in their usual shapes are packed by hand (about ten times
        # cheaper than kio's generic writer, and Fetch's records are not copied); anything else,
        # or any shape the fast encoders decline, takes kio's generic path.
        return encode_response_data(
            request.api_key, request.api_version, request.correlation_id, response
        )

    def _await_deferred(
        self, request: DecodedRequest, deferred: Deferred
    ) -> asyncio.Future[Outgoing | None]:
        """A future the connection waits on until the core resolves ``deferred``."""
        future: asyncio.Future[Outgoing | None] = asyncio.get_running_loop().create_future()

        def resolved(response: dict[str, Any] | None) -> None:
            if future.done():  # the connection went away meanwhile
                return
            try:
                future.set_result(None if response is None else self.encode(request, response))
            except Exception as exc:  # an encoding bug closes only this connection
                future.set_exception(exc)

        deferred.on_resolved(resolved)
        return future


async def run_broker(config: BrokerConfig, ready_line: bool = True) -> None:
    """Run one node until SIGINT or SIGTERM, then shut down cleanly (flush, close). A broker of a
    cluster (process.roles=broker) first moves its leadership away (controlled shutdown); a
    controller-only node (process.roles=controller) runs the controller server. Its data
    directory is locked while it runs (LogDirInUseError when another process holds it)."""
    with locked_log_dir(config.log_dir):
        await _run_node(config, ready_line)


async def _run_node(config: BrokerConfig, ready_line: bool) -> None:
    if config.is_controller_only:
        from reference_broker.drivers.controller_server import run_controller

        await run_controller(config, ready_line)
        return
    server = BrokerServer(config)

    def ready() -> str:
        bound = ",".join(str(listener) for listener in server.bound_listeners())
        advertised = ",".join(str(listener) for listener in server.advertised_listeners())
        return (f"kconform broker node {config.node_id} ready: listening on {bound}, "
                f"advertising {advertised}, data in {config.log_dir}")

    async def before_stop() -> None:
        if config.get("controlled.shutdown.enable"):
            await server.controlled_shutdown(int(config.get("broker.session.timeout.ms")) / 1000)

    await run_node(server.start, ready if ready_line else None, before_stop, server.stop)
