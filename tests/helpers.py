"""Small helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import shutil

import pytest


def require_kcat() -> str:
    """The kcat binary, or a visible skip saying why it is missing."""
    path = shutil.which("kcat")
    if path is None:
        pytest.skip("kcat is not installed (scripts/setup installs the Debian package as root)")
    return path


# --- raw Kafka wire access, for tests that speak the protocol without a client library ---------

import io as _io  # noqa: E402
import socket as _socket  # noqa: E402
import struct as _struct  # noqa: E402
from typing import Any as _Any  # noqa: E402

from kio.index import load_request_schema as _load_request_schema  # noqa: E402
from kio.index import load_response_schema as _load_response_schema  # noqa: E402
from kio.schema.errors import ErrorCode as _ErrorCode  # noqa: E402
from kio.serial import entity_reader as _entity_reader  # noqa: E402
from kio.serial import entity_writer as _entity_writer  # noqa: E402


def encode_request_payload(body: _Any, correlation_id: int, client_id: str | None = "kconform-test") -> bytes:
    """Header + body of a kio request object, without the 4-byte size prefix."""
    header_cls = type(body).__header_schema__
    header = header_cls(
        request_api_key=type(body).__api_key__,
        request_api_version=type(body).__version__,
        correlation_id=correlation_id,
        client_id=client_id,
    )
    out = _io.BytesIO()
    _entity_writer(header_cls)(out, header)
    _entity_writer(type(body))(out, body)
    return out.getvalue()


def size_prefixed(payload: bytes) -> bytes:
    return _struct.pack(">i", len(payload)) + payload


def encode_request(body: _Any, correlation_id: int, client_id: str | None = "kconform-test") -> bytes:
    """A complete request frame (size prefix, header, body) for a kio request object."""
    return size_prefixed(encode_request_payload(body, correlation_id, client_id))


def connect(bootstrap: str, timeout_s: float = 5.0) -> _socket.socket:
    host, port = bootstrap.rsplit(":", 1)
    sock = _socket.create_connection((host, int(port)), timeout=timeout_s)
    sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
    return sock


def _recv_exactly(sock: _socket.socket, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


def recv_frame(sock: _socket.socket) -> bytes | None:
    """One response frame without its size prefix; None when the broker closed the connection.
    Raises TimeoutError (socket.timeout) when nothing complete arrives within the socket timeout."""
    prefix = _recv_exactly(sock, 4)
    if prefix is None:
        return None
    (size,) = _struct.unpack(">i", prefix)
    return _recv_exactly(sock, size)


def connection_closed_by_peer(sock: _socket.socket, timeout_s: float = 5.0) -> bool:
    """True when the broker closes ``sock`` within the timeout (reading and discarding data)."""
    sock.settimeout(timeout_s)
    try:
        while sock.recv(65536):
            pass
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return True


def decode_response(api_key: int, api_version: int, frame: bytes, flexible_header: bool | None = None) -> tuple[int, _Any]:
    """(correlation id, response object) of a response frame (without its size prefix)."""
    cls = _load_response_schema(api_key, api_version)
    header, header_size = _entity_reader(cls.__header_schema__)(frame, 0)
    body, body_size = _entity_reader(cls)(frame, header_size)
    assert header_size + body_size == len(frame), "trailing bytes after the response"
    return header.correlation_id, body


def round_trip(sock: _socket.socket, body: _Any, correlation_id: int) -> _Any:
    """Send one request on ``sock`` and decode its response (asserting the correlation id)."""
    sock.sendall(encode_request(body, correlation_id))
    frame = recv_frame(sock)
    assert frame is not None, "the broker closed the connection instead of answering"
    got, response = decode_response(type(body).__api_key__, type(body).__version__, frame)
    assert got == correlation_id, f"correlation id {got} != {correlation_id}"
    return response


def assert_api_versions_ok(bootstrap: str, timeout_s: float = 5.0) -> None:
    """A fresh connection gets a correct ApiVersions v3 answer listing ApiVersions itself."""
    request_cls = _load_request_schema(18, 3)
    with connect(bootstrap, timeout_s) as sock:
        response = round_trip(
            sock, request_cls(client_software_name="kconform-test", client_software_version="1"), 7
        )
    assert response.error_code == _ErrorCode.none, response
    ranges = {k.api_key: (k.min_version, k.max_version) for k in response.api_keys}
    assert 18 in ranges and ranges[18][0] <= 3 <= ranges[18][1], ranges
