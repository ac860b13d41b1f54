"""Topic administration through confluent-kafka's AdminClient: CreateTopics, DeleteTopics,
CreatePartitions, DescribeConfigs, IncrementalAlterConfigs and DeleteRecords."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
)
from kio.schema.errors import ErrorCode

from launch.broker_process import BrokerProcess
from tests.kafka_helpers import TIMEOUT_S, admin, consume_all, create_topic, produce, wire


def error_name(future: Any) -> str:
    with pytest.raises(KafkaException) as info:
        future.result(TIMEOUT_S)
    return str(info.value.args[0].name())


def describe_topic(client: AdminClient, topic: str) -> dict[str, ConfigEntry]:
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    return dict(client.describe_configs([resource])[resource].result(TIMEOUT_S))


@pytest.fixture
def client(broker: BrokerProcess) -> AdminClient:
    return admin(broker.bootstrap)


def test_create_topic_with_configs_and_describe_them(client: AdminClient) -> None:
    """A topic created with overrides reports them as TOPIC_CONFIG and the rest as defaults."""
    futures = client.create_topics([NewTopic("configured", 3, 1, config={
        "cleanup.policy": "compact", "retention.ms": "1234"})])
    futures["configured"].result(TIMEOUT_S)
    assert len(client.list_topics(timeout=TIMEOUT_S).topics["configured"].partitions) == 3
    configs = describe_topic(client, "configured")
    assert configs["cleanup.policy"].value == "compact"
    assert configs["cleanup.policy"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert configs["retention.ms"].value == "1234"
    assert configs["segment.bytes"].value == str(1024**3)
    assert configs["segment.bytes"].source == ConfigSource.DEFAULT_CONFIG.value


def test_create_topic_errors(client: AdminClient) -> None:
    """Duplicates, bad configs, bad names and impossible replication factors are refused
    with Kafka's error codes."""
    client.create_topics([NewTopic("exists", 1, 1)])["exists"].result(TIMEOUT_S)
    assert error_name(client.create_topics([NewTopic("exists", 1, 1)])["exists"]) == (
        "TOPIC_ALREADY_EXISTS"
    )
    bad_config = client.create_topics([NewTopic("badcfg", 1, 1, config={"retention.mss": "1"})])
    assert error_name(bad_config["badcfg"]) == "INVALID_CONFIG"
    bad_value = client.create_topics([NewTopic("badval", 1, 1, config={"segment.bytes": "x"})])
    assert error_name(bad_value["badval"]) == "INVALID_CONFIG"
    bad_name = client.create_topics([NewTopic("bad/name", 1, 1)])
    assert error_name(bad_name["bad/name"]) == "TOPIC_EXCEPTION"
    too_many = client.create_topics([NewTopic("rf3", 1, 3)])
    assert error_name(too_many["rf3"]) == "INVALID_REPLICATION_FACTOR"


def test_validate_only_creates_nothing(client: AdminClient) -> None:
    """CreateTopics with validate_only checks the request but creates no topic."""
    client.create_topics([NewTopic("dry-run", 2, 1)], validate_only=True)["dry-run"].result(TIMEOUT_S)
    assert "dry-run" not in client.list_topics(timeout=TIMEOUT_S).topics


def test_delete_topic(client: AdminClient, broker: BrokerProcess) -> None:
    """A deleted topic disappears with its data; deleting it again is UNKNOWN_TOPIC_OR_PARTITION."""
    create_topic(broker.bootstrap, "doomed")
    produce(broker.bootstrap, "doomed", [(None, b"x")])
    client.delete_topics(["doomed"])["doomed"].result(TIMEOUT_S)
    assert "doomed" not in client.list_topics(timeout=TIMEOUT_S).topics
    assert not (broker.data_dir / "data" / "doomed-0").exists()
    assert error_name(client.delete_topics(["doomed"])["doomed"]) == "UNKNOWN_TOPIC_OR_PART"


