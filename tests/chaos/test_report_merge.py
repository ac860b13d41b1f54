"""`kconform report merge`: many campaign folders, one verdict (results.json, junit.xml,
index.html), failing campaigns first with their replay commands; clear errors for bad input."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from click.testing import CliRunner

from chaos.cli import main
from chaos.report_merge import merge
from tests.chaos.test_report import _write


def _campaigns(root: Path) -> None:
    """Three campaign folders in two shards: seed 7 (a broker violation, as _write builds it),
    seeds 8 and 9 rewritten to have held."""
    for shard, seed in (("shard-1", 7), ("shard-1", 8), ("shard-2", 9)):
        folder = root / shard / f"seed-{seed}"
        folder.mkdir(parents=True)
        _write(folder)
        results = json.loads((folder / "results.json").read_text())
        results["seed"] = seed
        if seed != 7:
            results.update(outcome="held", valid=True, violations={}, violated_by={}, anomalies={})
        (folder / "results.json").write_text(json.dumps(results))


def test_merge_totals_every_campaign_and_puts_the_failing_one_first(tmp_path: Path) -> None:
    _campaigns(tmp_path)
    merged = merge([tmp_path / "shard-1", tmp_path / "shard-2"], tmp_path / "out")
    assert merged.outcome == "violated-by-broker" and merged.exit_code == 1 and not merged.valid
    assert [c.seed for c in merged.campaigns] == [7, 8, 9]
    first = merged.campaigns[0]
    assert first.violations == {"lost-write": 1, "poll-skip": 1} and first.replay.startswith("kconform chaos")
    assert first.report == "../shard-1/seed-7"
    on_disk = json.loads((tmp_path / "out" / "results.json").read_text())
    assert list(on_disk) == ["merged", "outcome", "valid", "exit_code", "totals", "campaigns", "merged_at"]
    assert on_disk["merged"] is True and on_disk["campaigns"][0]["report"] == first.report
    totals = merged.totals
    assert totals.campaigns == 3 and totals.by_outcome == {"violated-by-broker": 1, "held": 2}
    assert totals.violations == {"lost-write": 1, "poll-skip": 1}
    assert totals.operations == 3 * first.operations
    suite = ET.parse(tmp_path / "out" / "junit.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "2"  # seed 7's lost-write and poll-skip
    names = {c.get("classname") for c in suite.iter("testcase")}
    assert names == {f"kconform.chaos.reference.seed-{s}" for s in (7, 8, 9)}
    page = (tmp_path / "out" / "index.html").read_text()
    assert "href='../shard-1/seed-7/report.html'" in page and page.index("seed-7") < page.index("seed-8")
    assert "<script" not in page


def test_merging_into_an_input_skips_the_earlier_merge(tmp_path: Path) -> None:
    _campaigns(tmp_path)
    merge([tmp_path], tmp_path)
    again = merge([tmp_path], tmp_path)
    assert again.totals.campaigns == 3 and again.campaigns[0].report == "shard-1/seed-7"


def test_the_command_exits_like_the_worst_campaign_and_refuses_what_is_not_a_report(tmp_path: Path) -> None:
    _campaigns(tmp_path)
    runner = CliRunner()
    failing = runner.invoke(main, ["report", "merge", str(tmp_path), "--out", str(tmp_path / "out")])
    assert failing.exit_code == 1, failing.output
    assert "campaigns: 3 (violated-by-broker 1, held 2)" in failing.output
    assert "seed 7: violated-by-broker lost-write 1, poll-skip 1; replay: kconform chaos" in failing.output
    assert "INVALID: 1 of 3 campaign(s) did not hold" in failing.output
    held = runner.invoke(main, ["report", "merge", str(tmp_path / "shard-2"), "--out", str(tmp_path / "o2"), "--json"])
    assert held.exit_code == 0 and json.loads(held.output)["outcome"] == "held"
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = runner.invoke(main, ["report", "merge", str(empty), "--out", str(tmp_path / "o3")])
    assert nothing.exit_code == 2 and "no campaign results.json under" in nothing.output
    missing = runner.invoke(main, ["report", "merge", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o4")])
    assert missing.exit_code == 2 and "nowhere: no such file or folder" in missing.output
    (tmp_path / "shard-2" / "seed-9" / "results.json").write_text("{not json")
    corrupt = runner.invoke(main, ["report", "merge", str(tmp_path / "shard-2"), "--out", str(tmp_path / "o5")])
    assert corrupt.exit_code == 2 and "seed-9/results.json: not JSON" in corrupt.output
