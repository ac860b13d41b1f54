"""results.json and the typed campaign results (chaos/results.py): the file reads back into the
same values and is written again to the same text; an older report without the later figures
still loads; a file of the wrong shape is refused with the file and the field named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from chaos.cli import main
from chaos.report_diff import compare
from chaos.results import ReportError, load_results, results_json
from harness.checkers.attribution import Blame
from tests.chaos.test_report import _write


def test_results_json_reads_back_into_the_results_and_writes_the_same_text(tmp_path: Path) -> None:
    results, _lost = _write(tmp_path)
    text = (tmp_path / "results.json").read_text()
    loaded = load_results(tmp_path)
    assert results_json(loaded) == text
    assert loaded.violated_by == {"lost-write": Blame.BROKER, "poll-skip": Blame.UNATTRIBUTED} == results.violated_by
    assert loaded.claims == results.claims and loaded.settings == results.settings
    assert loaded.witnesses == results.witnesses and loaded.faults == results.faults


def test_a_report_from_before_latency_and_partitions_still_loads_and_compares(tmp_path: Path) -> None:
    _write(tmp_path)
    raw = json.loads((tmp_path / "results.json").read_text())
    for key in ("latency", "unavailability", "partitions"):
        del raw[key]
    old = tmp_path / "old"
    old.mkdir()
    (old / "results.json").write_text(json.dumps(raw))
    loaded = load_results(old)
    assert loaded.latency is None and loaded.unavailability is None and loaded.partitions == {}
    rows = {(r.section, r.name): r for r in compare(tmp_path, old).rows}
    assert rows[("send latency", "p50 (ms)")].a == 10.0 and rows[("send latency", "p50 (ms)")].b is None
    assert rows[("availability", "unavailable (s)")].b is None


def test_a_results_json_of_the_wrong_shape_names_the_file_and_the_field(tmp_path: Path) -> None:
    _write(tmp_path)
    raw = json.loads((tmp_path / "results.json").read_text())
    raw["faults"]["injected"] = "one"
    (tmp_path / "results.json").write_text(json.dumps(raw))
    with pytest.raises(ReportError, match=r"results\.json: not a kconform campaign's results\.json .*faults\.injected"):
        load_results(tmp_path)
    refused = CliRunner().invoke(main, ["report", "diff", str(tmp_path), str(tmp_path)])
    assert refused.exit_code == 2 and "$.faults.injected" in refused.output, refused.output
