"""Transactional offset commits at the wire level against a broker process (KIP-98, KIP-447):
TxnOffsetCommit, then the WriteTxnMarkers a transaction coordinator sends to the group's
``__consumer_offsets`` partition, with restarts in between.

The first test plays the transaction coordinator: the producer id comes from InitProducerId
without a transactional id, and the test writes the markers. The second uses the broker's own
coordinator, with transaction version 2's TxnOffsetCommit v5 (KIP-890 part 2).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from kio.schema.errors import ErrorCode

from launch.broker_process import BrokerProcess
from reference_broker.groups import OFFSETS_TOPIC, partition_for
from tests.kafka_helpers import create_topic, wire
from tests.reference_broker.test_idempotent_producer import new_producer

OFFSET_FETCH, FIND_COORDINATOR, WRITE_TXN_MARKERS, TXN_OFFSET_COMMIT, API_VERSIONS = 9, 10, 27, 28, 18
INIT_PRODUCER_ID, END_TXN, DESCRIBE_TRANSACTIONS = 22, 26, 65
GROUP, TOPIC = "txn-group", "txn-t"
OFFSETS_PARTITIONS = 5
SETTINGS = {"offsets.topic.num.partitions": str(OFFSETS_PARTITIONS)}


def coordinator_ready(bootstrap: str) -> None:
    """FindCoordinator until the group has one (the first creates __consumer_offsets)."""
    deadline = time.monotonic() + 30
    while True:
        response = wire(bootstrap, FIND_COORDINATOR, 3, {"key": GROUP, "key_type": 0})
        if ErrorCode(response.error_code) is ErrorCode.none:
            return
        assert time.monotonic() < deadline, response
        time.sleep(0.1)


def txn_offset_commit(bootstrap: str, producer_id: int, offset: int, version: int = 3,
                      **member: Any) -> ErrorCode:
    fields: dict[str, Any] = {
        "transactional_id": "tx", "group_id": GROUP, "producer_id": producer_id,
        "producer_epoch": 0,
        "topics": [{"name": TOPIC, "partitions": [{
            "partition_index": 0, "committed_offset": offset, "committed_leader_epoch": -1,
            "committed_metadata": f"m{offset}"}]}],
    }
    if version >= 3:
        fields |= {"generation_id": -1, "member_id": "", "group_instance_id": None, **member}
    response = wire(bootstrap, TXN_OFFSET_COMMIT, version, fields)
    (topic,) = response.topics
    assert topic.name == TOPIC
    return ErrorCode(topic.partitions[0].error_code)


def write_marker(bootstrap: str, producer_id: int, commit: bool) -> ErrorCode:
    response = wire(bootstrap, WRITE_TXN_MARKERS, 1, {"markers": [{
        "producer_id": producer_id, "producer_epoch": 0, "transaction_result": commit,
        "coordinator_epoch": 0,
        "topics": [{"name": OFFSETS_TOPIC,
                    "partition_indexes": [partition_for(GROUP, OFFSETS_PARTITIONS)]}],
    }]})
    return ErrorCode(response.markers[0].topics[0].partitions[0].error_code)


def committed(bootstrap: str, require_stable: bool = False) -> tuple[int, ErrorCode]:
    """OffsetFetch v7 of (TOPIC, 0): the committed offset and the partition's error."""
    response = wire(bootstrap, OFFSET_FETCH, 7, {
        "group_id": GROUP, "require_stable": require_stable,
        "topics": [{"name": TOPIC, "partition_indexes": [0]}]})
    assert ErrorCode(response.error_code) is ErrorCode.none
    partition = response.topics[0].partitions[0]
    return partition.committed_offset, ErrorCode(partition.error_code)


