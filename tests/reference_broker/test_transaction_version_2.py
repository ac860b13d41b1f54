"""Transaction protocol version 2 on the wire (KIP-890 part 2, KIP-1022), in the broker core.

What ApiVersions offers by ``kconform.transaction.version``, and the implicit adds: a Produce
v12 or a TxnOffsetCommit v5 puts its partition into the producer's transaction without an
AddPartitionsToTxn or AddOffsetsToTxn (a single node: its own coordinator answers at once),
where the versions before only verify (KIP-890 part 1) and refuse a partition never added.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from reference_broker.broker import Broker
from reference_broker.config import load_broker_config
from reference_broker.drivers.txn_sender import _verify_body
from reference_broker.groups import OFFSETS_TOPIC, partition_for
from reference_broker.handlers import HANDLERS
from reference_broker.handlers.context import Deferred, RequestContext
from reference_broker.handlers.txn_markers import write_markers
from reference_broker.protocol.api_keys import ApiKey
from reference_broker.protocol.api_versions import API_VERSIONS, offered_versions
from reference_broker.protocol.codec import build, build_response, request_class
from reference_broker.protocol.features import features_body
from reference_broker.records import TRANSACTIONAL_ATTRIBUTE, Record, build_batch
from reference_broker.testing import create_topic
from reference_broker.transactions.verification import Verification

NOW = 1_700_000_000_000
TXN = "tx"
GROUP, OFFSETS_PARTITIONS = "g", 3
TV2_VERSIONS = {ApiKey.PRODUCE: 12, ApiKey.ADD_PARTITIONS_TO_TXN: 5, ApiKey.END_TXN: 5,
                ApiKey.TXN_OFFSET_COMMIT: 5}


def test_the_versions_of_transaction_version_2_are_offered_only_at_level_2() -> None:
    assert offered_versions(2) == API_VERSIONS
    for key, high in TV2_VERSIONS.items():
        assert API_VERSIONS[key][1] == high
        for level in (0, 1):
            assert offered_versions(level)[key] == (API_VERSIONS[key][0], high - 1)
    untouched = {key: value for key, value in API_VERSIONS.items() if key not in TV2_VERSIONS}
    assert {key: offered_versions(1)[key] for key in untouched} == untouched


def test_the_features_name_the_configured_transaction_version() -> None:
    """KIP-584 tagged fields from v3; KIP-1022: a range starting at 0 only from v4; level 0 is
    not finalized; the epoch is never the 'unknown' -1 a client would ignore."""
    assert features_body(2, 2, 5) == {}
    assert features_body(3, 2, 5) == {
        "supported_features": [], "finalized_features_epoch": 5,
        "finalized_features": [{"name": "transaction.version", "min_version_level": 2, "max_version_level": 2}]}
    v4 = features_body(4, 1, -1)
    assert v4["supported_features"] == [{"name": "transaction.version", "min_version": 0, "max_version": 2}]
    assert v4["finalized_features"] == [{"name": "transaction.version", "min_version_level": 1,
                                         "max_version_level": 1}]
    assert v4["finalized_features_epoch"] == 0
    assert features_body(4, 0, 7)["finalized_features"] == []


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "data"


def open_broker(directory: Path, transaction_version: int = 2) -> Broker:
    settings = {"log.dirs": str(directory), "transaction.state.log.num.partitions": "1",
                "offsets.topic.num.partitions": str(OFFSETS_PARTITIONS),
                "kconform.transaction.version": str(transaction_version)}
    broker = Broker(load_broker_config(overrides=settings.items()), NOW)
    create_topic(broker, "t", 2, 1, {}, NOW)
    return broker


def handle(broker: Broker, api_key: int, version: int, body: dict[str, Any]) -> Any:
    """One request through the handler table; a single node answers at once."""
    response = HANDLERS[api_key](broker, RequestContext(api_key, version, 1, "test", "PLAINTEXT", "127.0.0.1:1"),
                                 build(request_class(api_key, version), body), NOW)
    assert not isinstance(response, Deferred)
    build_response(api_key, version, response)  # encodable in that version
    return response


@pytest.mark.parametrize("level", [0, 1, 2])
def test_api_versions_answers_the_configured_level(data_dir: Path, level: int) -> None:
    broker = open_broker(data_dir, level)
    body = handle(broker, ApiKey.API_VERSIONS, 4, {"client_software_name": "t", "client_software_version": "1"})
    ranges = {entry["api_key"]: (entry["min_version"], entry["max_version"]) for entry in body["api_keys"]}
    assert ranges == offered_versions(level)
    assert [f["max_version_level"] for f in body["finalized_features"]] == ([level] if level else [])
    assert body["finalized_features_epoch"] >= 0
    broker.close()


def init(broker: Broker) -> tuple[int, int]:
    """FindCoordinator (which creates ``__transaction_state``), then InitProducerId."""
    handle(broker, ApiKey.FIND_COORDINATOR, 4, {"key_type": 1, "coordinator_keys": [TXN]})
    body = handle(broker, ApiKey.INIT_PRODUCER_ID, 5, {"transactional_id": TXN, "transaction_timeout": 60_000,
                                                        "producer_id": -1, "producer_epoch": -1})
    assert body["error_code"] is ErrorCode.none
    return body["producer_id"], body["producer_epoch"]


def produce(broker: Broker, version: int, producer: tuple[int, int], partition: int, sequence: int) -> ErrorCode:
    batch = build_batch([Record(0, NOW, None, b"v")], base_offset=0, attributes=TRANSACTIONAL_ATTRIBUTE,
                        producer_id=producer[0], producer_epoch=producer[1], base_sequence=sequence)
    body = handle(broker, ApiKey.PRODUCE, version, {
        "transactional_id": TXN, "acks": -1, "timeout": 30_000,
        "topic_data": [{"name": "t", "partition_data": [{"index": partition, "records": batch}]}]})
    error: ErrorCode = body["responses"][0]["partition_responses"][0]["error_code"]
    return error


def in_transaction(broker: Broker) -> tuple[str, int, dict[str, tuple[int, ...]]]:
    found = broker.transactions.describe(TXN)
    return found.state, found.producer_epoch, {topic: tuple(sorted(p)) for topic, p in found.topics.items()}


def end_txn(broker: Broker, version: int, producer: tuple[int, int], commit: bool) -> Any:
    """EndTxn, then the markers written (what the driver's sender does for a single node)."""
    body = handle(broker, ApiKey.END_TXN, version, {"transactional_id": TXN, "producer_id": producer[0],
                                                    "producer_epoch": producer[1], "committed": commit})
    for request in broker.marker_requests(NOW):
        write_markers(broker, request.entries, NOW,
                      lambda errors, request=request: broker.txn_markers.answered(request, errors, NOW))
    return body


def test_produce_v12_adds_its_partition_where_v11_is_refused(data_dir: Path) -> None:
    """KIP-890 part 1 refuses a v11 batch for a partition not in the transaction (a hanging
    transaction in the making); part 2's v12 adds it. EndTxn v5 then bumps the epoch, and the
    next transaction's v12 batch adds its partition at the new epoch."""
    broker = open_broker(data_dir)
    producer = init(broker)
    assert produce(broker, 11, producer, 0, 0) is ErrorCode.transaction_abortable
    assert in_transaction(broker) == ("Empty", producer[1], {})
    assert produce(broker, 12, producer, 0, 0) is ErrorCode.none
    assert produce(broker, 12, producer, 1, 0) is ErrorCode.none
    assert in_transaction(broker) == ("Ongoing", producer[1], {"t": (0, 1)})
    ended = end_txn(broker, 5, producer, commit=True)
    assert (ended["error_code"], ended["producer_epoch"]) == (ErrorCode.none, producer[1] + 1)
    assert in_transaction(broker) == ("CompleteCommit", producer[1] + 1, {})
    assert produce(broker, 12, producer, 0, 1) is ErrorCode.invalid_producer_epoch  # the old epoch
    bumped = (producer[0], producer[1] + 1)
    assert produce(broker, 12, bumped, 0, 0) is ErrorCode.none
    assert in_transaction(broker) == ("Ongoing", bumped[1], {"t": (0,)})
    broker.close()


def txn_offset_commit(broker: Broker, version: int, producer: tuple[int, int]) -> ErrorCode:
    body = handle(broker, ApiKey.TXN_OFFSET_COMMIT, version, {
        "transactional_id": TXN, "group_id": GROUP, "producer_id": producer[0], "producer_epoch": producer[1],
        "generation_id": -1, "member_id": "", "group_instance_id": None,
        "topics": [{"name": "t", "partitions": [{"partition_index": 0, "committed_offset": 7,
                                                  "committed_leader_epoch": -1, "committed_metadata": ""}]}]})
    error: ErrorCode = body["topics"][0]["partitions"][0]["error_code"]
    return error


def test_txn_offset_commit_v5_adds_the_groups_offsets_partition(data_dir: Path) -> None:
    """No AddOffsetsToTxn: the group coordinator adds the group's ``__consumer_offsets``
    partition to the transaction before writing; a fenced epoch is refused and adds nothing."""
    broker = open_broker(data_dir)
    assert broker.groups.ensure_storage(NOW) is None
    producer = init(broker)
    assert txn_offset_commit(broker, 5, (producer[0], producer[1] + 1)) is ErrorCode.invalid_producer_epoch
    assert in_transaction(broker) == ("Empty", producer[1], {})
    assert txn_offset_commit(broker, 5, producer) is ErrorCode.none
    assert in_transaction(broker) == ("Ongoing", producer[1], {OFFSETS_TOPIC: (partition_for(GROUP, OFFSETS_PARTITIONS),)})
    broker.close()


@pytest.mark.parametrize("add", [False, True])
def test_a_leader_asks_another_broker_with_v4_to_verify_and_v5_to_add(add: bool) -> None:
    verification = Verification(1, TXN, 5, 2, (("t", 0), ("t", 1)), add, lambda answers: None)
    request = _verify_body(verification)
    assert request.__version__ == (5 if add else 4)  # type: ignore[attr-defined]
    (txn,) = request.transactions  # type: ignore[attr-defined]
    assert (txn.verify_only, txn.producer_epoch, [(t.name, t.partitions) for t in txn.topics]) == (
        not add, 2, [("t", (0, 1))])
