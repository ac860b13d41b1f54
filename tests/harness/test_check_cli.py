"""`kconform check`: exit codes 0/1/2 and what it prints."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from harness.cli import main
from harness.history import HistoryBuilder


def _write(tmp_path: Path, b: HistoryBuilder, name: str = "h.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(b.lines()))
    return path


def _valid() -> HistoryBuilder:
    b = HistoryBuilder()
    b.send("p0", "t", "a", offset=0)
    b.send("p0", "t", "b", offset=1)
    b.call("c0", "subscribe", {"group": "g", "topics": ["t"], "auto_offset_reset": "earliest"})
    d = b.invoke("c0", "drain")
    b.poll("c0", [("t", 0, 0, "a"), ("t", 0, 1, "b")])
    b.ok(d)
    return b


def _lossy() -> HistoryBuilder:
    b = HistoryBuilder()
    for i, v in enumerate("abc"):
        b.send("p0", "t", v, offset=i)
    b.poll("c0", [("t", 0, 0, "a"), ("t", 0, 2, "c")])
    return b


def test_a_valid_history_exits_0_and_prints_the_table(tmp_path: Path) -> None:
    """No anomalies: exit 0, every check listed as ok, a VALID verdict."""
    result = CliRunner().invoke(main, ["check", str(_write(tmp_path, _valid())), "--guarantee", "exactly-once"])
    assert result.exit_code == 0, result.output
    assert "lost-write" in result.output and "exactly-once" in result.output
    assert "VALID: no anomalies" in result.output


def test_anomalies_exit_1_with_counts_and_witness_events(tmp_path: Path) -> None:
    """A lost write: exit 1, its count, its explanation and the witnessing events."""
    result = CliRunner().invoke(main, ["check", str(_write(tmp_path, _lossy()))])
    assert result.exit_code == 1, result.output
    assert "lost-write                   FAIL     1" in result.output
    assert "value 'b' was acknowledged" in result.output
    assert "#3 0.000s p0 ok send (completes #2)" in result.output  # seconds since the first event
    assert "INVALID: 2 anomalies (lost-write: 1, poll-skip: 1)" in result.output


def test_json_output_and_check_selection(tmp_path: Path) -> None:
    """--checks runs only the named checks; --json prints the report as JSON."""
    path = _write(tmp_path, _lossy())
    result = CliRunner().invoke(main, ["check", str(path), "--checks", "lost-write,duplicate", "--json"])
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert [r["check"] for r in report["results"]] == ["lost-write", "duplicate"]
    assert report["anomalies"] == {"lost-write": 1} and report["events"] == 8


def test_a_broken_file_exits_2_naming_file_line_and_field(tmp_path: Path) -> None:
    """An invalid event makes the history unusable: exit 2 with file, line and field."""
    lines = _valid().lines()
    event = json.loads(lines[2])
    del event["value"]["offset"]
    lines[2] = json.dumps(event) + "\n"
    path = tmp_path / "broken.jsonl"
    path.write_text("".join(lines))
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 2
    assert f"{path}:3: field 'value.offset': missing" in result.output


def test_missing_file_and_unknown_check_exit_2(tmp_path: Path) -> None:
    """A file that is not there, or a check name that does not exist, is a usage error."""
    result = CliRunner().invoke(main, ["check", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 2 and "cannot read the file" in result.output
    result = CliRunner().invoke(main, ["check", str(_write(tmp_path, _valid())), "--checks", "lost-writes"])
    assert result.exit_code == 2 and "unknown check(s) lost-writes" in result.output


def test_a_truncated_last_line_warns_and_checks_the_rest(tmp_path: Path) -> None:
    """A crash mid-line is reported as a warning; the earlier events are checked."""
    path = _write(tmp_path, _lossy())
    path.write_text(path.read_text() + '{"index": 8, "ti')
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 1
    assert "warning:" in result.output and "incomplete" in result.output


def test_a_requested_check_that_cannot_run_exits_2(tmp_path: Path) -> None:
    """Asking for unseen on a history without a drain cannot be answered: exit 2, with why."""
    result = CliRunner().invoke(main, ["check", str(_write(tmp_path, _lossy())), "--checks", "unseen"])
    assert result.exit_code == 2
    assert "cannot run on this history" in result.output and "drain" in result.output
    assert "NOT JUDGED: unseen could not run" in result.output and "VALID" not in result.output


def test_help_explains_exit_codes_and_gives_an_example() -> None:
    """--help documents the checks, the exit status and an example."""
    result = CliRunner().invoke(main, ["check", "--help"])
    assert result.exit_code == 0
    assert "Exit status: 0" in result.output and "kconform check run/history.jsonl" in result.output


def test_each_anomaly_says_whose_fault_it_is(tmp_path: Path) -> None:
    """A duplicate whose second copy carries a bumped epoch is printed as the client's fault,
    naming the client the history's meta.clients gives and the known bug."""
    b = HistoryBuilder({"clients": {"p0": "confluent-kafka 2.16.1 (librdkafka 2.16.0)"}})
    b.send("p0", "t", "a", offset=1)
    b.poll("drain", [("t", 0, 0, "a"), ("t", 0, 1, "a")],
           batches=[("t", 0, 0, 0, 5, 0, 9), ("t", 0, 1, 1, 5, 1, 0)])
    result = CliRunner().invoke(main, ["check", str(_write(tmp_path, b))])
    assert result.exit_code == 1, result.output
    assert "whose fault: client (epoch-bump-resend): confluent-kafka 2.16.1 (librdkafka 2.16.0)" in result.output
    assert "librdkafka #4953" in result.output


