"""`kconform report diff`: two campaign reports side by side, and clear errors for what is not one."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from chaos.cli import main
from chaos.report_diff import compare, render_text
from tests.chaos.test_report import _write


def _two(tmp_path: Path) -> tuple[Path, Path]:
    """Report A as written; B the same run judged differently: the lost write found twice more,
    more sends, another seed."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    _write(a)
    results = json.loads((a / "results.json").read_text())
    results["violations"]["lost-write"] = 3
    results["anomalies"]["lost-write"] = 3
    results["operations"]["by_operation"]["send"]["ok"] = 12
    results["settings"]["seed"] = 8
    results["seed"] = 8
    (b / "results.json").write_text(json.dumps(results))
    return a, b


def test_the_comparison_marks_what_changed_and_names_differing_settings(tmp_path: Path) -> None:
    a, b = _two(tmp_path)
    c = compare(a, b)
    rows = {(r.section, r.name): r for r in c.rows}
    assert rows[("properties", "lost-write")].a == "1 VIOLATED broker"
    assert rows[("properties", "lost-write")].b == "3 VIOLATED broker"
    assert rows[("workload", "sends acknowledged")].changed and not rows[("verdict", "outcome")].changed
    assert [(s.name, s.a, s.b) for s in c.settings] == [("seed", 7, 8)]
    text = render_text(c, only_changes=True)
    assert "* lost-write" in text and "1 VIOLATED broker" in text and "outcome" not in text
    assert "* seed" in text and "of" in text.splitlines()[-1]
    assert render_text(compare(a, a)).endswith("the runs agree")


def test_report_diff_command_prints_a_table_or_json_and_refuses_what_is_not_a_report(tmp_path: Path) -> None:
    a, b = _two(tmp_path)
    runner = CliRunner()
    table = runner.invoke(main, ["report", "diff", str(a), str(b)])
    assert table.exit_code == 0 and "* lost-write" in table.output, table.output
    as_json = runner.invoke(main, ["report", "diff", str(a / "results.json"), str(b), "--json"])
    assert as_json.exit_code == 0
    assert any(r["name"] == "lost-write" and r["changed"] for r in json.loads(as_json.output)["rows"])
    missing = runner.invoke(main, ["report", "diff", str(a), str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "nowhere: no such report" in missing.output
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no results.json in it" in runner.invoke(main, ["report", "diff", str(a), str(empty)]).output
    (b / "results.json").write_text('{"outcome": "held"')
    corrupt = runner.invoke(main, ["report", "diff", str(a), str(b)])
    assert corrupt.exit_code == 2 and "results.json: not JSON" in corrupt.output
    (b / "results.json").write_text('{"outcome": "held"}')
    other = runner.invoke(main, ["report", "diff", str(a), str(b)])
    assert other.exit_code == 2 and "not a kconform campaign's results.json (no anomalies" in other.output
