"""What a configuration promises (specs/claims.py): each rule, with the reason it gives."""

from __future__ import annotations

import attrs
import pytest

from specs.claims import (
    DURABILITY,
    STREAMS,
    TRANSACTIONAL,
    TRANSACTIONAL_DURABILITY,
    Configuration,
    claims_for,
    why_not_durable,
)
from specs.delivery import CommitPoint
from specs.produce import Acks, DurabilityConfig, ProducerConfig

SAFE = Configuration(ProducerConfig(), DurabilityConfig(min_insync_replicas=2),
                     groups={"after": CommitPoint.AFTER_PROCESSING, "before": CommitPoint.BEFORE_PROCESSING})


def test_the_safe_configuration_claims_every_property_but_the_other_side_of_each_commit_point() -> None:
    claims = claims_for(SAFE)
    for name in (*DURABILITY, "duplicate", "nonmonotonic-send", "committed-offset-regression", "aborted-read",
                 "at-least-once[after]", "at-most-once[before]"):
        assert name in claims.claimed, name
    assert set(claims.not_claimed) == {"at-most-once[after]", "at-least-once[before]"}
    assert "crash before the commit redelivers" in claims.not_claimed["at-most-once[after]"]


@pytest.mark.parametrize(("config", "reason"), [
    (Configuration(ProducerConfig(acks=Acks.LEADER, enable_idempotence=False),
                   DurabilityConfig(acks=Acks.LEADER, min_insync_replicas=2)), "acks=1: the leader acknowledges"),
    (Configuration(durability=DurabilityConfig(min_insync_replicas=1)), "min.insync.replicas=1 with replication factor 3"),
    (Configuration(durability=DurabilityConfig(min_insync_replicas=2, unclean_leader_election_enable=True)),
     "unclean.leader.election.enable=true"),
    (Configuration(durability=DurabilityConfig(min_insync_replicas=2), wipes_data=True), "wipes a broker's data"),
    (Configuration(durability=DurabilityConfig(min_insync_replicas=2), volatile_restarts=True), "in memory"),
])
def test_each_lossy_setting_withdraws_durability_with_its_reason(config: Configuration, reason: str) -> None:
    claims = claims_for(config)
    assert why_not_durable(config) and reason in why_not_durable(config)[0]
    for name in (*DURABILITY, "committed-offset-regression"):
        assert name not in claims.claimed and reason in claims.not_claimed[name], name
    assert "duplicate" in claims.not_claimed  # idempotence is lost with the records, or was off
    assert "aborted-read" in claims.claimed  # promised under every configuration


def test_a_single_replica_needs_no_second_in_sync_replica() -> None:
    """min.insync.replicas=1 with replication factor 1 is as durable as one replica can be."""
    config = Configuration(durability=DurabilityConfig(replication_factor=1, min_insync_replicas=1))
    assert why_not_durable(config) == [] and "lost-write" in claims_for(config).claimed


def test_without_idempotence_duplicates_and_reordering_are_hazards_and_at_most_once_is_not_claimed() -> None:
    config = Configuration(ProducerConfig(enable_idempotence=False), DurabilityConfig(min_insync_replicas=2),
                           groups={"before": CommitPoint.BEFORE_PROCESSING})
    claims = claims_for(config)
    assert "lost-write" in claims.claimed
    assert "enable.idempotence=false" in claims.not_claimed["duplicate"]
    assert "nonmonotonic-send" in claims.not_claimed
    assert claims.not_claimed["at-most-once[before]"] == claims.not_claimed["duplicate"]


def test_describe_names_the_settings_as_kafka_does() -> None:
    assert SAFE.describe() == ("acks=all, enable.idempotence=true, replication.factor=3, min.insync.replicas=2, "
                               "unclean.leader.election.enable=false")


def test_transactional_properties_are_judged_only_for_runs_with_transactions() -> None:
    """Without transactions none is listed; with them the safe configuration claims all but the
    cycles Kafka allows, and a lossy one withdraws the durable ones with its reason."""
    assert not {"G1b", "torn-transaction", "G0"} & {*claims_for(SAFE).claimed, *claims_for(SAFE).not_claimed}
    claims = claims_for(attrs.evolve(SAFE, transactions=True))
    for name in (*TRANSACTIONAL, *TRANSACTIONAL_DURABILITY):
        assert name in claims.claimed, name
    assert {"G0", "G1c", "G-single"} <= set(claims.not_claimed)
    lossy = claims_for(Configuration(durability=DurabilityConfig(min_insync_replicas=1), transactions=True))
    for name in TRANSACTIONAL_DURABILITY:
        assert "min.insync.replicas=1" in lossy.not_claimed[name], name
    assert "G1b" in lossy.claimed and "lso-above-hw" in lossy.claimed


def test_streams_exactly_once_is_claimed_with_exactly_once_v2_over_durable_writes() -> None:
    assert STREAMS not in {**claims_for(SAFE).claimed, **claims_for(SAFE).not_claimed}
    streams = attrs.evolve(SAFE, streams="exactly_once_v2")
    assert "exactly_once_v2" in claims_for(streams).claimed[STREAMS]
    control = claims_for(attrs.evolve(SAFE, streams="at_least_once")).not_claimed[STREAMS]
    assert control.startswith("processing.guarantee=at_least_once: a crash after the output is written")
    lossy = attrs.evolve(streams, producer=ProducerConfig(acks=Acks.LEADER, enable_idempotence=False),
                         durability=DurabilityConfig(acks=Acks.LEADER, min_insync_replicas=2))
    assert claims_for(lossy).not_claimed[STREAMS].startswith("acks=1")
