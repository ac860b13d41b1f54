"""The client x broker matrix: its broker names, its chaos cells run for real, and the page."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from chaos.cli import main
from chaos.matrix import CellResult, TargetSpec, parse_targets, render_chaos_section, run_chaos_cells
from tests.chaos.conftest import require_java_client, require_toxiproxy


def test_targets_name_kafka_releases_and_refuse_what_cannot_launch() -> None:
    specs = parse_targets("reference, kafka,kafka:3.9.2,tansu")
    assert [s.label for s in specs] == ["reference", "kafka 4.4.0", "kafka 3.9.2", "tansu"]
    assert [s.key for s in specs] == ["reference", "kafka", "kafka:3.9.2", "tansu"]
    assert TargetSpec("faulty-drop").chaos is False and specs[0].chaos
    for bad, said in (("external", "unlaunchable"), ("tansu:1.0", "only kafka"), ("kafka:4.4.0,kafka", "twice"),
                      ("kafka:nope", "nope"), ("", "no target")):
        with pytest.raises(ValueError, match=said):
            parse_targets(bad)
    result = CliRunner().invoke(main, ["matrix", "--targets", "external"])
    assert result.exit_code == 2 and "unlaunchable" in result.output
    result = CliRunner().invoke(main, ["matrix", "--clients", "librdkafka"])
    assert result.exit_code == 2 and "unknown client(s) librdkafka" in result.output


def test_the_chaos_section_shows_whose_fault_each_cell_is() -> None:
    cells = [CellResult("confluent-kafka", "kafka 4.4.0", "violated-by-client", {"duplicate": 2},
                        {"duplicate": "client"}, {"at-most-once[g]": 5}, 900, 3, 20.0),
             CellResult("java", "kafka 4.4.0", "held", sends_ok=800, faults=3),
             CellResult("aiokafka", "kafka 4.4.0", "not-exercised", note="sends: info 2000", faults=3),
             CellResult("java", "tansu", "error", error="Tansu is not installed")]
    page = "\n".join(render_chaos_section(cells, ["kafka 4.4.0", "tansu"], ["confluent-kafka", "java", "aiokafka"],
                                          seed=4, duration=20))
    assert "| `confluent-kafka` | **client fault**; violated: duplicate 2 (client); not claimed, found: " \
           "at-most-once[g] 5; 900 acked, 3 fault(s) | - |" in page
    assert "| `java` | held; 800 acked, 3 fault(s) | could not run: Tansu is not installed |" in page
    assert "| `aiokafka` | **not exercised** (no write acknowledged); sends: info 2000; 0 acked, 3 fault(s) | - |" in page
    assert "--duration 20 --seed 4" in page


@pytest.mark.chaos
@pytest.mark.clients
def test_a_cell_is_a_real_campaign_per_client(tmp_path: Path) -> None:
    """Against the reference cluster, a short campaign per client holds, with faults injected and
    writes acknowledged, and leaves its report folder."""
    require_toxiproxy()
    require_java_client()
    cells = run_chaos_cells([TargetSpec("reference")], ["kafka-python", "java"], seed=7, duration=8,
                            report_dir=tmp_path)
    assert [(c.client, c.target) for c in cells] == [("kafka-python", "reference"), ("java", "reference")]
    for cell in cells:
        assert cell.outcome == "held", cell
        assert cell.sends_ok > 100 and cell.faults >= 1 and cell.replay, cell
        assert (tmp_path / f"reference-{cell.client}" / "results.json").exists()