def test_txn_offsets_show_only_after_the_commit_marker_across_restarts(tmp_path: Path) -> None:
    """A TxnOffsetCommit is answered at once but its offset stays invisible (OffsetFetch: the
    previous one; require_stable: UNSTABLE_OFFSET_COMMIT) through a clean restart and a
    SIGKILL, until WriteTxnMarkers writes the COMMIT to the group's offsets partition; an
    ABORT's offset never shows, not even after a restart."""
    with BrokerProcess(overrides=SETTINGS, data_dir=tmp_path / "broker") as broker:
        bootstrap = broker.bootstrap
        versions = {k.api_key: (k.min_version, k.max_version)
                    for k in wire(bootstrap, API_VERSIONS, 3, {"client_software_name": "t",
                                                                "client_software_version": "1"}).api_keys}
        assert versions[TXN_OFFSET_COMMIT] == (0, 5)
        create_topic(bootstrap, TOPIC)
        coordinator_ready(bootstrap)
        producer_id = new_producer(bootstrap)

        assert txn_offset_commit(bootstrap, producer_id, 42) is ErrorCode.none
        assert committed(bootstrap) == (-1, ErrorCode.none)
        assert committed(bootstrap, require_stable=True) == (-1, ErrorCode.unstable_offset_commit)
        broker.restart()
        assert committed(bootstrap) == (-1, ErrorCode.none)
        broker.kill()
        broker.start()
        assert committed(bootstrap, require_stable=True) == (-1, ErrorCode.unstable_offset_commit)
        assert write_marker(bootstrap, producer_id, commit=True) is ErrorCode.none
        assert committed(bootstrap, require_stable=True) == (42, ErrorCode.none)

        # The next transaction of the producer (v0: no member fields) is aborted.
        assert txn_offset_commit(bootstrap, producer_id, 50, version=0) is ErrorCode.none
        assert committed(bootstrap) == (42, ErrorCode.none)
        broker.kill()
        broker.start()
        assert committed(bootstrap) == (42, ErrorCode.none)
        assert committed(bootstrap, require_stable=True) == (-1, ErrorCode.unstable_offset_commit)
        assert write_marker(bootstrap, producer_id, commit=False) is ErrorCode.none
        assert committed(bootstrap, require_stable=True) == (42, ErrorCode.none)
        broker.restart()
        assert committed(bootstrap) == (42, ErrorCode.none)

        # KIP-447: v3 naming a member the group does not have is fenced, and changes nothing.
        assert txn_offset_commit(bootstrap, producer_id, 60, generation_id=3, member_id="m") is (
            ErrorCode.unknown_member_id)
        assert committed(bootstrap, require_stable=True) == (42, ErrorCode.none)


def test_txn_offset_commit_v5_adds_the_offsets_partition_to_the_transaction(tmp_path: Path) -> None:
    """Transaction version 2 (KIP-890 part 2): a client sends no AddOffsetsToTxn; TxnOffsetCommit
    v5 has the transaction coordinator add the group's offsets partition, so the offsets commit
    with the transaction: EndTxn v5 (which bumps the epoch) makes them visible."""
    with BrokerProcess(overrides=SETTINGS, data_dir=tmp_path / "broker") as broker:
        bootstrap = broker.bootstrap
        create_topic(bootstrap, TOPIC)
        coordinator_ready(bootstrap)
        deadline = time.monotonic() + 30
        # FindCoordinator of the transactional id creates __transaction_state; then InitProducerId.
        while wire(bootstrap, FIND_COORDINATOR, 3, {"key": "tx", "key_type": 1}).error_code != ErrorCode.none or (
                init := wire(bootstrap, INIT_PRODUCER_ID, 5, {
                "transactional_id": "tx", "transaction_timeout": 60_000, "producer_id": -1,
                "producer_epoch": -1})).error_code != ErrorCode.none:
            assert time.monotonic() < deadline, "no transaction coordinator"
            time.sleep(0.1)
        producer_id = int(init.producer_id)
        assert int(init.producer_epoch) == 0

        assert txn_offset_commit(bootstrap, producer_id, 42, version=5) is ErrorCode.none
        (state,) = wire(bootstrap, DESCRIBE_TRANSACTIONS, 0, {"transactional_ids": ["tx"]}).transaction_states
        assert state.transaction_state == "Ongoing"
        assert [(t.topic, list(t.partitions)) for t in state.topics] == [
            (OFFSETS_TOPIC, [partition_for(GROUP, OFFSETS_PARTITIONS)])]
        assert committed(bootstrap, require_stable=True) == (-1, ErrorCode.unstable_offset_commit)

        ended = wire(bootstrap, END_TXN, 5, {"transactional_id": "tx", "producer_id": producer_id,
                                             "producer_epoch": 0, "committed": True})
        assert (ErrorCode(ended.error_code), int(ended.producer_epoch)) == (ErrorCode.none, 1)
        while committed(bootstrap, require_stable=True) != (42, ErrorCode.none):
            assert time.monotonic() < deadline, "the COMMIT marker never reached the offsets partition"
            time.sleep(0.1)
