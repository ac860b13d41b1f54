"""Verdicts that the chaos campaigns on the reference broker (test_verdicts.py) and on Apache Kafka
(test_kafka_verdicts.py) both assert: the same campaign must be judged the same way on either."""

from __future__ import annotations

from chaos.campaign import CampaignResult
from chaos.results import CampaignResults
from tests.chaos.conftest import not_the_clients

LOG_ANOMALIES = ("lost-write", "duplicate", "inconsistent-offsets")
"""What the log shows (the checkers this harness claims for a safe configuration)."""


def assert_safe_configuration_held(result: CampaignResult) -> None:
    """A safe configuration (acks=all, idempotence, clean elections) under faults: some were
    injected, the workload ran, and none of the log's anomalies is the broker's (the client may
    duplicate by its own bug, librdkafka #4953, which the log pins on it)."""
    r = result.results
    assert r.faults.injected >= 2, r.faults
    assert r.operations.by_operation["send"]["ok"] > 1000
    assert not set(LOG_ANOMALIES) & set(not_the_clients(result)), not_the_clients(result)
    for name in LOG_ANOMALIES:
        assert name in r.claims.claimed
    assert result.broker_valid and r.outcome in ("held", "violated-by-client"), r.outcome


def assert_acks_1_loss_is_a_hazard(results: CampaignResults) -> None:
    """Campaign acks1-loss lost acknowledged writes, and the report calls that a hazard of
    acks=1 (not a broker bug), with the time from the first fault to the first loss."""
    assert results.anomalies.get("lost-write", 0) > 0, results.anomalies
    assert results.hazards["lost-write"] > 0
    assert "lost-write" not in results.claims.claimed
    assert "acks=1" in results.claims.not_claimed["lost-write"]
    assert results.figures.first_fault_to_first_anomaly_s is not None


def assert_unclean_election_lost_acks_all_writes(results: CampaignResults) -> None:
    """An unclean-election campaign lost acks=all writes, the report blames the topic's
    unclean.leader.election.enable=true for it, and the faults were a node cut off, then a kill."""
    assert results.settings.workload.acks == "all"
    assert results.history_meta["topic_configs"]["unclean.leader.election.enable"] == "true"
    assert results.anomalies.get("lost-write", 0) > 0, results.anomalies
    assert "unclean.leader.election.enable=true" in results.claims.not_claimed["lost-write"]
    windows = results.faults.windows
    assert [w.fault for w in windows if w.outcome == "ok"] == ["isolate-node", "kill"]
