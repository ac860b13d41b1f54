"""What every node's asyncio driver shares: connections, listeners, timers, parked fetches.

A broker (:mod:`reference_broker.drivers.broker_server`) and a controller-only node
(:mod:`reference_broker.drivers.controller_server`) answer different APIs, but take bytes off sockets,
answer requests of one connection strictly in order (Kafka processes one request per connection
at a time, and clients such as librdkafka pipeline requests relying on that), close a connection
on bad input after logging its peer, park a Fetch until data arrives or ``max_wait`` passes, run
periodic jobs, and shut down on SIGINT/SIGTERM the same way. That is this module.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from kio.schema.errors import ErrorCode

from reference_broker.config import BrokerConfig, Listener
from reference_broker.handlers.context import CloseConnection
from reference_broker.protocol.api_versions import API_VERSIONS_KEY, api_versions_body
from reference_broker.protocol.codec import (
    DecodedRequest,
    MalformedRequestError,
    UnsupportedApiError,
    build_response,
    decode_request,
    encode_response,
)
from reference_broker.protocol.fast_responses import Chunks
from reference_broker.protocol.framing import Frame, FrameDecoder, FrameTooLargeError

log = logging.getLogger(__name__)

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


class _Connection(asyncio.BufferedProtocol):
    # A BufferedProtocol: the socket is read straight into the frame decoder's buffers
    # (recv_into), so a request's bytes are not first copied into a fresh bytes object and then
    # into a reassembly buffer (see FrameDecoder).
    def __init__(self, server: NodeServer, listener: str) -> None:
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


class NodeServer:
    """Listeners, connections, periodic jobs and parked fetches of one node.

    Subclasses set :attr:`api_versions` and implement :meth:`dispatch` (and may override
    :meth:`encode`); :meth:`handle_frame` decodes, refuses bad input and calls them.
    """

    api_versions: Mapping[int, tuple[int, int]]

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.max_request_bytes = int(config.get("socket.request.max.bytes"))
        self.connections: set[_Connection] = set()
        self.bound_ports: dict[str, int] = {}
        self._servers: list[asyncio.Server] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._fetch_waiters: set[asyncio.Future[None]] = set()
        # Bumped by every wake-up, so a fetch parked between its first look and its first wait
        # does not sleep through data that arrived in that gap.
        self._wake_count = 0

    # --- lifecycle ----------------------------------------------------------------------------

    async def bind_listeners(self) -> None:
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

    def bound_listeners(self) -> list[Listener]:
        return [Listener(listener.name, listener.host, self.bound_ports[listener.name])
                for listener in self.config.listeners]

    def every(self, interval_s: float, job: Callable[[int], Any], name: str) -> None:
        """Run ``job(now_ms)`` every ``interval_s`` until the node stops."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(interval_s)
                try:
                    job(now_ms())
                except Exception:  # keep maintenance alive; the error is logged for the operator
                    log.exception("periodic %s failed", name)

        self._tasks.append(asyncio.create_task(loop(), name=name))

    async def close_network(self) -> None:
        """Stop accepting, stop the timers, drop parked fetches and every connection."""
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

    # --- requests -----------------------------------------------------------------------------

    def handle_frame(
        self, frame: Frame, listener: str, peer: str
    ) -> Outgoing | None | asyncio.Future[Outgoing | None]:
        """Answer one frame: response bytes, None (no response), or a future for a request
        answered later. Raises CloseConnection when the connection must be dropped."""
        try:
            request = decode_request(frame, self.api_versions)
        except UnsupportedApiError as exc:
            if exc.api_key == API_VERSIONS_KEY and exc.correlation_id is not None:
                # KIP-511: answer a too-new ApiVersions with v0 UNSUPPORTED_VERSION and our
                # ranges, so the client can retry with a version we speak.
                body = build_response(
                    API_VERSIONS_KEY, 0, api_versions_body(self.api_versions, ErrorCode.unsupported_version)
                )
                return encode_response(exc.correlation_id, body)
            raise CloseConnection(f"{exc}") from None
        except MalformedRequestError as exc:
            raise CloseConnection(f"malformed request: {exc}") from None
        try:
            return self.dispatch(request, listener, peer)
        except CloseConnection:
            raise
        except Exception as exc:
            log.exception("error handling API key %d v%d from %s (client %r)",
                          request.api_key, request.api_version, peer, request.client_id)
            raise CloseConnection(f"internal error: {exc!r}") from exc

    def dispatch(
        self, request: DecodedRequest, listener: str, peer: str
    ) -> Outgoing | None | asyncio.Future[Outgoing | None]:
        raise NotImplementedError

    def encode(self, request: DecodedRequest, response: dict[str, Any]) -> Outgoing:
        return encode_response(
            request.correlation_id, build_response(request.api_key, request.api_version, response)
        )

    # --- parked fetches ---------------------------------------------------------------------------

    def fetch(
        self, request: DecodedRequest, look: Callable[[], tuple[dict[str, Any], int, bool]]
    ) -> Outgoing | asyncio.Future[Outgoing | None]:
        """Answer a Fetch now, or park it until ``look()`` finds ``min_bytes`` or ``max_wait``
        passes. ``look`` returns (response, bytes found, whether it must answer now)."""
        response, size, now = look()
        max_wait_s = request.body.max_wait.total_seconds()
        if now or size >= request.body.min_bytes or max_wait_s <= 0:
            return self.encode(request, response)
        return asyncio.ensure_future(self._parked(request, look, max_wait_s, self._wake_count))

    async def _parked(
        self, request: DecodedRequest, look: Callable[[], tuple[dict[str, Any], int, bool]],
        max_wait_s: float, seen: int,
    ) -> Outgoing | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait_s
        while True:
            remaining = deadline - loop.time()
            # Wait only if nothing woke fetchers since the last look: the task starts a loop
            # iteration after the first look, and new data may have come in between.
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
            response, size, now = look()
            if now or size >= request.body.min_bytes or loop.time() >= deadline:
                return self.encode(request, response)

    def wake_fetchers(self) -> None:
        """New data (or a new high watermark): parked fetches look again."""
        self._wake_count += 1
        for waiter in self._fetch_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._fetch_waiters.clear()


async def run_node(
    start: Callable[[], Awaitable[None]],
    ready_line: Callable[[], str] | None,
    before_stop: Callable[[], Awaitable[Any]] | None,
    stop: Callable[[], Awaitable[None]],
) -> None:
    """Start a node, print its ready line, run until SIGINT or SIGTERM, then stop it."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await start()
        if ready_line is not None:
            print(ready_line(), flush=True)
        await stopping.wait()
        if before_stop is not None:
            await before_stop()
    finally:
        await stop()
