"""The conformance suite: passes on the reference broker, names the anomalies of wrong brokers,
writes results.json and JUnit XML, and exits with the documented codes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from chaos.cli import main
from harness.clients import CLIENTS
from harness.conformance import CHECKS, FAIL, PASS, SKIP, run_suite, write_reports
from harness.conformance.matrix import render_matrix
from harness.conformance.registry import client_pairs, instances
from harness.conformance.runner import reproduce_command, select
from harness.targets import ReferenceTarget
from harness.testing.faulty import FaultyTarget

pytestmark = pytest.mark.clients


@pytest.fixture(scope="module")
def reference() -> Iterator[ReferenceTarget]:
    with ReferenceTarget() as target:
        yield target


def test_the_whole_suite_passes_on_the_reference_broker(reference: ReferenceTarget, tmp_path: Path) -> None:
    """Every check the reference broker can run passes; only checks needing a cluster are skipped."""
    result = run_suite(reference, clients=CLIENTS, seed=3, examples=5, steps=15, report_dir=tmp_path)
    failed = {o.name: o.witness for o in result.outcomes if o.status == FAIL}
    assert not failed, failed
    skipped = {o.name: o.reason for o in result.outcomes if o.status == SKIP}
    assert set(skipped) == {"replicated-topic"} and "replication" in str(skipped["replicated-topic"])
    assert len(result.outcomes) == len(CHECKS) + 2 * (len(CLIENTS) - 1) + len(client_pairs(CLIENTS)) - 1
    interop = result.outcome("client-interop[java>kcat]")
    assert interop.status == PASS and interop.details["records"] > 0
    stateful = result.outcome("stateful-log").details
    assert stateful["steps"] > 0 and stateful["steps_per_second"] > 0


def test_a_broker_that_drops_records_is_reported_as_lost_write() -> None:
    """Dropping every 100th acknowledged record shows as lost-write (and poll-skip) by name."""
    with FaultyTarget("drop") as target:
        result = run_suite(target, checks=["client-roundtrip", "produce-offsets-contiguous"],
                           clients=("confluent-kafka", "aiokafka"), seed=1)
    assert result.outcome("produce-offsets-contiguous").status == PASS
    for client in ("confluent-kafka", "aiokafka"):
        outcome = result.outcome(f"client-roundtrip[{client}]")
        assert outcome.status == FAIL and outcome.anomalies.get("lost-write", 0) >= 3, outcome
        assert "lost-write" in (outcome.witness or "") and outcome.reproduce
    assert not result.valid and result.anomalies["lost-write"] >= 6


def test_a_broker_that_reorders_offsets_is_reported_by_name() -> None:
    """Acknowledging wrong offsets fails the offset checks and shows inconsistent-offsets,
    duplicate and nonmonotonic-send; the state machine prints its minimal steps."""
    with FaultyTarget("reorder") as target:
        result = run_suite(target, checks=["produce-offsets-contiguous", "client-roundtrip[kafka-python]",
                                           "stateful-log"], seed=2, examples=25, steps=20, shrink_seconds=10)
    assert result.outcome("produce-offsets-contiguous").status == FAIL
    anomalies = result.outcome("client-roundtrip[kafka-python]").anomalies
    assert {"inconsistent-offsets", "duplicate", "nonmonotonic-send"} <= set(anomalies), anomalies
    machine = result.outcome("stateful-log")
    assert machine.status == FAIL and "contiguous" in (machine.witness or "")
    steps = str(machine.details["reproduction"])
    # The failing steps are printed. Shrunk to the end, they are one plain produce; a machine
    # too loaded to finish shrinking within --shrink-seconds may stop at an idempotent one.
    assert re.search(r"state\.produce(_idempotent)?\(", steps), steps
    if not machine.details.get("shrink_stopped"):
        assert "state.produce(" in steps, steps
    assert machine.reproduce and "--seed 2" in machine.reproduce


def test_client_pairs_form_a_ring_and_kcat_reads_the_last_writer() -> None:
    """Each client writes once and reads once; kcat only reads; a pair check's reproduce
    command names the instance, since --client cannot name a pair."""
    assert client_pairs(["a", "b", "c"]) == ["a>b", "b>c", "c>a", "c>kcat"]
    assert client_pairs(["java"]) == ["java>kcat"] and client_pairs([]) == []
    interop = CHECKS["client-interop"]
    assert instances(interop, ["a", "b"]) == [("a>b", "client-interop[a>b]"), ("b>a", "client-interop[b>a]"),
                                              ("b>kcat", "client-interop[b>kcat]")]
    picked = select(["client-interop[java>aiokafka]"], ["confluent-kafka"])
    assert [(c.name, client, name) for c, client, name in picked] == [
        ("client-interop", "java>aiokafka", "client-interop[java>aiokafka]")]
    with FaultyTarget("drop") as target:
        command = reproduce_command(target, "client-interop[java>kcat]", 5, 10, 10)
    assert command.endswith("--checks 'client-interop[java>kcat]' --seed 5"), command


def test_records_a_broker_drops_are_missed_by_every_reader_pair() -> None:
    """client-interop fails with lost-write when the broker drops acknowledged records, whether
    a client library or kcat reads them."""
    with FaultyTarget("drop") as target:
        result = run_suite(target, checks=["client-interop[kafka-python>kcat]",
                                           "client-interop[confluent-kafka>aiokafka]"], seed=1)
    for name in ("client-interop[kafka-python>kcat]", "client-interop[confluent-kafka>aiokafka]"):
        outcome = result.outcome(name)
        assert outcome.status == FAIL and outcome.anomalies.get("lost-write", 0) >= 1, outcome


def test_results_json_and_junit_xml(reference: ReferenceTarget, tmp_path: Path) -> None:
    """results.json holds valid, checks and anomalies; junit.xml has one testcase per check with
    failure and skipped elements."""
    with FaultyTarget("reorder") as target:
        result = run_suite(target, checks=["api-versions", "produce-offsets-contiguous", "replicated-topic"],
                           seed=0)
    write_reports(result, tmp_path)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["valid"] is False
    assert data["checks"] == {"api-versions": "pass", "produce-offsets-contiguous": "fail", "replicated-topic": "skip"}
    assert isinstance(data["anomalies"], dict)
    assert data["results"][1]["rule"] and data["results"][1]["reproduce"].startswith("kconform conform")
    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert cases["produce-offsets-contiguous"].find("failure") is not None
    assert cases["replicated-topic"].find("skipped") is not None
    assert list(cases["api-versions"]) == []
    assert "FAIL" in (tmp_path / "summary.txt").read_text()


def test_conform_exit_codes(tmp_path: Path) -> None:
    """Exit 0 when nothing fails, 1 when a check fails, 2 for bad arguments or no target."""
    runner = CliRunner()
    ok = runner.invoke(main, ["conform", "--checks", "api-versions,replicated-topic", "--report", str(tmp_path)])
    assert ok.exit_code == 0, ok.output
    assert "VALID: 1 passed, 0 failed, 1 skipped" in ok.output
    assert json.loads((tmp_path / "results.json").read_text())["valid"] is True
    bad = runner.invoke(main, ["conform", "--target", "faulty-reorder", "--checks", "produce-offsets-contiguous",
                               "--seed", "4"])
    assert bad.exit_code == 1, bad.output
    assert "reproduce: kconform conform --target faulty-reorder --checks produce-offsets-contiguous --seed 4" in bad.output
    assert runner.invoke(main, ["conform", "--target", "external"]).exit_code == 2
    assert runner.invoke(main, ["conform", "--checks", "no-such-check"]).exit_code == 2
    unreachable = runner.invoke(main, ["conform", "--target", "external", "--bootstrap", "127.0.0.1:1"])
    assert unreachable.exit_code == 2 and "does not answer" in unreachable.output


def test_list_names_every_check_with_its_rule() -> None:
    """--list prints each check, what it needs and the Kafka rule it checks."""
    result = CliRunner().invoke(main, ["conform", "--list"])
    assert result.exit_code == 0
    for name, check_ in CHECKS.items():
        assert name in result.output and check_.rule[:40] in result.output


def test_matrix_page_names_targets_rules_and_how_to_regenerate(tmp_path: Path) -> None:
    """The matrix is generated from runs: a row per check, a column per target, failures with the
    rule they break, and the regeneration command."""
    out = tmp_path / "conformance.md"
    result = CliRunner().invoke(main, ["matrix", "--targets", "reference,faulty-reorder", "--output", str(out),
                                       "--checks", "api-versions,produce-offsets-contiguous,replicated-topic",
                                       "--chaos-duration", "0"])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "| `produce-offsets-contiguous` |" in page and "**FAIL**" in page
    assert "## faulty-reorder" in page and "Kafka documentation 1.1" in page
    assert "kconform matrix --targets reference,faulty-reorder --checks" in page and "--chaos-duration 0" in page
    assert "Clients x brokers under faults" not in page
    assert "`replicated-topic`: the reference target lacks replication" in page
    assert render_matrix({}, command="kconform matrix").startswith("# Conformance matrix")


def test_conform_leaves_nothing_in_the_current_directory(tmp_path: Path) -> None:
    """Hypothesis keeps caches in .hypothesis/ of the current directory (some filled while
    modules load); the kconform program gives it a temporary home, so the user's directory
    stays as it was."""
    env = {k: v for k, v in os.environ.items() if k != "HYPOTHESIS_STORAGE_DIRECTORY"}
    done = subprocess.run([str(Path(sys.executable).with_name("kconform")), "conform", "--checks", "stateful-log",
                           "--examples", "2", "--steps", "5"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("after", [0.5, 4.0, 9.0])  # protocol checks, client workloads, state machines
def test_ctrl_c_stops_the_suite_reports_what_finished_and_exits_130(tmp_path: Path, after: float) -> None:
    """Ctrl-C in the middle of a run is no broker failure: the running check is dropped, the
    finished ones are reported (results.json says interrupted), and the exit code is 130,
    whatever check it lands in."""
    report = tmp_path / "r"
    process = subprocess.Popen([str(Path(sys.executable).with_name("kconform")), "conform", "--report", str(report)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert process.stderr is not None
        for line in process.stderr:  # the first finished check: the suite is running
            if line.startswith("  ok"):
                break
        time.sleep(after)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, out + err
    assert "INTERRUPTED (partial)" in out and "FAIL" not in out and "Traceback" not in err, out + err
    results = json.loads((report / "results.json").read_text())
    assert results["interrupted"] is True and results["summary"]["fail"] == 0 and results["summary"]["pass"] > 0


def test_a_broker_whose_rebalances_wait_is_named_before_the_run(tmp_path: Path) -> None:
    """With Kafka's default group.initial.rebalance.delay.ms (3 s) the group checks are slow,
    not wrong; conform says so before it starts, and says nothing when the delay is 0."""
    from launch.broker_process import BrokerProcess

    for delay, noted in (("3000", True), ("0", False)):
        with BrokerProcess(overrides={"group.initial.rebalance.delay.ms": delay}, data_dir=tmp_path / delay) as broker:
            result = CliRunner().invoke(main, ["conform", "--target", "external", "--bootstrap", broker.bootstrap,
                                               "--checks", "api-versions"])
        assert result.exit_code == 0, result.output
        assert ("note: the target has group.initial.rebalance.delay.ms=3000: every new group's first rebalance "
                "waits 3 s" in result.output) is noted, result.output


def test_kconform_target_and_bootstrap_are_read_from_the_environment() -> None:
    """KCONFORM_TARGET / KCONFORM_BOOTSTRAP, which the pytest plugin reads, set conform's
    --target and --bootstrap too (the command line wins)."""
    runner = CliRunner()
    result = runner.invoke(main, ["conform", "--checks", "produce-offsets-contiguous"],
                           env={"KCONFORM_TARGET": "faulty-reorder"})
    assert result.exit_code == 1 and "against faulty-reorder" in result.output, result.output
    result = runner.invoke(main, ["conform", "--target", "reference", "--checks", "api-versions"],
                           env={"KCONFORM_TARGET": "faulty-reorder"})
    assert result.exit_code == 0 and "against reference" in result.output, result.output
    result = runner.invoke(main, ["conform", "--checks", "api-versions"],
                           env={"KCONFORM_TARGET": "external", "KCONFORM_BOOTSTRAP": "127.0.0.1:1"})
    assert result.exit_code == 2 and "127.0.0.1:1" in result.output, result.output
    help_text = " ".join(runner.invoke(main, ["conform", "--help"]).output.split())  # as wrapped or not
    assert "[env var: KCONFORM_TARGET" in help_text


def test_json_puts_the_results_alone_on_stdout() -> None:
    """--json prints results.json (sweep.json with --seeds) on stdout; the table goes to stderr."""
    done = subprocess.run([str(Path(sys.executable).with_name("kconform")), "conform", "--checks",
                           "api-versions,replicated-topic", "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert results["checks"] == {"api-versions": "pass", "replicated-topic": "skip"} and "VALID" in done.stderr
    done = subprocess.run([str(Path(sys.executable).with_name("kconform")), "conform", "--checks", "api-versions",
                           "--seeds", "1-2", "--json"], capture_output=True, text=True, timeout=120)
    sweep = json.loads(done.stdout)
    assert done.returncode == 0 and [r["seed"] for r in sweep["runs"]] == [1, 2] and sweep["valid"] is True


def test_checks_delete_the_topics_they_create(reference: ReferenceTarget) -> None:
    """A suite leaves no topic behind on the broker it tested (a sweep of many seeds would
    otherwise pile up thousands of partitions), passed or failed."""
    from harness.session import WireSession

    checks = ["produce-offsets-contiguous", "fetch-acknowledged-records", "client-roundtrip[kafka-python]"]
    result = run_suite(reference, checks=checks, clients=("kafka-python",), seed=1)
    assert result.valid, result.outcomes
    with WireSession(reference.bootstrap) as s:
        left = [t.name for t in s.metadata(None).topics
                if t.name.startswith(("kc-produce-offsets", "kc-fetch-acknowledged", "kc-client-roundtrip"))]
    assert left == []


def test_a_long_check_is_never_silent(reference: ReferenceTarget, monkeypatch: pytest.MonkeyPatch) -> None:
    """While a check runs, the suite says so at a steady pace (state machines run for minutes)."""
    from harness.conformance import runner

    monkeypatch.setattr(runner, "STILL_RUNNING_EVERY_S", 0.2)
    heard: list[tuple[str, float]] = []
    run_suite(reference, checks=["stateful-log"], seed=3, examples=15, steps=20,
              waiting=lambda name, seconds: heard.append((name, seconds)))
    assert heard and {name for name, _ in heard} == {"stateful-log"}
    assert [s for _, s in heard] == sorted(s for _, s in heard) and heard[0][1] >= 0.2
