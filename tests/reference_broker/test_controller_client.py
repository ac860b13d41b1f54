"""The typed controller client sends every request at the version the controller speaks, and its
requests survive the wire: each one encodes and decodes to itself."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from reference_broker.controller_channel import ControllerRequest, MetadataSink, ResponseCallback
from reference_broker.controller_client import ControllerClient, config_change, new_partitions, new_topic
from reference_broker.drivers.wire_client import encode_request
from reference_broker.protocol.api_keys import ApiKey
from reference_broker.protocol.api_versions import CONTROLLER_API_VERSIONS
from reference_broker.protocol.codec import decode_request


class _Recording:
    """A channel that keeps what it is asked to send."""

    def __init__(self) -> None:
        self.sent: list[ControllerRequest] = []

    @property
    def local(self) -> bool:
        return False

    def attach(self, sink: MetadataSink, now_ms: int) -> None:
        return None

    def send(self, request: ControllerRequest, callback: ResponseCallback, now_ms: int) -> None:
        self.sent.append(request)

    def tick(self, now_ms: int) -> None:
        return None


def _every_request() -> list[Any]:
    channel = _Recording()
    client = ControllerClient(channel, node_id=3)
    wait = datetime.timedelta(seconds=5)
    topic_id = uuid.uuid4()
    client.register("cluster", uuid.uuid4(), [("PLAINTEXT", "127.0.0.1", 9092)], print, 0)
    client.heartbeat(7, 41, False, print, 0)
    client.alter_partition(7, topic_id, 0, 2, 5, [3, 1], print, 0)
    client.allocate_producer_ids(7, print, 0)
    client.create_topics([new_topic("t", 2, 3, [(0, [1, 2, 3])], [("cleanup.policy", "compact")])],
                         wait, False, print, 0)
    client.delete_topics([("t", uuid.UUID(int=0)), (None, topic_id)], wait, print, 0)
    client.create_partitions([new_partitions("t", 4, [[1, 2], [2, 3]])], wait, True, print, 0)
    client.incremental_alter_configs([config_change(2, "t", [("retention.ms", 0, "1000")])], False, print, 0)
    return channel.sent


def test_every_request_is_sent_at_the_controllers_version() -> None:
    sent = _every_request()
    keys = {ApiKey(request.__api_key__) for request in sent}
    assert keys == {ApiKey.BROKER_REGISTRATION, ApiKey.BROKER_HEARTBEAT, ApiKey.ALTER_PARTITION,
                    ApiKey.ALLOCATE_PRODUCER_IDS, ApiKey.CREATE_TOPICS, ApiKey.DELETE_TOPICS,
                    ApiKey.CREATE_PARTITIONS, ApiKey.INCREMENTAL_ALTER_CONFIGS}
    for request in sent:
        assert request.__version__ == CONTROLLER_API_VERSIONS[request.__api_key__][1], type(request)


def test_every_request_decodes_at_the_controller_to_itself() -> None:
    for request in _every_request():
        frame = encode_request(request, correlation_id=1)[4:]  # without the size prefix
        assert decode_request(frame, CONTROLLER_API_VERSIONS).body == request
