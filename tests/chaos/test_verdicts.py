"""The five expected verdicts of chaos campaigns, each on a real reference cluster of three
brokers and a controller, every link through a real Toxiproxy server, real confluent-kafka
producers and consumers.

Each campaign runs a short CI profile (about 13-15 s of workload). Hazard campaigns use a named
schedule designed to provoke their hazard every time (followers frozen before the leader dies,
a replica cut off before the others die), so the tests do not depend on luck.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from chaos.campaign import CampaignResult, CampaignSettings, run_campaign, summary_text
from chaos.workload import WorkloadSettings
from harness.cli import main
from tests.chaos import verdicts
from tests.chaos.conftest import require_toxiproxy

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


def _run(tmp_path: Path, **settings: object) -> CampaignResult:
    require_toxiproxy()
    result = run_campaign(CampaignSettings(**settings), tmp_path / "report")  # type: ignore[arg-type]
    print(summary_text(result))  # shown by pytest when the test fails
    return result


def _group(result: CampaignResult, mode: str) -> str:
    groups = [g for g in result.results.history_meta["groups"] if g.endswith(mode)]
    assert len(groups) == 1, result.results.history_meta
    return str(groups[0])


def test_safe_configuration_survives_kills_pauses_and_partitions(tmp_path: Path) -> None:
    """RF=3, min.insync.replicas=2, acks=all, idempotence, clean elections: the reference
    cluster loses, duplicates and renumbers nothing under kills, pauses and partitions. The
    workload's client is confluent-kafka, whose own bug (librdkafka #4953) may duplicate records;
    the log pins those on the client, so the test asserts what the broker promises."""
    result = _run(tmp_path, duration=15.0, seed=101,
                  faults=("kill", "pause", "isolate-leader", "isolate-node", "split"))
    r = result.results
    verdicts.assert_safe_configuration_held(result)
    on_disk = json.loads((result.report_dir / "results.json").read_text())
    assert on_disk["outcome"] == r.outcome and on_disk["anomalies"] == r.anomalies
    # The observer saw every partition through to the end: its last high watermark is the end
    # of the log the final drain read.
    drained: dict[str, int] = {}
    for e in result.history.raw:
        if e["process"] == "drain" and e["f"] == "poll" and e["type"] == "ok":
            for topic, partition, offset, *_ in e["value"]["records"]:
                drained[f"{topic}-{partition}"] = max(drained.get(f"{topic}-{partition}", 0), offset + 1)
    assert set(r.partitions) == set(drained)
    for name, timeline in r.partitions.items():
        last = timeline.states[-1]
        assert last.leader is not None and last.high_watermark == drained[name], (name, last)


def test_acks_1_loses_writes_when_the_leader_dies_before_its_followers_fetch(tmp_path: Path) -> None:
    """acks=1, followers frozen, leader killed (campaign acks1-loss): lost-write is found, and
    reported as a hazard of acks=1, not as a broker bug."""
    result = _run(tmp_path, duration=13.0, seed=102, campaign="acks1-loss",
                  workload=WorkloadSettings(acks="1", idempotence=False))
    r = result.results
    verdicts.assert_acks_1_loss_is_a_hazard(r)
    # `kconform check` on the campaign's history judges it the same way, from the settings the
    # history's header records: hazards, not failures.
    checked = CliRunner().invoke(main, ["check", str(result.report_dir / "history.jsonl"), "--json"])
    judged = json.loads(checked.output)["judged"]
    assert checked.exit_code == 0 and judged["outcome"] == r.outcome == "held", checked.output
    assert judged["hazards"]["lost-write"] == r.hazards["lost-write"]


def test_unclean_election_of_a_lagging_replica_loses_committed_writes(tmp_path: Path) -> None:
    """unclean.leader.election.enable=true, a replica cut off until it lags, the others killed
    (campaign unclean-loss): records acknowledged with acks=all are lost."""
    result = _run(tmp_path, duration=13.0, seed=103, campaign="unclean-loss",
                  overrides={"unclean.leader.election.enable": "true"})
    r = result.results
    verdicts.assert_unclean_election_lost_acks_all_writes(r)
    # The timeline shows how: leadership moved, the ISR shrank, and the high watermark went back
    # when the lagging replica was elected.
    timelines = r.partitions.values()
    assert any(t.leader_changes for t in timelines) and any(t.isr_shrinks for t in timelines)
    assert any(t.high_watermark_regressions for t in timelines), r.partitions


def test_non_idempotent_retries_across_leader_changes_duplicate_or_say_not_provoked(tmp_path: Path) -> None:
    """Idempotence off, answers delayed past the request timeout, leaders killed (campaign
    duplicates): duplicates are found, or the report says the hazard was not provoked; the
    run never claims the producer is free of duplicates."""
    result = _run(tmp_path, duration=14.0, seed=104, campaign="duplicates",
                  workload=WorkloadSettings(idempotence=False))
    r = result.results
    assert "duplicate" not in r.claims.claimed
    assert "enable.idempotence=false" in r.claims.not_claimed["duplicate"]
    summary = summary_text(result)
    html = (result.report_dir / "report.html").read_text()
    if r.hazards["duplicate"]:
        assert r.anomalies["duplicate"] == r.hazards["duplicate"]
        assert "hazard found" in html and "duplicate" in summary
    else:
        assert "duplicate" in r.not_provoked
        assert "not provoked (not shown safe)" in html
        assert "not provoked in this run (NOT shown safe)" in summary


def test_commit_before_processing_loses_records_and_commit_after_duplicates_them(tmp_path: Path) -> None:
    """Consumers crash between commit and processing (campaign consumer-crashes): the group
    that commits first loses records (at-least-once broken: at-most-once), the group that
    processes first is given records twice but loses none (at-least-once)."""
    result = _run(tmp_path, duration=14.0, seed=105, campaign="consumer-crashes",
                  workload=WorkloadSettings(consumers=("assigned", "commit-before", "commit-after")))
    r = result.results
    before, after = _group(result, "commit-before"), _group(result, "commit-after")
    assert r.hazards[f"at-least-once[{before}]"] > 0, r.hazards
    assert f"at-least-once[{after}]" in r.claims.claimed
    assert f"at-least-once[{after}]" not in r.violations
    assert r.hazards[f"at-most-once[{after}]"] > 0, r.hazards
    assert r.faults.injected >= 4
    assert result.broker_valid, r.violated_by
