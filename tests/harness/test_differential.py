"""Differential runs: the log machine's steps against two targets at once, the first answer on
which they differ reported with both answers, the run replayable from the printed command."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.session import FetchedRecord, FetchResult, make_batch
from harness.stateful.differential import MirroredSession, fetches_agree
from harness.stateful.log_machine import LogMachine
from harness.stateful.runner import run_machine
from harness.targets import KafkaTarget, ReferenceTarget
from harness.testing.faulty import FaultyTarget
from launch import kafka_jars


@pytest.fixture(scope="module")
def reference() -> Iterator[ReferenceTarget]:
    with ReferenceTarget() as target:
        yield target


def _fetch(*offsets: int, hw: int = 9, value: bytes = b"v") -> FetchResult:
    records = tuple(FetchedRecord(o, 1000 + o, None, value, o, o) for o in offsets)
    return FetchResult("NONE", hw, hw, 0, records, (), 100, False)


def test_fetches_agree_on_records_not_on_how_many_batches_follow_the_first() -> None:
    """A size-limited fetch may return fewer batches on one side (KIP-74 guarantees only the
    first); what both returned must be the same records, and both or neither return any."""
    assert fetches_agree(_fetch(3, 4, 5), _fetch(3))
    assert not fetches_agree(_fetch(3, 4), _fetch(4))
    assert not fetches_agree(_fetch(3), _fetch())
    assert not fetches_agree(_fetch(3), _fetch(3, value=b"w"))
    assert not fetches_agree(_fetch(3), _fetch(3, hw=8))


def test_a_wrong_target_is_caught_at_its_first_different_answer(reference: ReferenceTarget) -> None:
    """Against a broker acknowledging wrong offsets, the run fails on a Produce whose two answers
    are printed, and Hypothesis's minimal steps end with that produce."""
    with FaultyTarget("reorder") as faulty:
        run = run_machine(LogMachine, reference, against=faulty, seed=3, examples=10, steps=10, shrink_seconds=20)
    assert not run.passed and not run.flaky
    failure = run.failure or ""
    assert "answered differently at step" in failure and "(produce)" in failure, failure
    assert "reference: NONE, base offset 0" in failure and "faulty-reorder: NONE, base offset 1" in failure
    assert run.reproduction is not None and "state.produce(" in run.reproduction


def test_two_reference_brokers_agree_and_producer_ids_are_mapped(reference: ReferenceTarget) -> None:
    """Two correct brokers agree on every step. Broker-chosen producer ids are not compared: the
    second broker gets each idempotent batch with the id it handed out itself."""
    with ReferenceTarget() as other:
        assert run_machine(LogMachine, reference, against=other, seed=8, examples=8, steps=15).passed
        with MirroredSession(reference, other) as session:
            other_session = session.second
            other_session.init_producer_id()  # the second broker's next id differs from the first's
            _, mine, epoch = session.init_producer_id()
            assert session.create_topic("mirrored", 1) == "NONE"
            batch = make_batch([b"a", b"b"], producer_id=mine, producer_epoch=epoch, base_sequence=0)
            first = session.produce("mirrored", 0, batch)
            assert first is not None and first.error == "NONE"
            theirs = {h.producer_id for h in other_session.fetch("mirrored", 0, 0).batches}
            assert theirs and mine not in theirs


def test_the_cli_reports_the_divergence_and_how_to_replay_it() -> None:
    """`kconform conform --differential A,B` fails with both answers and the replay command;
    wrong uses are usage errors (exit 2)."""
    runner = CliRunner()
    result = runner.invoke(main, ["conform", "--differential", "reference,faulty-reorder", "--seed", "3",
                                  "--examples", "10", "--steps", "10", "--shrink-seconds", "20"])
    assert result.exit_code == 1, result.output
    assert "answered differently" in result.output
    assert ("reproduce: kconform conform --differential reference,faulty-reorder --checks stateful-log --seed 3 "
            "--examples 10 --steps 10") in result.output
    for bad in (["--differential", "reference"], ["--differential", "reference,external"],
                ["--target", "tansu", "--differential", "reference,reference"],
                ["--differential", "reference,reference", "--checks", "api-versions"]):
        assert runner.invoke(main, ["conform", *bad]).exit_code == 2, bad


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("java") is None and not os.environ.get("JAVA_HOME"),
                    reason="Java 17+ is needed to run Apache Kafka (apt-get install openjdk-17-jre-headless)")
@pytest.mark.skipif(shutil.which("mvn") is None and not kafka_jars.is_installed(kafka_jars.DEFAULT_VERSION),
                    reason="Apache Kafka's jars are not fetched and Maven is not installed to fetch them "
                           "(apt-get install maven, then scripts/setup)")
def test_the_reference_broker_and_apache_kafka_agree(reference: ReferenceTarget) -> None:
    """The reference broker answers every drawn step as Kafka 4.x (the 3-node target) does."""
    with KafkaTarget() as kafka:
        run = run_machine(LogMachine, reference, against=kafka, seed=20, examples=15, steps=25, shrink_seconds=120)
    assert run.passed, f"{run.failure}\n{run.reproduction}"
