"""`kconform roundtrip`, the current main job, against a launched and an external broker."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from harness.cli import main
from launch.broker_process import BrokerProcess
from tests.kafka_helpers import produce


def test_roundtrip_launches_a_broker_and_writes_a_passing_report(tmp_path: Path) -> None:
    """Without --bootstrap it launches a reference broker, verifies the messages and reports."""
    result = CliRunner().invoke(main, ["roundtrip", "--messages", "500", "--report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "results.json").read_text())
    assert report["valid"] is True and report["consumed"] == 500 and report["first_offset"] == 0
    assert (tmp_path / "summary.txt").read_text().startswith("VALID: ")


def test_roundtrip_against_an_existing_topic_starts_at_its_end(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    """With --bootstrap it uses the given broker and checks only what it produced itself."""
    produce(broker.bootstrap, "busy", [(None, b"older")] * 5)
    result = CliRunner().invoke(main, ["roundtrip", "--messages", "100", "--topic", "busy",
                                       "--bootstrap", broker.bootstrap, "--report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "results.json").read_text())
    assert (report["first_offset"], report["consumed"]) == (5, 100)
