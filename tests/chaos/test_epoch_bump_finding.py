"""librdkafka #4953 on the reference cluster: a finding pinned on the client, not a flake.

The named campaign ``epoch-bump-duplicates`` expires one partition's sends (librdkafka then
bumps its producer epoch) while another partition's appended batches wait past the request
timeout (retried as "possibly persisted"): librdkafka resends them under the new epoch with new
sequence numbers and the broker, rightly, appends them again. The expected outcome is "found,
attributed to librdkafka" or "not provoked" — never a broker violation. The Java client, which
never renumbers a batch that may have been written, writes no duplicate under the same faults.
The same campaigns on Apache Kafka are in test_kafka_verdicts.py; docs/findings.md has the
figures.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from chaos.campaign import CampaignResult, CampaignSettings, run_campaign, summary_text
from chaos.schedule import CAMPAIGN_WORKLOADS
from chaos.workload import WorkloadSettings
from harness.clients import describe_client
from tests.chaos.conftest import require_java_client, require_toxiproxy

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

CAMPAIGN = "epoch-bump-duplicates"


def campaign_settings(client: str, seed: int, **changes: object) -> CampaignSettings:
    """The named campaign's settings, as `kconform chaos --campaign epoch-bump-duplicates
    --duration 24` gives them, with ``client``."""
    workload = attrs.evolve(WorkloadSettings(client=client), **CAMPAIGN_WORKLOADS[CAMPAIGN])
    return CampaignSettings(campaign=CAMPAIGN, duration=28.0, seed=seed, workload=workload,
                            **changes)  # type: ignore[arg-type]


def assert_found_on_the_client_or_not_provoked(result: CampaignResult) -> None:
    """Every duplicate is librdkafka's epoch-bump resend (known #4953); nothing is the broker's."""
    r = result.results
    assert r.outcome in ("held", "violated-by-client"), (r.outcome, r.violated_by)
    assert all(w.outcome == "ok" for w in r.faults.windows), r.faults.windows
    for witness in r.witnesses.get("duplicate", []):
        a = witness.attribution
        assert a is not None and (a.blame.value, a.cause) == ("client", "epoch-bump-resend"), witness
        assert "librdkafka" in a.detail and "4953" in (a.known or ""), witness


def assert_no_duplicate(result: CampaignResult) -> None:
    r = result.results
    assert "duplicate" not in r.anomalies, r.witnesses.get("duplicate", [])[:3]
    assert r.outcome == "held", (r.outcome, r.violated_by)
    assert all(w.outcome == "ok" for w in r.faults.windows), r.faults.windows


def _run(tmp_path: Path, settings: CampaignSettings) -> CampaignResult:
    require_toxiproxy()
    result = run_campaign(settings, tmp_path / "report")
    print(summary_text(result))  # shown by pytest when the test fails
    return result


def test_librdkafka_duplicates_are_pinned_on_the_client(tmp_path: Path) -> None:
    """confluent-kafka under epoch-bump-duplicates on the reference cluster: duplicates, if
    provoked, are the client's (epoch-bump-resend, librdkafka #4953); the broker keeps every
    promise."""
    result = _run(tmp_path, campaign_settings("confluent-kafka", seed=401))
    assert_found_on_the_client_or_not_provoked(result)
    assert result.results.history_meta["clients"]["p0"] == describe_client("confluent-kafka")


def test_the_java_client_writes_no_duplicate_under_the_same_faults(tmp_path: Path) -> None:
    """The Java client under the same schedule on the reference cluster: no duplicate, every
    claimed guarantee held."""
    require_java_client()
    assert_no_duplicate(_run(tmp_path, campaign_settings("java", seed=401)))
