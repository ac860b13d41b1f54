"""Small helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

Found = TypeVar("Found")


def skip_unless(find: Callable[[], Found], missing: type[Exception]) -> Found:
    """What ``find`` returns (a launcher's lookup of a binary or a runtime), or a visible skip
    with its message where it raises ``missing`` (which says what to install)."""
    try:
        return find()
    except missing as exc:
        pytest.skip(str(exc))


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


def decode_response(api_key: int, api_version: int, frame: bytes) -> tuple[int, _Any]:
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


# --- Hypothesis strategies for well-formed requests of every supported API and version ---------

import dataclasses as _dataclasses  # noqa: E402
import datetime as _datetime  # noqa: E402
import functools as _functools  # noqa: E402
import types as _types  # noqa: E402
import typing as _typing  # noqa: E402

from crc32c import crc32c as _crc32c  # noqa: E402
from hypothesis import strategies as _st  # noqa: E402
from kio.schema.types import TopicName as _TopicName  # noqa: E402
from kio.static.primitive import Records as _Records  # noqa: E402
from kio.static.primitive import i32Timedelta as _i32Timedelta  # noqa: E402
from kio.static.primitive import i64Timedelta as _i64Timedelta  # noqa: E402

from reference_broker.config import TOPIC_KEYS as _TOPIC_KEYS  # noqa: E402
from reference_broker.protocol.api_versions import API_VERSIONS as _API_VERSIONS  # noqa: E402
from reference_broker.records import Record as _Record  # noqa: E402
from reference_broker.records import build_batch as _build_batch  # noqa: E402

# kio registers strategies for its primitive types, but not for Records (opaque bytes).
_st.register_type_strategy(_Records, _st.binary(max_size=64).map(_Records))

SUPPORTED_REQUESTS: tuple[tuple[int, int], ...] = tuple(
    (key, version) for key, (low, high) in sorted(_API_VERSIONS.items()) for version in range(low, high + 1)
)
"""Every (api_key, api_version) the reference broker answers."""

MAX_LIST = 3  # list fields hold at most this many entries: plenty of structure, bounded sizes
FUZZ_TOPICS = ("fuzz-0", "fuzz-1", "fuzz-2")
BAD_TOPIC_NAMES = ("", ".", "..", "bad/name", "x" * 250, "ünïcode")
CONFIG_NAMES = tuple(sorted(_TOPIC_KEYS)) + ("no.such.config",)
CONFIG_VALUES = ("compact", "delete", "compact,delete", "0", "1", "-1", "14", "1000", "86400000",
                 "0.5", "true", "lz4", "CreateTime", "LogAppendTime", "nonsense", "")
I32_EDGES = (-(2**31), -1, 0, 1, 2**31 - 1)


def _ints(*interesting: int) -> _Any:
    return _st.sampled_from(interesting + I32_EDGES)


def _text() -> _Any:
    return _st.text(max_size=12)


_RECORD_SET_KINDS = ("valid", "valid", "two_batches", "bad_crc", "huge_length", "bad_magic",
                     "count_mismatch", "compressed_garbage", "truncated", "random", "empty")


def _fix_crc(batch: bytearray) -> None:
    _struct.pack_into(">I", batch, 17, _crc32c(bytes(batch[21:])))


@_st.composite
def record_sets(draw: _Any) -> bytes:
    """Produce payloads: valid v2 batches, batches broken in the ways Kafka rejects, and noise."""
    kind = draw(_st.sampled_from(_RECORD_SET_KINDS))
    if kind == "random":
        return bytes(draw(_st.binary(max_size=80)))
    if kind == "empty":
        return b""
    count = draw(_st.integers(1, 3))
    timestamp = draw(_st.sampled_from((-1, 0, 1_700_000_000_000, 2**62)))
    records = [
        _Record(
            offset=i,
            timestamp=timestamp,
            key=draw(_st.none() | _st.binary(max_size=8)),
            value=draw(_st.none() | _st.binary(max_size=32)),
            headers=tuple(draw(_st.lists(_st.tuples(_text(), _st.binary(max_size=4)), max_size=1))),
        )
        for i in range(count)
    ]
    batch = bytearray(_build_batch(records, base_offset=0))
    if kind == "two_batches":
        return bytes(batch) * 2
    if kind == "bad_crc":
        batch[-1] ^= 0xFF
    elif kind == "huge_length":
        _struct.pack_into(">i", batch, 8, draw(_st.sampled_from((2**31 - 1, 2**30, len(batch) * 1000))))
    elif kind == "bad_magic":
        batch[16] = draw(_st.sampled_from((0, 1, 3, 255)))
    elif kind == "count_mismatch":
        _struct.pack_into(">i", batch, 57, draw(_st.sampled_from((0, -1, count + 1, 2**31 - 1))))
        _fix_crc(batch)
    elif kind == "compressed_garbage":
        _struct.pack_into(">h", batch, 21, draw(_st.integers(1, 7)))
        _fix_crc(batch)
    elif kind == "truncated":
        del batch[draw(_st.integers(0, len(batch) - 1)):]
    return bytes(batch)


def _max_wait() -> _Any:
    # Mostly short: a parked Fetch delays the probe that follows it. The huge one is kept rare.
    return _st.sampled_from((0, 0, 0, 1, 5, 10, 0, 0, 1, 2**31 - 1)).map(
        lambda ms: _i32Timedelta.parse(_datetime.timedelta(milliseconds=ms))
    )


def _timeout() -> _Any:
    return _st.sampled_from((0, 1000, 30000, -1)).map(
        lambda ms: _i32Timedelta.parse(_datetime.timedelta(milliseconds=ms))
    )


def _leaf(name: str, tp: _Any) -> _Any:
    """A value for a leaf field: interesting values by field name, mixed with anything valid."""
    if tp is _TopicName or name in ("topic", "topic_names"):
        return _st.sampled_from(FUZZ_TOPICS + BAD_TOPIC_NAMES) | _text()
    if name == "name":  # a config entry's name (a topic name is typed TopicName, above)
        return _st.sampled_from(CONFIG_NAMES) | _text()
    if name == "configuration_keys":
        return _st.sampled_from(CONFIG_NAMES)
    if name == "value":
        return _st.sampled_from(CONFIG_VALUES) | _text()
    if name == "resource_name":
        return _st.sampled_from(FUZZ_TOPICS + ("", "0", "1")) | _text()
    if name == "records":
        return record_sets().map(_Records)
    if name == "max_wait":
        return _max_wait()
    if name == "timeout":
        return _timeout()
    if name == "retention_time":
        # OffsetCommit v2-v4 (int64 ms): kio's decoder overflows beyond about 2**54 ms.
        return _st.sampled_from((-1, 0, 60_000, 2**53)).map(
            lambda ms: _i64Timedelta.parse(_datetime.timedelta(milliseconds=ms))
        )
    if isinstance(tp, type) and issubclass(tp, str):
        return _text()
    special: dict[str, _Any] = {
        "num_partitions": _ints(-1, 1, 2, 3, 10_001, 100_000),
        "count": _ints(1, 2, 3, 4, 10_001, 100_000),
        "replication_factor": _st.sampled_from((-1, 0, 1, 2, 2**15 - 1)),
        "acks": _st.sampled_from((-1, 0, 1, 2, -2)),
        "partition": _ints(2, 3), "partition_index": _ints(2, 3), "index": _ints(2, 3),
        "partitions": _ints(2, 3),
        "fetch_offset": _ints(2, 5, 2**62), "offset": _ints(2, 5, -2, 2**62),
        "log_start_offset": _ints(2, 2**62),
        "timestamp": _ints(-2, -3, -4, -5, -6, 1_700_000_000_000, 2**62),
        "max_bytes": _ints(100, 1 << 20), "partition_max_bytes": _ints(100, 1 << 20),
        "min_bytes": _ints(100, 1 << 20),
        "session_id": _ints(7), "session_epoch": _ints(7),
        "current_leader_epoch": _ints(2), "last_fetched_epoch": _ints(2),
        "isolation_level": _st.sampled_from((0, 1, 2, -1, 127)),
        "resource_type": _st.sampled_from((2, 4, 0, 1, 3, -1, 127)),
        "config_operation": _st.sampled_from((0, 1, 2, 3, 4, -1)),
        "key_type": _st.sampled_from((0, 1, 2, -1)),
        "broker_ids": _st.sampled_from((0, 1, -1, 2**31 - 1)),
        # kio reads the zero UUID as None (unknown id), so None stands for it: no just(UUID(0)).
        "topic_id": _st.uuids(),
    }
    if name in special:
        return special[name]
    return _st.from_type(tp)


def _field_strategy(name: str, tp: _Any) -> _Any:
    origin = _typing.get_origin(tp)
    args = _typing.get_args(tp)
    if origin in (_typing.Union, _types.UnionType):
        inner = [arg for arg in args if arg is not type(None)]
        assert len(inner) == 1, tp
        return _st.none() | _field_strategy(name, inner[0])
    if origin is tuple:
        return _st.lists(_field_strategy(name, args[0]), max_size=MAX_LIST).map(tuple)
    if _dataclasses.is_dataclass(tp):
        return entity_strategy(_typing.cast(type[_Any], tp))
    return _leaf(name, tp)


@_functools.cache
def entity_strategy(cls: type[_Any]) -> _Any:
    """Instances of a kio request (or nested) dataclass with bounded lists and telling values."""
    hints = _typing.get_type_hints(cls)
    return _st.builds(
        cls, **{field.name: _field_strategy(field.name, hints[field.name]) for field in _dataclasses.fields(cls)}
    )


def request_strategy(api_key: int, api_version: int) -> _Any:
    return entity_strategy(_load_request_schema(api_key, api_version))


any_supported_request = _st.sampled_from(SUPPORTED_REQUESTS).flatmap(lambda kv: request_strategy(*kv))
"""A well-formed request of any supported API at any supported version."""


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie, reaped or not, is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def gone_within(pid: int, timeout_s: float, exists: Callable[[int], bool] = process_alive) -> bool:
    """Whether ``pid`` is gone (by ``exists``) within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not exists(pid):
            return True
        time.sleep(0.02)
    return False


def pid_exists(pid: int) -> bool:
    """Whether ``pid`` is still taken (``kill(pid, 0)`` finds it): unlike :func:`process_alive`, a
    zombie not yet reaped still counts, so False means the process is gone and reaped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
