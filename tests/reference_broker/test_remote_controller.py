"""The broker's channel to a remote controller: a request whose connection a fault broke is
sent again on a new connection within its timeout (as Kafka's broker-to-controller channel
does), heartbeats are not, and a controller that stays away gets the answer None."""

from __future__ import annotations

import asyncio
from typing import Any

from reference_broker.config import load_broker_config
from reference_broker.controller_channel import controller_request
from reference_broker.drivers.remote_controller import (
    LIFECYCLE_APIS,
    ControllerConnection,
    ControllerUnreachable,
    RemoteControllerChannel,
)


class _Flaky(ControllerConnection):
    """A connection (stand-in for the wire) that fails its first ``failures`` requests at once."""

    def __init__(self, failures: int, timeout_s: float) -> None:
        super().__init__("127.0.0.1", 1, timeout_s)
        self.failures = failures
        self.sent = 0

    async def request(self, body: Any) -> Any:
        self.sent += 1
        if self.sent <= self.failures:
            raise ControllerUnreachable("ConnectionResetError: the black hole swallowed the last request")
        return f"answer to {type(body).__name__}"


def _answers(api_key: int, fields: dict[str, Any], failures: int, timeout_s: float = 5.0) -> tuple[list[Any], int]:
    request = controller_request(api_key, fields)
    config = load_broker_config({"process.roles": "broker", "node.id": "1",
                                 "controller.quorum.voters": "0@127.0.0.1:1"})
    channel = RemoteControllerChannel(config, clock=lambda: 0)
    flaky = _Flaky(failures, timeout_s)
    if api_key in LIFECYCLE_APIS:
        channel._lifecycle = flaky
    else:
        channel._requests = flaky
    got: list[Any] = []

    async def run() -> None:
        channel.send(request, got.append, 0)
        while not got:
            await asyncio.sleep(0.01)

    asyncio.run(asyncio.wait_for(run(), 30))
    return got, flaky.sent


def test_a_forwarded_request_is_sent_again_after_its_connection_broke() -> None:
    got, sent = _answers(19, {"topics": [], "timeout": 1000, "validate_only": False}, failures=2)
    assert got == ["answer to CreateTopicsRequest"] and sent == 3


def test_a_heartbeat_is_not_retried_and_a_controller_that_stays_away_answers_none() -> None:
    got, sent = _answers(63, {"broker_id": 1, "broker_epoch": 1, "current_metadata_offset": 0,
                              "want_fence": False, "want_shut_down": False}, failures=1)
    assert got == [None] and sent == 1
    got, sent = _answers(19, {"topics": [], "timeout": 1000, "validate_only": False}, failures=1000,
                         timeout_s=1.0)
    assert got == [None] and 2 <= sent <= 6
