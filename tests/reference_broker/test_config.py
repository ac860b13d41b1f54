"""Broker configuration: Kafka's keys, defaults and precedence, and errors that name the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reference_broker.config import (
    ConfigError,
    load_broker_config,
    log_config_for_topic,
    parse_properties,
)


def test_retention_ms_wins_over_minutes_wins_over_hours() -> None:
    """log.retention.ms beats log.retention.minutes, which beats log.retention.hours."""
    assert load_broker_config({}).log_retention_ms == 168 * 3_600_000
    assert load_broker_config({"log.retention.hours": "2"}).log_retention_ms == 7_200_000
    both = {"log.retention.hours": "2", "log.retention.minutes": "3"}
    assert load_broker_config(both).log_retention_ms == 180_000
    assert load_broker_config({**both, "log.retention.ms": "5"}).log_retention_ms == 5


def test_roll_ms_wins_over_hours() -> None:
    """log.roll.ms beats log.roll.hours, and both reach the topic's segment.ms."""
    broker = load_broker_config({"log.roll.hours": "1"})
    assert log_config_for_topic(broker, {}).segment_ms == 3_600_000
    broker = load_broker_config({"log.roll.hours": "1", "log.roll.ms": "99"})
    assert log_config_for_topic(broker, {}).segment_ms == 99


def test_topic_override_wins_over_broker_key() -> None:
    """A topic's retention.ms override beats the broker's log.retention.* keys."""
    broker = load_broker_config({"log.retention.minutes": "1", "log.cleanup.policy": "compact"})
    log = log_config_for_topic(broker, {"retention.ms": "42"})
    assert (log.retention_ms, log.cleanup_policy) == (42, frozenset({"compact"}))


def test_overrides_win_over_the_file() -> None:
    """--override values replace the same keys from the properties file."""
    broker = load_broker_config({"num.partitions": "3"}, [("num.partitions", "5")])
    assert broker.get("num.partitions") == 5


def test_log_dirs_wins_over_log_dir_and_node_id_defaults_to_zero() -> None:
    """log.dirs beats log.dir; node.id defaults to 0 and broker.id is its synonym."""
    assert load_broker_config({"log.dir": "/a", "log.dirs": "/b,/c"}).log_dir == "/b"
    assert load_broker_config({}).node_id == 0
    assert load_broker_config({"broker.id": "4"}).node_id == 4


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"log.retention.mss": "1"}, "log.retention.mss"),
        ({"num.partitions": "many"}, "num.partitions"),
        ({"num.partitions": "0"}, "num.partitions"),
        ({"auto.create.topics.enable": "yes"}, "auto.create.topics.enable"),
        ({"log.cleanup.policy": "delete,shred"}, "log.cleanup.policy"),
        ({"log.segment.bytes": "10"}, "log.segment.bytes"),
        ({"listeners": "PLAINTEXT:/127.0.0.1:9"}, "listeners"),
        ({"listeners": "PLAINTEXT://0.0.0.0:9092"}, "advertised.listeners"),
        ({"advertised.listeners": "OTHER://h:1"}, "advertised.listeners"),
        ({"node.id": "1", "broker.id": "2"}, "broker.id"),
        ({"retention.ms": "1"}, "retention.ms"),
        # Cluster roles without what they need, malformed ID@HOST:PORT lists, a heartbeat
        # interval not below the session timeout.
        ({"process.roles": "zookeeper"}, "process.roles"),
        ({"process.roles": "broker"}, "controller.quorum.voters"),
        ({"controller.quorum.voters": "0@h"}, "controller.quorum.voters"),
        ({"controller.quorum.voters": "0@h:1,1@h:2"}, "controller.quorum.voters"),
        ({"controller.quorum.voters": "5@h:1"}, "controller.quorum.voters"),  # combined: not us
        ({"process.roles": "controller"}, "controller.listener.names"),
        ({"process.roles": "broker", "controller.quorum.voters": "0@h:1",
          "inter.broker.listener.name": "INTERNAL"}, "inter.broker.listener.name"),
        ({"kconform.replica.peer.addresses": "2@h"}, "kconform.replica.peer.addresses"),
        ({"broker.heartbeat.interval.ms": "9000"}, "broker.heartbeat.interval.ms"),
    ],
)
def test_invalid_configuration_names_the_key(values: dict[str, str], named: str) -> None:
    """An unknown key or an invalid value fails with a message naming the key."""
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_broker_config(values)


def test_properties_file_syntax() -> None:
    """Comments, '=' ':' and space separators, continuations and escapes parse as Java does."""
    text = "# comment\n! also\nnum.partitions = 3\nlog.dir:/tmp/x\nlisteners PLAINTEXT://a:1,\\\n  PLAINTEXT2://b:2\nkey=tab\\tand\\u0041\n"
    assert parse_properties(text) == {
        "num.partitions": "3",
        "log.dir": "/tmp/x",
        "listeners": "PLAINTEXT://a:1,PLAINTEXT2://b:2",
        "key": "tab\tandA",
    }


def test_cli_refuses_an_unknown_key_with_exit_code_2(tmp_path: Path) -> None:
    """`python -m reference_broker` with an unknown key exits 2 and names the key on stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "reference_broker", "--override", "log.dirs=" + str(tmp_path),
         "--override", "log.retension.ms=5"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "unknown configuration log.retension.ms" in result.stderr


def test_cli_reads_a_config_file_and_reports_a_missing_one(tmp_path: Path) -> None:
    """--config with a missing file exits 2 with the path in the message."""
    missing = tmp_path / "nope.properties"
    result = subprocess.run(
        [sys.executable, "-m", "reference_broker", "--config", str(missing)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert str(missing) in result.stderr


def test_cluster_roles_and_addresses_parse() -> None:
    """process.roles, controller.quorum.voters and kconform.replica.peer.addresses parse into
    roles and addresses; a controller listener needs no protocol map entry."""
    broker = load_broker_config({"process.roles": "broker", "node.id": "2",
                                 "controller.quorum.voters": "0@ctl:9093",
                                 "kconform.replica.peer.addresses": "1@p1:7001,3@[::1]:7003"})
    assert broker.is_broker_only and not broker.is_combined
    voter = broker.controller_voter
    assert voter is not None and (voter.node_id, voter.host, voter.port) == (0, "ctl", 9093)
    assert broker.replica_peer_addresses == {1: ("p1", 7001), 3: ("::1", 7003)}
    controller = load_broker_config({"process.roles": "controller",
                                     "listeners": "CONTROLLER://127.0.0.1:9093"})
    assert controller.is_controller_only
    assert load_broker_config({}).is_combined
