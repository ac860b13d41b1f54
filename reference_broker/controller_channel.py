"""How a broker reaches its controller: one interface, two implementations.

A broker sends the controller KRaft's broker-to-controller requests (BrokerRegistration,
BrokerHeartbeat, AlterPartition, AllocateProducerIds) and forwards admin requests to it
(CreateTopics, DeleteTopics, CreatePartitions, IncrementalAlterConfigs, as Kafka brokers do,
KIP-590); the controller's metadata log flows back and the broker applies it
(:meth:`MetadataSink.apply_metadata`).

* :class:`LocalControllerChannel` — combined mode (``process.roles=broker,controller``): the
  controller lives in the same process, requests are answered synchronously, and the records
  they appended are applied to the broker before the answer is given, so a single node behaves
  exactly as it did before clusters existed (a created topic is there when CreateTopics returns).
* :class:`~reference_broker.drivers.remote_controller.RemoteControllerChannel` — ``process.roles=broker``:
  requests go over the wire to ``controller.quorum.voters`` and are answered later; the metadata
  log is long-polled with Fetch.

Either way the broker core sees the same call, ``send(request, callback, now_ms)``: ``request``
is a kio request of the version in
:data:`~reference_broker.protocol.api_versions.CONTROLLER_API_VERSIONS` (built by
:class:`~reference_broker.controller_client.ControllerClient`), and ``callback`` gets the
controller's kio response of that version, or ``None`` when the controller could not be reached.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Protocol

from kio.static.primitive import i16

from reference_broker.controller.node import ControllerNode
from reference_broker.metadata.records import MetadataRecord
from reference_broker.protocol.api_keys import ApiKey
from reference_broker.protocol.api_versions import CONTROLLER_API_VERSIONS
from reference_broker.protocol.codec import build, build_response, request_class

ResponseCallback = Callable[[Any], None]
OffsetRecords = Sequence[tuple[int, MetadataRecord]]


class ControllerRequest(Protocol):
    """A kio request a broker sends its controller (what every kio request class is)."""

    __api_key__: ClassVar[i16]
    __version__: ClassVar[i16]


def controller_version(api_key: int) -> int:
    """The version a broker sends ``api_key`` at (the controller's highest)."""
    return CONTROLLER_API_VERSIONS[api_key][1]


def controller_request(api_key: int, fields: Mapping[str, Any]) -> Any:
    """A request of ``api_key`` at the controller's version from plain fields (the metadata
    Fetch, and tests that play a controller's peer)."""
    return build(request_class(api_key, controller_version(api_key)), fields)


class MetadataSink(Protocol):
    def apply_metadata(self, records: OffsetRecords, high_watermark: int, now_ms: int) -> None:
        """Apply metadata records (in log order); ``high_watermark`` is the controller's log end
        offset as of these records (the broker has caught up when it has applied up to it)."""


class ControllerChannel(Protocol):
    @property
    def local(self) -> bool:
        """True when requests are answered synchronously (combined mode)."""

    def attach(self, sink: MetadataSink, now_ms: int) -> None:
        """Start delivering the metadata log to ``sink``."""

    def send(self, request: ControllerRequest, callback: ResponseCallback, now_ms: int) -> None:
        """Send one controller request; ``callback`` gets the response or None (unreachable)."""

    def tick(self, now_ms: int) -> None:
        """Advance the controller's timers, if it lives here."""


class LocalControllerChannel:
    """The controller in this process (combined mode); see the module docstring."""

    def __init__(self, node: ControllerNode) -> None:
        self.node = node
        self._sink: MetadataSink | None = None
        self._pending: list[tuple[int, MetadataRecord]] = []
        self._delivering = False
        node.on_append.append(self._queue)

    @property
    def local(self) -> bool:
        return True

    def _queue(self, first_offset: int, records: Sequence[MetadataRecord]) -> None:
        self._pending.extend(enumerate(records, start=first_offset))

    def attach(self, sink: MetadataSink, now_ms: int) -> None:
        self._sink = sink
        self._pending.clear()
        sink.apply_metadata(list(self.node.log.replay()), self.node.log.end_offset, now_ms)

    def send(self, request: ControllerRequest, callback: ResponseCallback, now_ms: int) -> None:
        api_key = ApiKey(request.__api_key__)
        response = self.node.handle(api_key, request, now_ms)
        self._deliver(now_ms)
        callback(build_response(api_key, request.__version__, response))

    def tick(self, now_ms: int) -> None:
        self.node.tick(now_ms)
        self._deliver(now_ms)

    def _deliver(self, now_ms: int) -> None:
        # Never re-entered: a request sent while the broker applies records (none does today)
        # has its records delivered by the outer loop, after the broker finished applying.
        if self._delivering or self._sink is None:
            return
        self._delivering = True
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                self._sink.apply_metadata(batch, self.node.log.end_offset, now_ms)
        finally:
            self._delivering = False

    def close(self) -> None:
        self.node.close()
