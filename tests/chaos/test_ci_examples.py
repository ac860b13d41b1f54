"""What docs/ci.md tells users to run in CI works here: the YAML files validate against their
published schemas (SchemaStore's, as check-jsonschema vendors them), and the example's commands
(a seed range split in shards, then merged) run real campaigns and give one verdict."""

from __future__ import annotations

import datetime
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.chaos.conftest import require_toxiproxy
from tests.helpers import process_alive

ROOT = Path(__file__).resolve().parents[2]
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"
YAML_FILES = (("vendor.github-actions", ROOT / "action.yml"),
              ("vendor.github-workflows", ROOT / ".github" / "workflows" / "kconform-campaigns.yml"),
              ("vendor.gitlab-ci", ROOT / "docs" / "examples" / "gitlab-ci.yml"))


def _validate(schema: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", schema, str(path)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("schema", "path"), YAML_FILES, ids=[p.name for _s, p in YAML_FILES])
def test_the_ci_files_validate_against_their_published_schemas(schema: str, path: Path) -> None:
    result = _validate(schema, path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_refuses_a_broken_workflow(tmp_path: Path) -> None:
    """The check can fail: a job without runs-on is not a workflow."""
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  chaos:\n    steps:\n      - run: echo\n")
    assert _validate("vendor.github-workflows", broken).returncode != 0


def _kconform(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chaos.entry", *args], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)


@pytest.mark.chaos
@pytest.mark.slow
def test_shards_of_a_seed_range_run_apart_and_merge_into_one_verdict(tmp_path: Path) -> None:
    require_toxiproxy()
    for shard in (1, 2):
        result = _kconform("chaos", "--seeds", "1-2", "--shard", f"{shard}/2", "--duration", "5",
                           "--report", str(tmp_path / f"shard-{shard}"))
        assert result.returncode == 0, result.stdout + result.stderr
        assert [p.name for p in (tmp_path / f"shard-{shard}").glob("seed-*")] == [f"seed-{shard}"]
        assert "shard " + f"{shard}/2 of 2" in result.stdout + result.stderr
    merged = _kconform("report", "merge", str(tmp_path), "--out", str(tmp_path), "--json")
    assert merged.returncode == 0, merged.stdout + merged.stderr
    results = json.loads(merged.stdout)
    assert results["totals"]["campaigns"] == 2 and results["outcome"] == "held"
    for campaign in results["campaigns"]:
        assert (tmp_path / campaign["report"] / "report.html").exists()
        assert campaign["operations"] > 0


@pytest.mark.chaos
@pytest.mark.slow
def test_jobs_run_campaigns_at_once_each_with_its_own_cluster(tmp_path: Path) -> None:
    """--jobs 2: two campaigns at the same time, each on its own ports and Toxiproxy server;
    both hold, and the sweep's folder is merged."""
    require_toxiproxy()
    result = _kconform("chaos", "--seeds", "2", "--seed", "3", "--jobs", "2", "--duration", "5",
                       "--report", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["merged"] and results["totals"]["by_outcome"] == {"held": 2}
    spans = []
    for campaign in results["campaigns"]:
        own = json.loads((tmp_path / campaign["report"] / "results.json").read_text())
        start = datetime.datetime.fromisoformat(own["started"]).timestamp()
        spans.append((start, start + own["figures"]["duration_s"]))
    (a0, a1), (b0, b1) = spans
    assert a0 < b1 and b0 < a1, spans  # the two campaigns overlapped in time
    assert "2 at a time" in result.stdout + result.stderr


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc): the campaigns, their brokers, their Toxiproxy."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


@pytest.mark.chaos
@pytest.mark.slow
def test_ctrl_c_stops_every_campaign_of_a_sweep_and_leaves_nothing_running(tmp_path: Path) -> None:
    """Ctrl-C during --seeds --jobs 2: exit 130, and every process the sweep started (campaigns,
    their brokers and controllers, their Toxiproxy servers) is gone."""
    require_toxiproxy()
    process = subprocess.Popen([sys.executable, "-m", "chaos.entry", "chaos", "--seeds", "4", "--seed", "1",
                                "--jobs", "2", "--duration", "30", "--report", str(tmp_path)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    deadline = time.monotonic() + 60
    started: set[int] = set()
    while time.monotonic() < deadline and len(started) < 10:  # 2 campaigns x (4 nodes + Toxiproxy) and more
        started |= _descendants(process.pid)
        time.sleep(0.5)
    time.sleep(3)
    started |= _descendants(process.pid)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output
    assert len(started) >= 10, (started, output)
    left = sorted(pid for pid in started if process_alive(pid))
    assert left == [], (left, output)
