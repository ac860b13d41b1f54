"""A precise asyncio Kafka wire client: send *this* request at *this* version, get the raw answer.

Two kinds of callers need it. Brokers talk to each other and to the controller with it
(replica fetches, registrations, heartbeats, forwarded admin requests). The harness uses it for
protocol-level checks (:mod:`harness.wire`), where real client libraries would hide what the
broker said behind retries, negotiation and exceptions. Requests are kio dataclasses (or dicts
turned into the version's dataclass); responses come back as kio dataclasses.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import struct
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from kio.serial import entity_writer

from reference_broker.protocol.codec import build, decode_frame, request_class, response_class

_SIZE = struct.Struct(">i")


class WireError(Exception):
    """The connection failed or the broker closed it instead of answering."""


def encode_request(body: Any, correlation_id: int, client_id: str | None = "kconform") -> bytes:
    """Frame a kio request dataclass with its header and size prefix."""
    cls = type(body)
    header_cls = cls.__header_schema__
    out = io.BytesIO()
    entity_writer(header_cls)(
        out,
        header_cls(
            request_api_key=cls.__api_key__,
            request_api_version=cls.__version__,
            correlation_id=correlation_id,
            client_id=client_id,
        ),
    )
    entity_writer(cls)(out, body)
    payload = out.getvalue()
    return _SIZE.pack(len(payload)) + payload


def decode_response(api_key: int, version: int, payload: bytes) -> tuple[int, Any]:
    """(correlation_id, response dataclass) from a response frame without its size prefix."""
    header, body = decode_frame(response_class(api_key, version), payload)
    return int(header.correlation_id), body


class WireClient:
    """One connection to one broker; requests are answered in order."""

    def __init__(self, host: str, port: int, timeout_s: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._correlation = itertools.count(1)

    @classmethod
    def for_bootstrap(cls, bootstrap: str, timeout_s: float = 10.0) -> WireClient:
        host, _, port = bootstrap.split(",")[0].rpartition(":")
        return cls(host.strip("[]"), int(port), timeout_s)

    async def connect(self) -> WireClient:
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), self.timeout_s
        )
        return self

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except OSError:
                pass
            self._writer = None

    async def __aenter__(self) -> WireClient:
        return await self.connect()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def send_raw(self, frame: bytes) -> None:
        if self._writer is None:
            raise WireError("not connected")
        self._writer.write(frame)
        await self._writer.drain()

    async def read_frame(self) -> bytes:
        """The next response frame (without its size prefix)."""
        if self._reader is None:
            raise WireError("not connected")
        try:
            size_bytes = await asyncio.wait_for(self._reader.readexactly(4), self.timeout_s)
            (size,) = _SIZE.unpack(size_bytes)
            return await asyncio.wait_for(self._reader.readexactly(size), self.timeout_s)
        except asyncio.IncompleteReadError as exc:
            raise WireError("the broker closed the connection") from exc

    async def request(self, body: Any, expect_response: bool = True) -> Any:
        """Send one kio request dataclass; return the decoded response (None for no response)."""
        cls = type(body)
        correlation_id = next(self._correlation)
        await self.send_raw(encode_request(body, correlation_id))
        if not expect_response:
            return None
        got, response = decode_response(cls.__api_key__, cls.__version__, await self.read_frame())
        if got != correlation_id:
            raise WireError(f"response correlation id {got} does not match request {correlation_id}")
        return response

    async def call(self, api_key: int, version: int, fields: Mapping[str, Any]) -> Any:
        """Build the request of ``api_key``/``version`` from ``fields`` (nested dicts allowed,
        omitted fields take their schema default)."""
        return await self.request(build(request_class(api_key, version), fields))
