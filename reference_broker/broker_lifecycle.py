"""One broker incarnation's standing with its controller: registration, heartbeats, fencing and
controlled shutdown (KRaft's broker lifecycle, KIP-631).

A broker registers with a fresh incarnation id each time it starts and gets a broker epoch;
it then heartbeats every ``broker.heartbeat.interval.ms`` with the metadata offset it has
applied, and the controller unfences it once that offset has reached its registration (until
then, and while it wants to shut down, it heartbeats every ``FENCED_HEARTBEAT_MS``). A heartbeat
refused with STALE_BROKER_EPOCH means the controller no longer knows this incarnation by that
epoch: register again. A controlled shutdown heartbeats with ``want_shut_down`` until the
controller has moved every leadership away and answers ``should_shut_down``.

The time is passed in; the broker's driver calls :meth:`BrokerLifecycle.tick`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence

import attrs
from kio.schema.broker_heartbeat.v1.response import BrokerHeartbeatResponse
from kio.schema.broker_registration.v4.response import BrokerRegistrationResponse
from kio.schema.errors import ErrorCode

from reference_broker.controller_client import ControllerClient

log = logging.getLogger(__name__)

REGISTRATION_RETRY_MS = 200
FENCED_HEARTBEAT_MS = 50  # heartbeat often while fenced, so a caught-up broker is unfenced soon


@attrs.define
class BrokerLifecycle:
    """Registration and heartbeats of broker ``client.node_id``; see the module docstring.

    ``listeners`` gives the (name, host, port) of every advertised listener at registration time;
    ``metadata_offset`` the offset of the metadata this broker has applied; ``on_registered`` is
    called with the time once a broker epoch has been granted.
    """

    _client: ControllerClient
    _cluster_id: str
    _heartbeat_interval_ms: int
    _listeners: Callable[[], Sequence[tuple[str, str, int]]]
    _metadata_offset: Callable[[], int]
    _on_registered: Callable[[int], None]
    incarnation_id: uuid.UUID = attrs.field(factory=uuid.uuid4, init=False)
    broker_epoch: int = attrs.field(default=-1, init=False)
    fenced: bool = attrs.field(default=True, init=False)
    started: bool = attrs.field(default=False, init=False)
    want_shut_down: bool = attrs.field(default=False, init=False)
    # The controller said this broker leads nothing any more.
    shutdown_allowed: bool = attrs.field(default=False, init=False)
    _registering: bool = attrs.field(default=False, init=False)
    _next_registration_ms: int = attrs.field(default=0, init=False)  # due at the first tick
    _heartbeat_in_flight: bool = attrs.field(default=False, init=False)
    _next_heartbeat_ms: int = attrs.field(default=0, init=False)

    @property
    def node_id(self) -> int:
        return self._client.node_id

    def start(self, now_ms: int) -> None:
        """Register with the controller (the driver calls this once the listeners are bound)."""
        self.started = True
        self._register(now_ms)

    def heartbeat_soon(self) -> None:
        """Send the next heartbeat at the next tick (the controller should learn news at once)."""
        self._next_heartbeat_ms = 0

    def begin_controlled_shutdown(self, now_ms: int) -> None:
        """Ask the controller to move leadership away (heartbeats with want_shut_down);
        :attr:`shutdown_allowed` turns true when it has."""
        self.want_shut_down = True
        self.heartbeat_soon()
        self.heartbeat(now_ms)

    def tick(self, now_ms: int) -> None:
        if not self.started:
            return
        if self.broker_epoch < 0:
            if not self._registering and now_ms >= self._next_registration_ms:
                self._register(now_ms)
        elif not self._heartbeat_in_flight and now_ms >= self._next_heartbeat_ms:
            self.heartbeat(now_ms)

    def _register(self, now_ms: int) -> None:
        if self._registering:
            return
        self._registering = True

        def registered(response: BrokerRegistrationResponse | None) -> None:
            self._registering = False
            if response is None or response.error_code != ErrorCode.none:
                why = "controller unreachable" if response is None else ErrorCode(response.error_code).name
                log.warning("broker %d: registration failed (%s); retrying", self.node_id, why)
                self._next_registration_ms = now_ms + REGISTRATION_RETRY_MS
                return
            self.broker_epoch = int(response.broker_epoch)
            self._next_heartbeat_ms = 0
            log.info("broker %d registered with broker epoch %d", self.node_id, self.broker_epoch)
            self._on_registered(now_ms)

        self._client.register(self._cluster_id, self.incarnation_id, self._listeners(), registered, now_ms)

    def heartbeat(self, now_ms: int) -> None:
        """Send a heartbeat now, unless one is in flight or this incarnation is not registered."""
        if self._heartbeat_in_flight or self.broker_epoch < 0:
            return
        self._heartbeat_in_flight = True
        epoch = self.broker_epoch

        def answered(response: BrokerHeartbeatResponse | None) -> None:
            self._heartbeat_in_flight = False
            if response is None:
                self._next_heartbeat_ms = now_ms + FENCED_HEARTBEAT_MS * 4
                return
            error = ErrorCode(response.error_code)
            if error is ErrorCode.stale_broker_epoch and self.broker_epoch == epoch:
                log.warning("broker %d: heartbeat refused (stale broker epoch); re-registering",
                            self.node_id)
                self.broker_epoch = -1
                self._next_registration_ms = 0
                return
            if error is not ErrorCode.none:
                log.warning("broker %d: heartbeat failed: %s", self.node_id, error.name)
                self._next_heartbeat_ms = now_ms + self._heartbeat_interval_ms
                return
            was_fenced = self.fenced
            self.fenced = bool(response.is_fenced)
            if was_fenced != self.fenced:
                log.info("broker %d is %s", self.node_id, "fenced" if self.fenced else "unfenced")
            if self.want_shut_down and response.should_shut_down:
                self.shutdown_allowed = True
            quick = self.fenced or self.want_shut_down
            self._next_heartbeat_ms = now_ms + (FENCED_HEARTBEAT_MS if quick else self._heartbeat_interval_ms)

        self._client.heartbeat(epoch, self._metadata_offset(), self.want_shut_down, answered, now_ms)
