"""A transactional chaos campaign (``kconform chaos --transactions``) on a real reference cluster
of three brokers and a controller, every link through a real Toxiproxy server, real
confluent-kafka transactional producers and read_committed consumers: every transactional
guarantee the configuration claims holds, and the history holds what the checkers need."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chaos.campaign import CampaignSettings, run_campaign, summary_text
from chaos.workload import WorkloadSettings
from harness.checkers.judgement import HELD
from tests.chaos.conftest import require_toxiproxy

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

TRANSACTIONAL_CLAIMS = ("aborted-read", "torn-transaction", "hanging-transaction", "lso-above-hw",
                        "lso-past-open-transaction", "exactly-once-processing")


def _applied_faults(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The nemesis's fault starts that took effect (completed ok), in order."""
    applied = {e["invoke"] for e in raw if e["f"] == "fault" and e["type"] == "ok"}
    return [e for e in raw if e["f"] == "fault" and e["type"] == "invoke" and e["value"]["action"] == "start"
            and e["index"] in applied]


def test_transactions_keep_their_promises_under_kills_pauses_and_partitions(tmp_path: Path) -> None:
    require_toxiproxy()
    workload = WorkloadSettings(transactions=True, txn_size=4, abort_ratio=0.3)
    result = run_campaign(CampaignSettings(duration=15.0, seed=203, workload=workload,
                                           faults=("kill", "pause", "isolate-leader", "split")),
                          tmp_path / "report")
    print(summary_text(result))  # shown by pytest when the test fails
    r = result.results
    assert r.outcome == HELD, (r.violations, r.witnesses)
    assert set(TRANSACTIONAL_CLAIMS) <= set(r.claims.claimed)
    txns = [e for e in result.history.raw if e["f"] == "txn" and e["type"] == "ok"]
    outcomes = {e["value"]["outcome"] for e in txns}
    assert outcomes == {"commit", "abort"}, outcomes  # both kinds were exercised
    reads = [e for e in result.history.raw if e["f"] == "poll" and e["type"] == "invoke"
             and e["process"].startswith("c")]
    assert reads and all(e["value"].get("isolation_level") == "read_committed" for e in reads)
    assert result.history.meta["transactions"] is True


def test_the_transaction_coordinator_is_killed_paused_and_isolated_and_transactions_hold(tmp_path: Path) -> None:
    """The txn-coordinator-failures campaign: each fault hits the broker that coordinates
    producer p0's transactional id at that moment (the history names it), and every claimed
    transactional guarantee holds through the coordinator's fail-overs and its late markers."""
    require_toxiproxy()
    result = run_campaign(CampaignSettings(duration=22.0, seed=204, campaign="txn-coordinator-failures",
                                           workload=WorkloadSettings(transactions=True)), tmp_path / "report")
    print(summary_text(result))  # shown by pytest when the test fails
    r = result.results
    assert r.outcome == HELD, (r.violations, r.witnesses)
    applied = _applied_faults(result.history.raw)  # each resolved to the coordinator of the moment
    assert [e["value"]["fault"] for e in applied] == ["kill", "pause", "isolate-node", "latency"], applied
    assert applied[-1]["value"]["params"]["paths"] == "peers"
    assert any(e["value"]["outcome"] == "commit" for e in result.history.raw
               if e["f"] == "txn" and e["type"] == "ok")


def test_zombie_producers_are_fenced_and_nothing_they_wrote_is_read(tmp_path: Path) -> None:
    """The zombie-producers campaign: each producer in turn freezes in the middle of a
    transaction while a new instance with its transactional id starts; woken, the zombie sends
    the rest and commits. KIP-98 fencing: no zombie transaction commits, its replacement goes on
    committing, and every claimed transactional guarantee holds."""
    require_toxiproxy()
    result = run_campaign(CampaignSettings(duration=14.0, seed=205, campaign="zombie-producers",
                                           workload=WorkloadSettings(transactions=True)), tmp_path / "report")
    print(summary_text(result))  # shown by pytest when the test fails
    r = result.results
    assert r.outcome == HELD, (r.violations, r.witnesses)
    raw = result.history.raw
    zombies = [e["value"]["targets"][0] for e in _applied_faults(raw) if e["value"]["fault"] == "zombie-producer"]
    assert len(zombies) >= 2, zombies
    invoked = {e["index"]: e["process"] for e in raw if e["f"] == "txn" and e["type"] == "invoke"}
    ends = {invoked[e["invoke"]]: e for e in raw if e["f"] == "txn" and e["type"] != "invoke"}
    for zombie in zombies:
        last = ends[zombie]  # the zombie's last transaction is the one it was frozen in
        assert not (last["type"] == "ok" and last["value"]["outcome"] == "commit"), last
        base, _, n = zombie.partition(".")
        successor = f"{base}.{int(n or 1) + 1}"
        assert successor in invoked.values(), successor  # the replacement went on with transactions
