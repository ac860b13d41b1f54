"""A deliberately wrong broker: a reference broker behind an in-process proxy that lies.

The suite is only worth something if it fails brokers that break Kafka's rules, and names the
rule. This module builds such brokers without writing one from scratch: an asyncio proxy that
speaks the Kafka protocol (with the reference broker's own codec) sits in front of a real
reference broker, forwards every request, and rewrites some responses:

- ``drop``: every 100th record (offsets 99, 199, ... of each partition) is removed from Fetch
  responses. Producers got an acknowledgement for it, consumers never see it: *lost-write*
  (and *poll-skip*), as a broker that loses acknowledged data shows.
- ``reorder``: Produce responses report each batch's base offset with its lowest bit flipped
  (0 <-> 1, 2 <-> 3, ...), so acknowledged offsets are out of order and disagree with the log:
  *nonmonotonic-send*, *inconsistent-offsets*, *duplicate*.
- ``aborted``: read_committed Fetch responses list no aborted transactions (an empty
  ``aborted_transactions``), so consumers cannot tell aborted records from committed ones and
  hand them to the application: *aborted-read* (G1a).

Metadata and FindCoordinator answers are rewritten to advertise the proxy, so clients never go
around it. The proxy runs on its own thread with its own event loop and is stopped (listener,
connections, thread) by :meth:`FaultyProxy.stop`.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import struct
import threading
from collections.abc import Callable
from typing import Any, Self

from harness.targets.base import BROKER_CONFIG, Target, TargetError, TargetOptions
from harness.targets.reference import ReferenceTarget
from reference_broker.drivers.wire_client import decode_response
from reference_broker.protocol.api_keys import ApiKey
from reference_broker.protocol.codec import decode_request, encode_response, peek_header
from reference_broker.records import Record, build_batch, iter_records, scan_valid_prefix

MODES = ("drop", "reorder", "aborted")
_SIZE = struct.Struct(">i")
PRODUCE, FETCH, METADATA, FIND_COORDINATOR = ApiKey.PRODUCE, ApiKey.FETCH, ApiKey.METADATA, ApiKey.FIND_COORDINATOR


def drop_every(records: bytes, every: int) -> bytes:
    """The record set without the records at offsets ``every-1, 2*every-1, ...``, as one batch
    spanning the same offsets (unchanged when nothing, or everything, would be dropped)."""
    headers, _ = scan_valid_prefix(records)
    if not headers or any(h.is_control or h.is_transactional for h in headers):
        return records
    kept: list[Record] = []
    dropped = 0
    for header in headers:
        for record in iter_records(records, header):
            if (record.offset + 1) % every == 0:
                dropped += 1
            else:
                kept.append(record)
    if not dropped or not kept:
        return records
    base = headers[0].base_offset
    return build_batch(kept, base_offset=base, last_offset_delta=headers[-1].last_offset - base)


class FaultyProxy:
    """A Kafka-protocol proxy to ``upstream`` that rewrites responses according to ``mode``."""

    def __init__(self, upstream: str, mode: str, every: int = 100, host: str = "127.0.0.1") -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
        self.upstream = upstream
        self.mode = mode
        self.every = every
        self.host = host
        self.port = 0
        self.rewritten = 0  # responses changed (for tests and reports)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> FaultyProxy:
        ready = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._serve, self.host, 0))
                self.port = int(self._server.sockets[0].getsockname()[1])
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._thread = threading.Thread(target=main, name=f"faulty-proxy-{self.mode}", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise TargetError(f"faulty proxy could not listen: {failure[0]}")
        return self

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        # Closing both ends lets every connection task see end-of-stream and finish by itself.
        for writer in list(self._writers):
            writer.close()
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=5)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._thread = None

    # --- one client connection -----------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        host, _, port = self.upstream.rpartition(":")
        up_writer: asyncio.StreamWriter | None = None
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            self._writers.add(up_writer)
            pending: collections.deque[tuple[int, int, int]] = collections.deque()
            responses = asyncio.ensure_future(self._responses(up_reader, writer, pending))
            try:
                while True:
                    payload = await _read_frame(reader)
                    if payload is None:
                        break
                    api_key, version, correlation = peek_header(payload)
                    if not (api_key == PRODUCE and _acks(payload) == 0):
                        pending.append((api_key, version, correlation))
                    up_writer.write(_SIZE.pack(len(payload)) + payload)
                    await up_writer.drain()
            finally:
                responses.cancel()
                await asyncio.gather(responses, return_exceptions=True)
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client or the broker went away, or the proxy is stopping
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    w.close()
                    self._writers.discard(w)
            self._tasks.discard(task)

    async def _responses(self, up_reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         pending: collections.deque[tuple[int, int, int]]) -> None:
        while True:
            payload = await _read_frame(up_reader)
            if payload is None:
                writer.close()
                return
            api_key, version, correlation = pending.popleft() if pending else (-1, -1, -1)
            writer.write(self._rewrite(api_key, version, correlation, payload))
            await writer.drain()

    def _rewrite(self, api_key: int, version: int, correlation: int, payload: bytes) -> bytes:
        framed = _SIZE.pack(len(payload)) + payload
        wanted = {METADATA, FIND_COORDINATOR, PRODUCE if self.mode == "reorder" else FETCH}
        if api_key not in wanted:
            return framed
        try:
            _, response = decode_response(api_key, version, payload)
        except Exception:  # noqa: BLE001 - e.g. an ApiVersions-style error answer: pass it on
            return framed
        changed = self._change(api_key, response)
        if changed is response:
            return framed
        self.rewritten += 1
        return encode_response(correlation, changed)

    def _change(self, api_key: int, response: Any) -> Any:
        if api_key == METADATA:
            brokers = tuple(dataclasses.replace(b, host=self.host, port=self.port) for b in response.brokers)
            return dataclasses.replace(response, brokers=brokers)
        if api_key == FIND_COORDINATOR:
            if hasattr(response, "coordinators"):
                return dataclasses.replace(response, coordinators=tuple(
                    dataclasses.replace(c, host=self.host, port=self.port) for c in response.coordinators))
            return dataclasses.replace(response, host=self.host, port=self.port)
        if api_key == FETCH:
            return _each_fetched_partition(response, self._drop if self.mode == "drop" else _hide_aborted)
        return self._reorder(response)

    def _drop(self, p: Any) -> Any:
        if not p.records:
            return p
        data = bytes(p.records)
        new = drop_every(data, self.every)
        return p if new is data else dataclasses.replace(p, records=new)

    def _reorder(self, response: Any) -> Any:
        topics = []
        for topic in response.responses:
            partitions = tuple(
                dataclasses.replace(p, base_offset=int(p.base_offset) ^ 1)
                if int(p.error_code) == 0 and int(p.base_offset) >= 0 else p
                for p in topic.partition_responses)
            topics.append(dataclasses.replace(topic, partition_responses=partitions))
        return dataclasses.replace(response, responses=tuple(topics))


def _each_fetched_partition(response: Any, change: Callable[[Any], Any]) -> Any:
    """A Fetch response with ``change`` applied to each partition (the same object when it
    changed none)."""
    changed = False
    topics = []
    for topic in response.responses:
        partitions = tuple(change(p) for p in topic.partitions)
        changed |= any(new is not old for new, old in zip(partitions, topic.partitions))
        topics.append(dataclasses.replace(topic, partitions=partitions))
    return dataclasses.replace(response, responses=tuple(topics)) if changed else response


def _hide_aborted(p: Any) -> Any:
    """A read_committed answer's partition listing no aborted transaction."""
    return dataclasses.replace(p, aborted_transactions=()) if p.aborted_transactions else p