def test_a_stated_configuration_turns_unpromised_anomalies_into_hazards(tmp_path: Path) -> None:
    """With acks=1 Kafka does not promise against lost writes: the same history is VALID with
    hazards (exit 0), as a chaos campaign would judge it; under acks=all it is INVALID."""
    path = _write(tmp_path, _lossy())
    lenient = CliRunner().invoke(main, ["check", str(path), "--config", "acks=1", "--config", "enable.idempotence=false"])
    assert lenient.exit_code == 0, lenient.output
    assert "lost-write                   hazard   1" in lenient.output
    assert "configuration: acks=1, enable.idempotence=false, replication.factor=3" in lenient.output
    assert "hazard lost-write: 1, not claimed: acks=1: the leader acknowledges" in lenient.output
    assert "VALID: every guarantee this configuration claims held" in lenient.output
    strict = CliRunner().invoke(main, ["check", str(path), "--config", "acks=all", "--config", "min.insync.replicas=2"])
    assert strict.exit_code == 1, strict.output
    assert "lost-write                   FAIL     1" in strict.output and "INVALID: claimed guarantees" in strict.output
    as_json = CliRunner().invoke(main, ["check", str(path), "--config", "acks=1", "--json"])
    judged = json.loads(as_json.output)["judged"]
    assert judged["outcome"] == "held" and judged["hazards"] == {"lost-write": 1, "poll-skip": 1}


def test_the_configuration_a_campaign_recorded_is_used_and_a_bad_one_refused(tmp_path: Path) -> None:
    """A chaos history's header carries its settings: check judges by them unasked. A stated
    configuration Kafka refuses, or a key kconform does not judge by, is a clear error (exit 2)."""
    b = _lossy()
    meta = {"settings": {"workload": {"acks": "1", "idempotence": False}}, "replication_factor": 3,
            "topic_configs": {"min.insync.replicas": "2"}}
    recorded = _write(tmp_path, HistoryBuilder(meta), "empty.jsonl")
    lines = recorded.read_text().splitlines(keepends=True)[:1] + b.lines()[1:]
    recorded.write_text("".join(lines))
    result = CliRunner().invoke(main, ["check", str(recorded)])
    assert result.exit_code == 0, result.output
    assert "acks=1" in result.output and "(from the history's header)" in result.output
    path = _write(tmp_path, _lossy())
    unknown = CliRunner().invoke(main, ["check", str(path), "--config", "linger.ms=5"])
    assert unknown.exit_code == 2 and "not a setting kconform judges by; known: acks" in unknown.output
    refused = CliRunner().invoke(main, ["check", str(path), "--config", "acks=1", "--config", "enable.idempotence=true"])
    assert refused.exit_code == 2 and "enable.idempotence=true requires acks=all" in refused.output
    malformed = CliRunner().invoke(main, ["check", str(path), "--config", "acks"])
    assert malformed.exit_code == 2 and "expected KEY=VALUE" in malformed.output


def _transactional(torn: bool) -> HistoryBuilder:
    """tp1 and tp2 interleave their writes both ways (G0, which Kafka allows); c0 reads tp1's
    records, or (torn) only its first one, then reads past the second."""
    b = HistoryBuilder()
    b.txn("tp1", [["send", "t", 0, None, "a0", 0], ["send", "t", 1, None, "a1", 1]])
    b.txn("tp2", [["send", "t", 0, None, "b0", 1], ["send", "t", 1, None, "b1", 0]])
    b.poll("c0", [("t", 0, 0, "a0"), ("t", 0, 1, "b0")], isolation_level="read_committed")
    seen = [("t", 1, 0, "b1")] if torn else [("t", 1, 0, "b1"), ("t", 1, 1, "a1")]
    b.poll("c0", seen, isolation_level="read_committed")
    if torn:
        b.send("p0", "t", "c", partition=1, offset=2)
        b.poll("c0", [("t", 1, 2, "c")], isolation_level="read_committed")
    return b


def test_transactional_anomalies_print_their_witnesses_and_kafkas_allowances_are_hazards(tmp_path: Path) -> None:
    """A write cycle alone is a hazard (exit 0); a torn transaction fails with its witness events."""
    result = CliRunner().invoke(main, ["check", str(_write(tmp_path, _transactional(torn=False)))])
    assert result.exit_code == 0, result.output
    assert "G0                           hazard   1" in result.output
    assert "hazard G0: 1, never claimed: Kafka's transactions do not isolate writes" in result.output
    assert "VALID: no anomaly Kafka promises against" in result.output
    judged = CliRunner().invoke(main, ["check", str(_write(tmp_path, _transactional(torn=False))),
                                       "--config", "min.insync.replicas=2"])
    assert judged.exit_code == 0, judged.output
    assert "hazard G0: 1, not claimed: Kafka's transactions do not isolate writes" in judged.output
    result = CliRunner().invoke(main, ["check", str(_write(tmp_path, _transactional(torn=True)))])
    assert result.exit_code == 1, result.output
    assert "torn-transaction             FAIL     1" in result.output
    assert ("c0 (read_committed) saw 1 of tp1's transaction #0 (committed)'s records (e.g. 'a0') but read t-1 "
            "from offset 0 to 2 without its 'a1' at offset 1") in result.output
    assert "#1 0.000s tp1 ok txn (completes #0)" in result.output
    assert "INVALID" in result.output and "torn-transaction: 1" in result.output and "G0" not in \
        result.output.split("INVALID")[1]
