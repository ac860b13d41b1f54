"""The asyncio driver: sockets in, broker calls, sockets out.

This is the only module that touches sockets or reads the clock. Each connection is an
:class:`asyncio.Protocol` that splits frames, answers them strictly in order (Kafka processes one
request per connection at a time, and clients such as librdkafka pipeline requests relying on
that), and parks a Fetch that has too little data until data arrives or ``max_wait`` passes.

Bad input never takes the broker down: an oversized or undecodable frame, an unknown API, or a
handler bug closes that one connection after logging the peer address; every other client
carries on.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import signal
import time
from typing import Any, Protocol

from reference_broker.broker import Broker
from reference_broker.config import BrokerConfig, Listener
from reference_broker.handlers import FETCH, HANDLERS
from reference_broker.handlers.context import CloseConnection, Deferred, RequestContext
from reference_broker.handlers.fetch import handle_fetch
from reference_broker.handlers.metadata import api_versions_body
from reference_broker.protocol.api_versions import API_VERSIONS_KEY
from reference_broker.protocol.codec import (
    DecodedRequest,
    MalformedRequestError,
    ProtocolError,
    UnsupportedApiError,
    build_response,
    decode_request,
    encode_response,
)
from reference_broker.protocol.fast_responses import Chunks, encode_response_data
from reference_broker.protocol.framing import Frame, FrameDecoder, FrameTooLargeError
from reference_broker.remote_controller import RemoteControllerChannel
from reference_broker.replication.fetcher import FetcherConfig, ReplicaFetcherManager

log = logging.getLogger(__name__)

FLUSH_CHECK_INTERVAL_S = 1.0
# How often the core's timers (session and rebalance timeouts, delayed joins) are checked.
TICK_INTERVAL_S = 0.05
# A chunk of a response at least this large (the stored batches of a Fetch) is handed to the
# transport by itself instead of being joined with its neighbours. On CPython 3.11
# transport.writelines() is b"".join() + write(), one more copy of every byte a consumer
# reads; a write of its own goes straight to send() while the socket keeps up. Smaller chunks
# are joined so that a burst of small responses still costs one send().
DIRECT_WRITE_BYTES = 64 * 1024

# One framed response, as handle_frame answers: bytes, or chunks (Fetch, see fast_responses).
Outgoing = bytes | Chunks


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class FrameServer(Protocol):
    """What a connection needs of its server (a broker, or a controller-only node)."""

    max_request_bytes: int
    connections: set[_Connection]

    def handle_frame(
        self, frame: Frame, listener: str, peer: str
    ) -> Outgoing | None | asyncio.Future[Outgoing | None]: ...


class _Connection(asyncio.BufferedProtocol):
    # A BufferedProtocol: the socket is read straight into the frame decoder's buffers
    # (recv_into), so a request's bytes are not first copied into a fresh bytes object and then
    # into a reassembly buffer (see FrameDecoder).
    def __init__(self, server: FrameServer, listener: str) -> None:
        self._server = server
        self._listener = listener
        self._decoder = FrameDecoder(server.max_request_bytes)
        self._queue: collections.deque[Frame] = collections.deque()
        self._busy = False
        self._parked: asyncio.Future[Outgoing | None] | None = None
        self._closed = False
        self._transport: asyncio.Transport | None = None
        self.peer = "?"

    # --- asyncio.BufferedProtocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._queue.clear()
        if self._parked is not None:
            # Nobody is left to answer: do not keep a Fetch parked for up to max_wait (which a
            # client may set to ~24 days) holding its task and waiter.
            self._parked.cancel()
        self._server.connections.discard(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._decoder.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        try:
            frames = self._decoder.buffer_updated(nbytes)
        except FrameTooLargeError as exc:
            self.close(f"{exc}")
            return
        self._queue.extend(frames)
        if not self._busy:
            self._drain()

    def pause_writing(self) -> None:
        # The client is not reading its responses: stop reading its requests too.
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None and not self._closed:
            self._transport.resume_reading()

    # --- request processing -------------------------------------------------------------------

    def close(self, reason: str | None = None) -> None:
        if reason:
            log.warning("closing connection from %s: %s", self.peer, reason)
        self._closed = True
        self._queue.clear()
        if self._transport is not None:
            self._transport.close()

    def _write(self, out: Chunks) -> None:
        """Hand the responses of one pass to the transport: one write() for all of them, except
        that large chunks (stored record batches) go by themselves so they are not copied.

        Why: one write (one send() system call) per response was about a tenth of the cost of
        a small request; clients such as librdkafka pipeline requests, so one pass over the
        queue often answers several.
        """
        if not out or self._closed or self._transport is None:
            return
        transport = self._transport
        if len(out) == 1:
            transport.write(out[0])
            return
        small: Chunks = []
        for chunk in out:
            if len(chunk) < DIRECT_WRITE_BYTES:
                small.append(chunk)
                continue
            if small:
                transport.write(small[0] if len(small) == 1 else b"".join(small))
                small = []
            transport.write(chunk)
        if small:
            transport.write(small[0] if len(small) == 1 else b"".join(small))

    def _drain(self, out: Chunks | None = None) -> None:
        """Answer queued frames in order until the queue is empty or a Fetch parks; the
        responses are collected in ``out`` and written together."""
        if out is None:
            out = []
        while self._queue and not self._busy and not self._closed:
            frame = self._queue.popleft()
            try:
                result = self._server.handle_frame(frame, self._listener, self.peer)
            except CloseConnection as exc:
                self._write(out)  # earlier requests keep their answers, as before the close
                self.close(str(exc))
                return
            if isinstance(result, asyncio.Future):
                self._write(out)  # do not hold earlier answers back for the parked request
                self._busy = True
                self._parked = result
                result.add_done_callback(self._finish_parked)
                return
            if isinstance(result, list):
                out += result
            elif result is not None:
                out.append(result)
        self._write(out)

    def _finish_parked(self, future: asyncio.Future[Outgoing | None]) -> None:
        self._busy = False
        self._parked = None
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            self.close(f"parked request failed: {exc!r}")
            return
        result = future.result()
        out: Chunks = []
        if isinstance(result, list):
            out += result
        elif result is not None:
            out.append(result)
        self._drain(out)


class BrokerServer:
    """One broker node: its listeners, connections and periodic maintenance."""

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.max_request_bytes = int(config.get("socket.request.max.bytes"))
        # process.roles=broker: the controller is another process; combined mode: in here.
        self.remote_controller = (
            RemoteControllerChannel(config, now_ms) if config.is_broker_only else None
        )
        self.broker = Broker(config, now_ms(), self.remote_controller)
        # A moving high watermark lets parked consumer fetches read further and tells parked
        # follower fetches the new HW.
        self.broker.on_high_watermark = lambda partition: self._wake_fetchers()
        # Followers copy their leaders' logs (started with the listeners).
        self.replica_fetchers = ReplicaFetcherManager(
            self.broker, FetcherConfig.from_broker(config.get), now_ms
        )
        self.connections: set[_Connection] = set()
        self._servers: list[asyncio.Server] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._fetch_waiters: set[asyncio.Future[None]] = set()
        # Bumped by every wake-up, so a fetch parked between its first look and its first wait
        # does not sleep through data that arrived in that gap.
        self._wake_count = 0

    # --- lifecycle ----------------------------------------------------------------------------

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
            self.broker.bound_ports[listener.name] = server.sockets[0].getsockname()[1]
        if self.remote_controller is not None:
            # Registered once the ports are bound, so the controller learns real addresses.
            self.broker.start(now_ms())
            self.remote_controller.follow(lambda: self.broker.image.offset + 1)
        self._tasks = [
            asyncio.create_task(
                self._every(int(self.config.get("log.retention.check.interval.ms")) / 1000,
                            self.broker.run_retention), name="retention"),
            asyncio.create_task(
                self._every(max(int(self.config.get("log.cleaner.backoff.ms")), 1) / 1000,
                            self.broker.run_cleaner), name="cleaner"),
            asyncio.create_task(
                self._every(FLUSH_CHECK_INTERVAL_S, self.broker.flush_due), name="flusher"),
            asyncio.create_task(self._every(TICK_INTERVAL_S, self.broker.tick), name="timers"),
        ]
        self.replica_fetchers.start()

    def bound_listeners(self) -> list[Listener]:
        return [
            Listener(listener.name, listener.host, self.broker.bound_ports[listener.name])
            for listener in self.config.listeners
        ]

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
        self.broker.begin_controlled_shutdown(now_ms())
        deadline = time.monotonic() + timeout_s
        while not self.broker.shutdown_allowed and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self.broker.shutdown_allowed:
            log.info("broker %d: controlled shutdown complete", self.broker.node_id)
        else:
            log.warning("broker %d: controlled shutdown not acknowledged within %.1fs; "
                        "stopping anyway", self.broker.node_id, timeout_s)
        return self.broker.shutdown_allowed

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        await self.replica_fetchers.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.remote_controller is not None:
            await self.remote_controller.close()
        for waiter in list(self._fetch_waiters):
            waiter.cancel()
        for connection in list(self.connections):
            connection.close()
        for server in self._servers:
            await server.wait_closed()
        self.broker.close()
        log.info("broker %d stopped cleanly", self.broker.node_id)

    async def _every(self, interval_s: float, job: Any) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                job(now_ms())
            except Exception:  # keep maintenance alive; the error is logged for the operator
                log.exception("periodic %s failed", getattr(job, "__name__", job))

    # --- requests -----------------------------------------------------------------------------

    def handle_frame(
        self, frame: Frame, listener: str, peer: str
    ) -> Outgoing | None | asyncio.Future[Outgoing | None]:
        """Answer one frame: response bytes, None (no response), or a future for a parked fetch.

        Raises CloseConnection when the connection must be dropped.
        """
        try:
            request = decode_request(frame)
        except UnsupportedApiError as exc:
            if exc.api_key == API_VERSIONS_KEY and exc.correlation_id is not None:
                # KIP-511: answer a too-new ApiVersions with v0 UNSUPPORTED_VERSION and our ranges,
                # so the client can retry with a version we speak.
                body = build_response(API_VERSIONS_KEY, 0, api_versions_body("unsupported_version"))
                return encode_response(exc.correlation_id, body)
            raise CloseConnection(f"{exc}") from None
        except MalformedRequestError as exc:
            raise CloseConnection(f"malformed request: {exc}") from None
        ctx = RequestContext(
            request.api_key, request.api_version, request.correlation_id, request.client_id,
            listener, peer,
        )
        try:
            if request.api_key == FETCH:
                return self._fetch(ctx, request)
            response = HANDLERS[request.api_key](self.broker, ctx, request.body, now_ms())
            if request.api_key == 0:
                self._wake_fetchers()
            if isinstance(response, Deferred):
                return self._await_deferred(request, response)
            if response is None:
                return None
            return self._encode(request, response)
        except (CloseConnection, ProtocolError):
            raise
        except Exception as exc:
            log.exception("error handling API key %d v%d from %s (client %r)",
                          request.api_key, request.api_version, peer, request.client_id)
            raise CloseConnection(f"internal error: {exc!r}") from exc

    def _encode(self, request: DecodedRequest, response: dict[str, Any]) -> Outgoing:
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
                future.set_result(None if response is None else self._encode(request, response))
            except Exception as exc:  # an encoding bug closes only this connection
                future.set_exception(exc)

        deferred.on_resolved(resolved)
        return future

    def _fetch(
        self, ctx: RequestContext, request: DecodedRequest
    ) -> Outgoing | asyncio.Future[Outgoing | None]:
        body = request.body
        outcome = handle_fetch(self.broker, ctx, body, now_ms())
        max_wait_s = body.max_wait.total_seconds()
        if outcome.error or outcome.bytes >= body.min_bytes or max_wait_s <= 0:
            return self._encode(request, outcome.response)
        return asyncio.ensure_future(
            self._parked_fetch(ctx, request, max_wait_s, self._wake_count)
        )

    async def _parked_fetch(
        self, ctx: RequestContext, request: DecodedRequest, max_wait_s: float, seen: int
    ) -> Outgoing | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait_s
        while True:
            remaining = deadline - loop.time()
            # Wait only if nothing woke fetchers since the last look: the task starts a loop
            # iteration after the first look, and a produce (or a follower moving the high
            # watermark) may have come in between.
            if remaining > 0 and seen == self._wake_count:
                waiter: asyncio.Future[None] = loop.create_future()
                self._fetch_waiters.add(waiter)
                try:
                    await asyncio.wait_for(waiter, remaining)
                except TimeoutError:
                    pass
                finally:
                    self._fetch_waiters.discard(waiter)
            seen = self._wake_count
            outcome = handle_fetch(self.broker, ctx, request.body, now_ms())
            if outcome.error or outcome.bytes >= request.body.min_bytes or loop.time() >= deadline:
                return self._encode(request, outcome.response)

    def _wake_fetchers(self) -> None:
        self._wake_count += 1
        for waiter in self._fetch_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._fetch_waiters.clear()


async def run_broker(config: BrokerConfig, ready_line: bool = True) -> None:
    """Run one node until SIGINT or SIGTERM, then shut down cleanly (flush, close). A broker of a
    cluster (process.roles=broker) first moves its leadership away (controlled shutdown); a
    controller-only node (process.roles=controller) runs the controller server."""
    if config.is_controller_only:
        from reference_broker.controller_server import run_controller

        await run_controller(config, ready_line)
        return
    server = BrokerServer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
        if ready_line:
            bound = ",".join(str(listener) for listener in server.bound_listeners())
            advertised = ",".join(str(listener) for listener in server.advertised_listeners())
            print(
                f"kconform broker node {config.node_id} ready: listening on {bound}, "
                f"advertising {advertised}, data in {config.log_dir}",
                flush=True,
            )
        await stop.wait()
        if config.get("controlled.shutdown.enable"):
            await server.controlled_shutdown(int(config.get("broker.session.timeout.ms")) / 1000)
    finally:
        await server.stop()