def test_create_partitions(client: AdminClient, broker: BrokerProcess) -> None:
    """CreatePartitions grows a topic; shrinking it is INVALID_PARTITIONS."""
    create_topic(broker.bootstrap, "growing")
    client.create_partitions([NewPartitions("growing", 4)])["growing"].result(TIMEOUT_S)
    assert len(client.list_topics(timeout=TIMEOUT_S).topics["growing"].partitions) == 4
    assert produce(broker.bootstrap, "growing", [(None, b"p3")], partition=3) == [0]
    shrink = client.create_partitions([NewPartitions("growing", 2)])["growing"]
    assert error_name(shrink) == "INVALID_PARTITIONS"


def test_incremental_alter_configs(client: AdminClient, broker: BrokerProcess) -> None:
    """SET, APPEND and DELETE change a topic's overrides; an invalid value is INVALID_CONFIG and
    changes nothing."""
    create_topic(broker.bootstrap, "altered")

    def alter(*entries: ConfigEntry) -> Any:
        resource = ConfigResource(ConfigResource.Type.TOPIC, "altered",
                                  incremental_configs=list(entries))
        return client.incremental_alter_configs([resource])[resource]

    alter(ConfigEntry("retention.ms", "5000",
                      incremental_operation=AlterConfigOpType.SET)).result(TIMEOUT_S)
    alter(ConfigEntry("cleanup.policy", "compact",
                      incremental_operation=AlterConfigOpType.APPEND)).result(TIMEOUT_S)
    configs = describe_topic(client, "altered")
    assert configs["retention.ms"].value == "5000"
    assert set(configs["cleanup.policy"].value.split(",")) == {"delete", "compact"}
    assert error_name(alter(ConfigEntry("retention.ms", "soon",
                                        incremental_operation=AlterConfigOpType.SET))) == (
        "INVALID_CONFIG"
    )
    alter(ConfigEntry("retention.ms", None,
                      incremental_operation=AlterConfigOpType.DELETE)).result(TIMEOUT_S)
    assert describe_topic(client, "altered")["retention.ms"].value == str(7 * 24 * 3_600_000)


def test_broker_retention_precedence_shows_in_topic_configs(tmp_path: Path) -> None:
    """log.retention.minutes wins over log.retention.hours and shows as the topic's
    retention.ms, sourced from the static broker config."""
    overrides = {"log.retention.hours": "5", "log.retention.minutes": "2"}
    with BrokerProcess(overrides=overrides, data_dir=tmp_path) as broker:
        create_topic(broker.bootstrap, "inherits")
        entry = describe_topic(admin(broker.bootstrap), "inherits")["retention.ms"]
        assert entry.value == "120000"
        assert entry.source == ConfigSource.STATIC_BROKER_CONFIG.value


def test_delete_records_moves_log_start_offset(client: AdminClient, broker: BrokerProcess) -> None:
    """DeleteRecords advances the low watermark; earlier offsets are no longer readable and an
    offset past the high watermark is OFFSET_OUT_OF_RANGE."""
    create_topic(broker.bootstrap, "trimmed")
    produce(broker.bootstrap, "trimmed", [(None, f"v{i}".encode()) for i in range(10)],
            **{"linger.ms": 0, "batch.num.messages": 1})
    result = client.delete_records([TopicPartition("trimmed", 0, 4)])
    assert result[TopicPartition("trimmed", 0, 4)].result(TIMEOUT_S).low_watermark == 4
    consumed = consume_all(broker.bootstrap, "trimmed", start=0)
    assert [m.offset() for m in consumed] == list(range(4, 10))  # reset to the new earliest
    past_end = wire(broker.bootstrap, 21, 2, {"topics": [{"name": "trimmed", "partitions": [
        {"partition_index": 0, "offset": 11}]}], "timeout": 5000})
    assert past_end.topics[0].partitions[0].error_code == ErrorCode.offset_out_of_range


def test_delete_records_refused_on_compact_only_topic(broker: BrokerProcess) -> None:
    """A topic whose cleanup.policy is only compact refuses DeleteRecords (POLICY_VIOLATION)."""
    create_topic(broker.bootstrap, "compact-only", config={"cleanup.policy": "compact"})
    response = wire(broker.bootstrap, 21, 2, {"topics": [{"name": "compact-only", "partitions": [
        {"partition_index": 0, "offset": -1}]}], "timeout": 5000})
    assert response.topics[0].partitions[0].error_code == ErrorCode.policy_violation
