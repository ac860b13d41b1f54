"""The processor-crashes campaign (``kconform chaos --campaign processor-crashes``) on a real
reference cluster of three brokers and a controller behind a real Toxiproxy server: real
consume-transform-produce processors (KIP-447) crash in the middle of their transactions and are
replaced under the same transactional id, and exactly-once-processing holds over the inputs they
processed; a processor that skips the input of its aborted transactions is caught by it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chaos.campaign import CampaignResult, CampaignSettings, run_campaign, summary_text
from chaos.workload import WorkloadSettings
from harness.checkers.judgement import HELD
from tests.chaos.conftest import require_toxiproxy

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


def _campaign(tmp_path: Path, seed: int, duration: float, **workload: Any) -> CampaignResult:
    require_toxiproxy()
    settings = WorkloadSettings(**{"processors": 3, "consumers": ("assigned",), **workload})
    result = run_campaign(CampaignSettings(duration=duration, seed=seed, campaign="processor-crashes",
                                           workload=settings), tmp_path / "report")
    print(summary_text(result))  # shown by pytest when the test fails
    return result


def _processed(result: CampaignResult) -> int:
    """Input records processed by committed consume-transform-produce transactions."""
    return sum(len(op[1]) for e in result.history.raw if e["f"] == "txn" and e["type"] == "ok"
               and e["value"]["outcome"] == "commit" for op in e["value"]["ops"] if op[0] == "poll")


def _crashed_in_transaction(result: CampaignResult) -> list[str]:
    """The processes whose consume-transform-produce transaction never ended (they crashed in it)."""
    raw = result.history.raw
    ended = {e["invoke"] for e in raw if e["f"] == "txn" and e["type"] != "invoke"}
    return [e["process"] for e in raw if e["f"] == "txn" and e["type"] == "invoke"
            and e["value"]["ops"][0] == ["poll"] and e["index"] not in ended]


# The Java client's processors are JVMs, SIGKILLed when they crash, and the group waits for a
# killed member's session to time out: fewer clients, and time for two crashes and processing.
CLIENT_RUNS = {"confluent-kafka": (16.0, {}), "java": (20.0, {"processors": 2, "producers": 1})}


@pytest.mark.parametrize("client", list(CLIENT_RUNS))
def test_processors_crash_in_their_transactions_and_every_input_is_processed_exactly_once(
        tmp_path: Path, client: str) -> None:
    duration, workload = CLIENT_RUNS[client]
    result = _campaign(tmp_path, 301, duration, client=client, **workload)
    r = result.results
    assert r.outcome == HELD, (r.violations, r.witnesses)
    assert "exactly-once-processing" in r.claims.claimed
    assert "exactly-once-processing" not in result.report.skipped
    assert _processed(result) > 100
    assert _crashed_in_transaction(result), "no processor crashed in the middle of a transaction"
    crashed = [e for e in result.history.raw if e["f"] == "fault" and e["type"] == "ok"
               and e["invoke"] in {s["index"] for s in result.history.raw if s["f"] == "fault"
                                   and s["value"].get("action") == "start"}]
    assert len(crashed) >= 2
    outputs = [e for e in result.history.raw if e["f"] == "poll" and e["type"] == "ok" and e["process"] == "c0"
               and any(rec[0].endswith("-out") for rec in e["value"]["records"])]
    assert outputs, "the assigned reader read no output"


def test_a_processor_that_does_not_rewind_after_an_abort_loses_input(tmp_path: Path) -> None:
    """Processors that go on from where their aborted transaction stopped, instead of seeking
    back to the committed positions: their next commit passes input no committed transaction
    processed, and exactly-once-processing says so (a claimed guarantee violated)."""
    result = _campaign(tmp_path, 302, 10.0, rewind_after_abort=False, abort_ratio=0.5)
    r = result.results
    assert r.violations.get("exactly-once-processing", 0) > 0, (r.anomalies, r.violations)
    lost = result.report.result("exactly-once-processing").anomalies
    assert any("no committed transaction processed it" in a.explanation for a in lost), lost[:3]
