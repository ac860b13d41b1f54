"""What a handler knows about the request besides its body, and how it answers later."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import attrs


@attrs.frozen(slots=True)
class RequestContext:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    listener: str  # the listener name the request arrived on, for advertised addresses
    peer: str  # "host:port" of the client, for logs


def milliseconds(value: datetime.timedelta) -> int:
    """A request's duration field (kio gives timedeltas) in whole milliseconds."""
    return value // datetime.timedelta(milliseconds=1)


class CloseConnection(Exception):
    """Raised by a handler when Kafka would close the connection instead of answering
    (for instance a failed acks=0 produce, so the producer notices and refreshes metadata)."""


class Deferred:
    """A response the broker core gives later, such as a JoinGroup held until the rebalance
    completes. The core calls :meth:`resolve` once; the driver sends whatever it resolves to
    (a response dict, or None for no response). Resolving after the client has gone is harmless.
    """

    __slots__ = ("_callbacks", "_resolved", "_response")

    def __init__(self) -> None:
        self._callbacks: list[Callable[[Any], None]] = []
        self._resolved = False
        self._response: Any = None

    @property
    def resolved(self) -> bool:
        return self._resolved

    def resolve(self, response: Any) -> None:
        if self._resolved:
            return
        self._resolved = True
        self._response = response
        for callback in self._callbacks:
            callback(response)
        self._callbacks.clear()

    def on_resolved(self, callback: Callable[[Any], None]) -> None:
        if self._resolved:
            callback(self._response)
        else:
            self._callbacks.append(callback)


class Later:
    """Run a core call that answers through a callback: :meth:`response` returns the answer at
    once if the callback came synchronously, else a Deferred resolved when it comes."""

    def __init__(self, render: Callable[[Any], Any]) -> None:
        self._render = render
        self._deferred = Deferred()
        self._returned = False
        self._now: list[Any] = []

    def callback(self, result: Any) -> None:
        response = None if result is None else self._render(result)
        if self._returned:
            self._deferred.resolve(response)
        else:
            self._now.append(response)

    def resolve(self, response: Any) -> None:
        """Answer with ``response`` as it is (no rendering); a Deferred answers once it is
        resolved."""
        if not self._returned:
            self._now.append(response)
        elif isinstance(response, Deferred):
            response.on_resolved(self._deferred.resolve)
        else:
            self._deferred.resolve(response)

    def response(self) -> Any:
        self._returned = True
        return self._now[0] if self._now else self._deferred
