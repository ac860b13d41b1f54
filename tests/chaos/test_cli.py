"""``kconform chaos`` from the command line: exit codes 0 / 1 / 2, bad arguments, broken
replay files, replaying a saved schedule, and nothing left behind when a campaign fails.

The campaigns here are real (a reference cluster, a Toxiproxy server, confluent-kafka clients)
and short; ``kconform`` runs as a subprocess, as a user runs it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

import chaos.campaign
from chaos.campaign import CampaignSettings, run_campaign
from chaos.cli import ProgressDisplay, chaos_command
from chaos.toxiproxy import ToxiproxyControl
from launch.toxiproxy import URL_ENV, ToxiproxyServer
from tests.chaos.conftest import require_toxiproxy

KCONFORM = str(Path(sys.executable).parent / "kconform")


def _cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KCONFORM, "chaos", *args], capture_output=True, text=True, timeout=timeout)


# --- arguments (no campaign runs) --------------------------------------------------------------


def test_help_explains_every_option_with_an_example() -> None:
    result = CliRunner().invoke(chaos_command, ["--help"], terminal_width=120)
    assert result.exit_code == 0
    for option in ("--target", "--bootstrap", "--brokers", "--duration", "--faults", "--acks", "--idempotence",
                   "--override", "--seed", "--report", "--replay", "--campaign"):
        assert option in result.output
    assert result.output.count("e.g.") >= 12
    assert "Exit status: 0" in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--faults", "kill,melt"], "unknown fault 'melt'"),
    (["--acks", "2"], "'2' is not one of"),
    (["--acks", "1", "--idempotence"], "--idempotence needs --acks all"),
    (["--override", "min.insync.replicas"], "expected key=value"),
    (["--override", "node.id=4"], "set by the cluster launcher"),
    (["--target", "external"], "--target external needs --proxy"),
    (["--bootstrap", "127.0.0.1:9092"], "--bootstrap and --proxy are for --target external"),
    (["--target", "external", "--bootstrap", "nowhere"], "is not HOST:PORT"),
    (["--campaign", "acks1-loss", "--faults", "kill"], "has its own faults"),
    (["--duration", "1"], "--duration"),
    (["--consumers", "assigned,greedy"], "unknown consumer mode"),
    (["--processors", "2", "--client", "aiokafka"], "does not implement KIP-447"),
    (["--processors", "2", "--acks", "1"], "--transactions and --processors need idempotent producers"),
])
def test_bad_arguments_exit_2_with_a_clear_message(args: list[str], message: str) -> None:
    result = CliRunner().invoke(chaos_command, args)
    assert result.exit_code == 2, result.output
    assert message in result.output


@pytest.mark.parametrize(("content", "message"), [
    ("{\"kconform-schedule\": 1, \"duration\": 10,", "not JSON"),
    ("{\"kconform-schedule\": 1, \"duration\": 10, \"seed\": 1, \"faults\": [], \"settings\": {}}",
     "field 'settings'"),
    ("{\"kconform-schedule\": 1, \"duration\": 10, \"seed\": 1, \"faults\": [{\"fault\": \"kill\"}]}",
     "faults[0].at"),
])
def test_a_corrupt_replay_file_exits_2_naming_the_problem(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "schedule.json"
    path.write_text(content)
    result = CliRunner().invoke(chaos_command, ["--replay", str(path), "--report", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "cannot replay" in result.output and message in result.output and str(path) in result.output
    assert not (tmp_path / "r").exists()


def test_replaying_a_history_says_it_is_one_and_names_the_schedule(tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    history.write_text('{"kconform-history": 2, "meta": {}}\n{"index": 0}\n')
    (tmp_path / "schedule.json").write_text("{}")
    result = CliRunner().invoke(chaos_command, ["--replay", str(history)])
    assert result.exit_code == 2
    assert "a recorded history (JSON lines), not a schedule" in result.output
    assert f"its schedule is {tmp_path / 'schedule.json'}" in result.output
    binary = tmp_path / "junk.bin"
    binary.write_bytes(b"\xff\xfe\x00")
    result = CliRunner().invoke(chaos_command, ["--replay", str(binary)])
    assert result.exit_code == 2 and "not text" in result.output


def test_replay_refuses_options_the_file_decides(tmp_path: Path) -> None:
    path = tmp_path / "schedule.json"
    path.write_text("{}")
    result = CliRunner().invoke(chaos_command, ["--replay", str(path), "--acks", "1"])
    assert result.exit_code == 2 and "--replay takes its settings from the file; drop --acks" in result.output


def test_a_missing_toxiproxy_is_a_setup_error_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(URL_ENV, raising=False)
    monkeypatch.setenv("KCONFORM_TOXIPROXY_BINARY", str(tmp_path / "no-such-toxiproxy"))
    result = CliRunner().invoke(chaos_command, ["--duration", "5", "--report", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "setup error" in result.output and "no Toxiproxy server" in result.output


def test_list_names_every_fault_and_campaign() -> None:
    result = CliRunner().invoke(chaos_command, ["--list"])
    assert result.exit_code == 0
    assert "isolate-leader" in result.output and "wipe" in result.output and "acks1-loss" in result.output


# --- real campaigns ----------------------------------------------------------------------------


@pytest.mark.chaos
@pytest.mark.slow
def test_a_valid_campaign_exits_0_writes_its_report_and_replays(tmp_path: Path) -> None:
    """Safe settings under kills and pauses: exit 0, the summary, the five report files; the
    replay command runs the same faults again."""
    require_toxiproxy()
    report = tmp_path / "chaos"
    run = _cli("--duration", "6", "--seed", "3", "--faults", "kill,pause", "--report", str(report))
    assert run.returncode == 0, run.stdout + run.stderr
    for part in ("seed 3", "operations:", "faults injected:", "anomalies: none", "guarantees:",
                 "lost-write", "held", "VALID", f"replay: kconform chaos --replay {report}/schedule.json"):
        assert part in run.stdout, run.stdout
    assert "chaos:" in run.stderr  # periodic progress lines (not a terminal)
    for name in ("history.jsonl", "schedule.json", "results.json", "junit.xml", "report.html"):
        assert (report / name).is_file(), name
    results = json.loads((report / "results.json").read_text())
    assert results["valid"] is True and results["anomalies"] == {}
    assert results["operations"]["total"] > 500 and results["faults"]["injected"] >= 1

    again = _cli("--replay", str(report / "schedule.json"), "--report", str(tmp_path / "again"), "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    # --json: stdout is results.json and nothing else; the summary went to stderr.
    assert json.loads(again.stdout) == json.loads((tmp_path / "again" / "results.json").read_text())
    assert "VALID" in again.stderr
    first = json.loads((report / "schedule.json").read_text())
    second = json.loads((tmp_path / "again" / "schedule.json").read_text())
    assert second["faults"] == first["faults"] and second["seed"] == 3 and second["settings"] == first["settings"]


@pytest.mark.chaos
@pytest.mark.slow
def test_a_broker_that_loses_acknowledged_writes_exits_1(tmp_path: Path) -> None:
    """A reference broker behind a proxy that drops every 100th record from Fetch answers, run
    as an external target: the consumers skip acknowledged records, which acks=all claims
    cannot happen, so the campaign is invalid."""
    from harness.testing.faulty import FaultyTarget

    with FaultyTarget("drop") as target:
        run = _cli("--target", "external", "--bootstrap", target.bootstrap, "--duration", "6", "--seed", "4",
                   "--report", str(tmp_path / "r"))
    assert run.returncode == 1, run.stdout + run.stderr
    assert "INVALID: " in run.stdout and "VIOLATED " in run.stdout
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    # Consumers skipping records may be the broker's or the consumer client's doing: nothing in
    # the evidence pins it on the client, so the broker is not cleared (exit 1, never 3).
    assert results["valid"] is False
    assert results["outcome"] in ("violated-by-broker", "violated-unattributed"), results["outcome"]
    assert "client" not in results["violated_by"].values(), results["violated_by"]
    # Consumers jump over the records the proxy hides: poll-skip (and lost-write when nobody
    # reads the hidden record at all).
    assert set(results["violations"]) & {"poll-skip", "lost-write"}, results["violations"]


@pytest.mark.chaos
@pytest.mark.slow
def test_an_external_broker_that_advertises_its_proxy_runs_behind_it(tmp_path: Path) -> None:
    """--target external --proxy LISTEN=UPSTREAM: the broker (a reference broker someone else
    started) advertises LISTEN; the campaign names it after its node id, cuts its client path and
    finds nothing wrong. A broker that advertises its own address instead is refused, since
    clients would bypass the proxy."""
    from launch.broker_process import BrokerProcess
    from launch.ports import free_port

    require_toxiproxy()
    listen = f"127.0.0.1:{free_port()}"
    with BrokerProcess(overrides={"advertised.listeners": f"PLAINTEXT://{listen}",
                                  "group.initial.rebalance.delay.ms": "0"}) as broker:
        run = _cli("--target", "external", "--proxy", f"{listen}={broker.bootstrap}", "--duration", "6",
                   "--seed", "5", "--faults", "cut-client-leader,latency", "--report", str(tmp_path / "r"))
        bypassed = _cli("--target", "external", "--proxy", f"127.0.0.1:{free_port()}={broker.bootstrap}",
                        "--duration", "4", "--report", str(tmp_path / "bypassed"))
    assert run.returncode == 0, run.stdout + run.stderr
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    # A standalone reference broker is node.id 0: its proxy is named after it.
    assert results["environment"]["nodes"] == ["b0"], results["environment"]
    assert [p["path"] for p in results["environment"]["proxies"]] == ["clients->b0"], results["environment"]
    assert results["faults"]["injected"] >= 1 and results["anomalies"] == {}
    assert bypassed.returncode == 2, bypassed.stdout + bypassed.stderr
    assert "which no --proxy listens on" in bypassed.stderr + bypassed.stdout


@pytest.mark.chaos
@pytest.mark.slow
def test_a_campaign_interrupted_midway_leaves_no_process_proxy_or_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C during the drain: every broker, the controller and every proxy are gone, and so
    are the cluster's temporary directories (the autouse fixture checks for processes)."""
    require_toxiproxy()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

    def interrupted(*_args: object, **_kwargs: object) -> bool:
        raise KeyboardInterrupt

    with ToxiproxyServer() as server:
        monkeypatch.setenv(URL_ENV, server.url)
        monkeypatch.setattr(chaos.campaign, "read_to_end", interrupted)
        with pytest.raises(KeyboardInterrupt):
            run_campaign(CampaignSettings(duration=5.0, seed=6, faults=("pause",)), tmp_path / "r")
        assert ToxiproxyControl(server.url).proxies() == {}
    assert list(scratch.iterdir()) == []


def test_progress_is_redrawn_in_place_on_a_terminal_and_printed_as_lines_elsewhere() -> None:
    import io

    from chaos.campaign import Progress

    snapshots = [Progress(t, 10.0, 100 * int(t), 90 * int(t), 80 * int(t), 1, ("kill b2",)) for t in (1, 2, 10)]
    tty = io.StringIO()
    display = ProgressDisplay(tty, tty=True, width=200)
    for p in snapshots:
        display(p)
    display.done()
    drawn = tty.getvalue()
    assert drawn.count("\r") == 3 and drawn.count("\n") == 1 and "[kill b2]" in drawn and "#" * 20 in drawn
    narrow = io.StringIO()
    ProgressDisplay(narrow, tty=True, width=40)(snapshots[0])
    assert len(narrow.getvalue()) == 40  # "\r" and a line one column short of the terminal
    log = io.StringIO()
    display = ProgressDisplay(log, tty=False, every_s=60)
    for p in snapshots:
        display(p)
    lines = log.getvalue().splitlines()
    assert len(lines) == 2  # the first snapshot, then the last (the end of the workload)
    assert lines[-1].startswith("chaos:  10.0/10 s  sent 1000  acked 900  read 800  faults 1")
