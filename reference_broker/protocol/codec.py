"""Requests in, responses out, through kio's generated schema classes.

kio has one frozen dataclass per API, version and nested structure. The broker core should not
care which version a client speaks, so responses are described as plain dicts and
:func:`build` turns them into the dataclass of the negotiated version: fields the version lacks
are dropped, fields the core did not mention get their schema default or a zero value. Every
kio lookup is cached (kio's own loaders are not).

Kio gotchas handled here: an unknown tagged field raises ``KeyError``,
truncated input raises assorted exceptions, and nothing is validated until encode time; all of
them become :class:`MalformedRequestError` so the driver can log the peer and carry on.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import io
import struct
import types
import typing
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs
from kio.index import load_request_schema, load_response_schema
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader, entity_writer

from reference_broker.protocol.api_versions import API_VERSIONS
from reference_broker.protocol.framing import Frame
from reference_broker.protocol.prescan import check_array_lengths, without_unknown_tags

_T = TypeVar("_T")
_HEADER_PREFIX = struct.Struct(">hhi")
_SIZE = struct.Struct(">i")
_CORRELATION = struct.Struct(">i")


class ProtocolError(Exception):
    """A request the broker cannot decode; ``correlation_id`` is known when the prefix parsed."""

    def __init__(self, message: str, api_key: int = -1, api_version: int = -1,
                 correlation_id: int | None = None) -> None:
        super().__init__(message)
        self.api_key = api_key
        self.api_version = api_version
        self.correlation_id = correlation_id


class MalformedRequestError(ProtocolError):
    """Bytes that do not decode as the request they claim to be."""


class UnsupportedApiError(ProtocolError):
    """An API key or version this broker does not speak."""


@attrs.frozen(slots=True)
class DecodedRequest:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body: Any
    size: int


@functools.cache
def request_class(api_key: int, api_version: int) -> type[Any]:
    return load_request_schema(api_key, api_version)


@functools.cache
def response_class(api_key: int, api_version: int) -> type[Any]:
    return load_response_schema(api_key, api_version)


def _per_class(fn: Callable[[type[Any]], _T]) -> Callable[[type[Any]], _T]:
    """functools.cache for functions of a kio class (mypy does not see ``type[Any]`` as
    Hashable, so the cache's own signature would reject every call)."""
    return typing.cast(Callable[[type[Any]], _T], functools.cache(fn))


@_per_class
def _reader(cls: type[Any]) -> Callable[[Any, int], tuple[Any, int]]:
    return entity_reader(cls)


@_per_class
def _writer(cls: type[Any]) -> Callable[[io.BytesIO, Any], None]:
    return entity_writer(cls)


def peek_header(frame: Frame) -> tuple[int, int, int]:
    """(api_key, api_version, correlation_id) from the fixed prefix every header version shares."""
    if len(frame) < _HEADER_PREFIX.size:
        raise MalformedRequestError(
            f"request of {len(frame)} bytes is shorter than the 8-byte header prefix"
        )
    api_key, api_version, correlation_id = _HEADER_PREFIX.unpack_from(frame, 0)
    return int(api_key), int(api_version), int(correlation_id)


_UNKNOWN_TAG = "Unknown tagged field"  # how kio's reader refuses a tag its schema lacks


def decode_frame(cls: type[Any], frame: Frame) -> tuple[Any, Any]:
    """(header, body) of a request or response frame (without its size prefix) of kio class
    ``cls``. Tagged fields the schema does not know are skipped, as KIP-482 has a receiver do
    (a newer peer may send them). Raises what kio raises on bytes that do not follow the schema,
    or ArrayTooLongError."""
    try:
        return _decode(cls, frame)
    except KeyError as exc:
        known = without_unknown_tags(cls.__header_schema__, cls, frame) if _UNKNOWN_TAG in str(exc) else None
        if known is None:
            raise
        return _decode(cls, known)


def _decode(cls: type[Any], frame: Frame) -> tuple[Any, Any]:
    header, header_size = _reader(cls.__header_schema__)(frame, 0)
    # Before kio reads the body: its native reader would reserve memory for whatever
    # element count an array declares, and a failed allocation aborts the process.
    check_array_lengths(cls, frame, header_size)
    body, _ = _reader(cls)(frame, header_size)
    return header, body


def decode_request(
    frame: Frame, versions: Mapping[int, tuple[int, int]] = API_VERSIONS
) -> DecodedRequest:
    """Decode one request frame of an API in ``versions`` (a broker's by default; a controller
    passes its own). Raises UnsupportedApiError or MalformedRequestError."""
    api_key, api_version, correlation_id = peek_header(frame)
    supported = versions.get(api_key)
    if supported is None or not supported[0] <= api_version <= supported[1]:
        raise UnsupportedApiError(
            f"API key {api_key} version {api_version} is not supported"
            + (f" (supported: {supported[0]}-{supported[1]})" if supported else ""),
            api_key, api_version, correlation_id,
        )
    cls = request_class(api_key, api_version)
    try:
        header, body = decode_frame(cls, frame)
    except Exception as exc:  # kio raises KeyError, ValueError, IndexError, ... on bad input
        raise MalformedRequestError(
            f"cannot decode API key {api_key} v{api_version}: {type(exc).__name__}: {exc}",
            api_key, api_version, correlation_id,
        ) from exc
    null_field = _unexpected_null(cls, body)
    if null_field is not None:
        raise MalformedRequestError(
            f"API key {api_key} v{api_version}: non-nullable field {null_field} is null",
            api_key, api_version, correlation_id,
        )
    # Trailing bytes are ignored, as Kafka's request parser does: librdkafka 2.x sends
    # Metadata v13 with extra bytes after the body and real brokers accept it.
    return DecodedRequest(
        api_key, api_version, correlation_id, header.client_id, body, len(frame)
    )


@attrs.frozen(slots=True)
class _NullCheck:
    name: str
    nullable: bool
    entity: type[Any] | None  # a nested dataclass (or array element) to check in turn
    array: bool


@_per_class
def _null_checks(cls: type[Any]) -> tuple[_NullCheck, ...]:
    """The fields of ``cls`` that may hold null on the wire: arrays and nested structs."""
    hints = typing.get_type_hints(cls)
    checks = []
    for field in dataclasses.fields(cls):
        tp = hints[field.name]
        args = typing.get_args(tp)
        nullable = typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args
        if nullable:
            (tp,) = [arg for arg in args if arg is not type(None)]
        array = typing.get_origin(tp) is tuple
        item = typing.get_args(tp)[0] if array else tp
        entity = typing.cast(type[Any], item) if dataclasses.is_dataclass(item) else None
        if array or entity is not None:
            checks.append(_NullCheck(field.name, nullable, entity, array))
    return tuple(checks)


def _unexpected_null(cls: type[Any], obj: Any) -> str | None:
    """The path of a null array or struct where the schema allows none, else None.

    kio's reader returns None for an array of length -1 even where the schema makes it
    non-nullable; Kafka's generated readers refuse such a request, and handlers rely on it.
    """
    for check in _null_checks(cls):
        value = getattr(obj, check.name)
        if value is None:
            if not check.nullable:
                return check.name
            continue
        if check.entity is not None:
            for item in value if check.array else (value,):
                inner = _unexpected_null(check.entity, item)
                if inner is not None:
                    return f"{check.name}.{inner}"
    return None


def encode_response(correlation_id: int, response: Any) -> bytes:
    """Serialize a response dataclass with its header and the frame size prefix."""
    out = io.BytesIO()
    out.write(b"\x00\x00\x00\x00")
    header_cls = type(response).__header_schema__
    _writer(header_cls)(out, header_cls(correlation_id=correlation_id))
    _writer(type(response))(out, response)
    data = out.getbuffer()
    _SIZE.pack_into(data, 0, len(data) - 4)
    return bytes(data)


# --- building version-specific dataclasses from dicts ----------------------------------------


def _zero(tp: Any) -> Any:
    """A zero value of a kio field type, for fields the core leaves out."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp):
        return None
    if origin is tuple:
        return ()
    if dataclasses.is_dataclass(tp):
        return build(typing.cast(type[Any], tp), {})
    if isinstance(tp, type):
        if issubclass(tp, ErrorCode):
            return ErrorCode.none
        if issubclass(tp, bool):
            return False
        if issubclass(tp, datetime.timedelta):
            return datetime.timedelta(0)
        if issubclass(tp, datetime.datetime):
            return datetime.datetime.fromtimestamp(0, datetime.UTC)
        if issubclass(tp, uuid.UUID):
            return uuid.UUID(int=0)
        for base, zero in ((bytes, b""), (str, ""), (int, 0), (float, 0.0)):
            if issubclass(tp, base):
                return zero
    raise TypeError(f"no zero value for kio field type {tp!r}")


def _error_code(value: ErrorCode | int) -> ErrorCode:
    """Handlers give errors as ErrorCode members; a plain int is checked against the codes."""
    if isinstance(value, ErrorCode):
        return value
    return ErrorCode(value)


def _converter(tp: Any) -> Callable[[Any], Any] | None:
    """How to turn a plain Python value into what kio's writer wants for this field type."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [arg for arg in args if arg is not type(None)]
        convert = _converter(inner[0]) if len(inner) == 1 else None
        if convert is None:
            return None
        return lambda value: None if value is None else convert(value)
    if origin is tuple:
        item = args[0]
        if dataclasses.is_dataclass(item):
            nested = typing.cast(type[Any], item)
            return lambda values: tuple(
                v if isinstance(v, nested) else build(nested, v) for v in values
            )
        return tuple
    if dataclasses.is_dataclass(tp):
        entity = typing.cast(type[Any], tp)
        return lambda value: value if isinstance(value, entity) else build(entity, value)
    if isinstance(tp, type):
        if issubclass(tp, ErrorCode):
            return _error_code
        if issubclass(tp, datetime.timedelta):
            return lambda value: value if isinstance(value, datetime.timedelta) else (
                datetime.timedelta(milliseconds=value)
            )
        if issubclass(tp, datetime.datetime):
            return lambda value: value if isinstance(value, datetime.datetime) else (
                datetime.datetime.fromtimestamp(value / 1000, datetime.UTC)
            )
    return None


@attrs.frozen(slots=True)
class _FieldPlan:
    name: str
    convert: Callable[[Any], Any] | None
    default: Any  # a value, or a zero-arg factory when has_factory


@_per_class
def _plan(cls: type[Any]) -> tuple[_FieldPlan, ...]:
    hints = typing.get_type_hints(cls)
    plans = []
    for field in dataclasses.fields(cls):
        tp = hints[field.name]
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = _zero(tp)
        plans.append(_FieldPlan(field.name, _converter(tp), default))
    return tuple(plans)


def build(cls: type[Any], data: Mapping[str, Any]) -> Any:
    """Instantiate kio dataclass ``cls`` from ``data``, ignoring keys the version lacks."""
    kwargs = {}
    for plan in _plan(cls):
        if plan.name in data:
            value = data[plan.name]
            kwargs[plan.name] = plan.convert(value) if plan.convert is not None else value
        else:
            kwargs[plan.name] = plan.default
    return cls(**kwargs)


def build_response(api_key: int, api_version: int, data: Mapping[str, Any]) -> Any:
    return build(response_class(api_key, api_version), data)


def error_response(api_key: int, api_version: int, error: ErrorCode) -> Any:
    """A response to any request of this API carrying ``error`` at the top level, where the
    schema has a top-level error code (used for malformed-but-identified requests)."""
    return build_response(api_key, api_version, {"error_code": error})


def has_top_level_error_code(api_key: int, api_version: int) -> bool:
    return any(plan.name == "error_code" for plan in _plan(response_class(api_key, api_version)))


def correlation_of(frame: Frame) -> int | None:
    return _CORRELATION.unpack_from(frame, 4)[0] if len(frame) >= 8 else None