async def _read_frame(reader: asyncio.StreamReader) -> bytes | None:
    try:
        prefix = await reader.readexactly(4)
        return await reader.readexactly(_SIZE.unpack(prefix)[0])
    except asyncio.IncompleteReadError:
        return None


def _acks(payload: bytes) -> int | None:
    try:
        return int(decode_request(payload).body.acks)
    except Exception:  # noqa: BLE001 - the broker will answer a malformed request itself
        return None


class FaultyTarget(Target):
    """A reference broker behind a :class:`FaultyProxy` (``mode`` ``drop``, ``reorder`` or ``aborted``)."""

    def __init__(self, mode: str, every: int = 100) -> None:
        super().__init__()
        if mode not in MODES:
            raise TargetError(f"unknown faulty mode {mode!r}; known: {', '.join(MODES)}")
        self.name = f"faulty-{mode}"
        self.mode = mode
        self.every = every
        self._broker: ReferenceTarget | None = None
        self._proxy: FaultyProxy | None = None

    @property
    def bootstrap(self) -> str:
        return self._running(self._proxy).bootstrap

    @property
    def proxy(self) -> FaultyProxy | None:
        return self._proxy

    def declared_capabilities(self) -> frozenset[str]:
        return frozenset({BROKER_CONFIG})

    def _start(self) -> None:
        self._broker = ReferenceTarget()
        self._broker.start()
        self._proxy = FaultyProxy(self._broker.bootstrap, self.mode, self.every).start()

    def _stop(self) -> None:
        if self._proxy is not None:
            self._proxy.stop()
            self._proxy = None
        if self._broker is not None:
            self._broker.stop()
            self._broker = None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "mode": self.mode, "every": self.every,
                "upstream": self._broker.bootstrap if self._broker is not None else None}


class FaultyDropTarget(FaultyTarget):
    """``faulty-drop``: every 100th record of each partition is left out of Fetch answers."""

    name = "faulty-drop"

    @classmethod
    def from_options(cls, options: TargetOptions) -> Self:
        return cls("drop")


class FaultyReorderTarget(FaultyTarget):
    """``faulty-reorder``: Produce answers report each batch's base offset with its lowest bit flipped."""

    name = "faulty-reorder"

    @classmethod
    def from_options(cls, options: TargetOptions) -> Self:
        return cls("reorder")


class FaultyAbortedTarget(FaultyTarget):
    """``faulty-aborted``: read_committed Fetch answers list no aborted transactions."""

    name = "faulty-aborted"

    @classmethod
    def from_options(cls, options: TargetOptions) -> Self:
        return cls("aborted")
