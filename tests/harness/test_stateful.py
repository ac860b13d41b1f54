"""The state machines: plain pytest tests on the reference broker (``ci`` profile: short), and the
runner's reporting of failures, flaky failures, seeds and step rates."""

from __future__ import annotations

import time
from collections.abc import Iterator

import hypothesis
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import rule, run_state_machine_as_test

from harness.checkers import check
from harness.history.write import HistoryBuilder
from harness.session import WireSession
from harness.stateful import TestGroupMachine, TestLogMachine, TestTransactionMachine  # noqa: F401  (collected)
from harness.stateful.base import KafkaMachine, expect
from harness.stateful.log_machine import LogMachine
from harness.stateful.runner import bind, run_machine
from harness.stateful.settings import BUDGETS, budget, machine_settings
from harness.stateful.txn_machine import TransactionMachine
from harness.targets import ReferenceTarget, Target
from harness.testing.faulty import FaultyTarget


@pytest.fixture(scope="module")
def reference() -> Iterator[ReferenceTarget]:
    with ReferenceTarget() as target:
        yield target


def test_profiles_set_explicit_budgets(monkeypatch: pytest.MonkeyPatch) -> None:
    """HYPOTHESIS_PROFILE picks the machines' budget: ci is short, nightly long."""
    monkeypatch.setenv("HYPOTHESIS_PROFILE", "nightly")
    assert budget() == BUDGETS["nightly"] and budget().examples >= 100
    monkeypatch.setenv("HYPOTHESIS_PROFILE", "ci")
    s = machine_settings()
    assert (s.max_examples, s.stateful_step_count) == (BUDGETS["ci"].examples, BUDGETS["ci"].steps)
    assert s.deadline is None


def test_the_same_seed_draws_the_same_steps(reference: ReferenceTarget) -> None:
    """A run is replayable: the same seed runs the same number of steps, and the rate is reported."""
    first = run_machine(LogMachine, reference, seed=11, examples=4, steps=10)
    second = run_machine(LogMachine, reference, seed=11, examples=4, steps=10)
    assert first.passed and second.passed
    assert first.steps == second.steps > 0
    assert first.steps_per_second > 0


def test_a_failure_is_shrunk_and_printed_as_steps() -> None:
    """Against a broker that acknowledges wrong offsets the machine fails on a produce, and the
    report carries Hypothesis's minimal program."""
    with FaultyTarget("reorder") as target:
        run = run_machine(LogMachine, target, seed=5, examples=30, steps=15, shrink_seconds=20)
    assert not run.passed and not run.flaky
    assert "contiguous" in (run.failure or "")
    assert run.reproduction is not None and "state = LogMachine()" in run.reproduction
    assert "produce(" in run.reproduction


class _Stub(Target):
    name = "stub"

    @property
    def bootstrap(self) -> str:
        return "127.0.0.1:9"

    def _start(self) -> None:
        pass

    def _stop(self) -> None:
        pass


class FailsOnce(KafkaMachine):
    """Fails the first time its rule runs in the process, never again: a failure that does not
    replay."""

    failed = False

    @rule()
    def step_once(self) -> None:
        if not FailsOnce.failed:
            FailsOnce.failed = True
            expect(False, "a one-off failure")


def test_a_failure_that_does_not_replay_is_reported_as_flaky() -> None:
    """A failure Hypothesis cannot reproduce is reported as flaky with its seed, not hidden."""
    run = run_machine(FailsOnce, _Stub(), seed=9, examples=5, steps=3, shrink_seconds=5)
    assert not run.passed and run.flaky
    assert run.seed == 9 and "did not replay" in (run.failure or "")


class SlowToShrink(KafkaMachine):
    """Fails once three steps have run and one drew more than 10; every step takes 20 ms, so
    shrinking it takes longer than a one-second budget."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []

    @rule(n=st.integers(0, 1000))
    def slow_step(self, n: int) -> None:
        time.sleep(0.02)
        self.seen.append(n)
        expect(len(self.seen) < 3 or max(self.seen) <= 10, f"drew {self.seen}")


def test_a_shrink_stopped_by_its_budget_says_so() -> None:
    """Hypothesis's own warning claims five minutes whatever the cap; the report names the cap
    and says the steps may not be minimal."""
    run = run_machine(SlowToShrink, _Stub(), seed=1, examples=50, steps=10, shrink_seconds=1)
    assert not run.passed and not run.flaky and run.shrink_stopped
    text = run.reproduction or ""
    assert "shrinking stopped after its 1 s budget" in text and "five minutes" not in text
    assert "state.slow_step(" in text


def test_examples_share_one_session_and_take_topics_from_the_pool(reference: ReferenceTarget) -> None:
    """Every example of a run starts on a fresh topic, and no example opens a session of its own."""
    opened: list[KafkaMachine] = []

    class Counting(LogMachine):
        def __init__(self) -> None:
            super().__init__()
            opened.append(self)

    run = run_machine(Counting, reference, seed=4, examples=6, steps=5)
    assert run.passed and run.topics_created >= len(opened) >= 6
    assert len({id(m.session) for m in opened}) == 1 and not any(m._own_session for m in opened)


def test_a_run_deletes_its_topics_when_it_is_over(reference: ReferenceTarget) -> None:
    """A sweep runs the machines many times on one broker: each run removes what it created."""
    topics: set[str] = set()

    class Remembering(LogMachine):
        def teardown(self) -> None:
            topics.update(t for t, _ in self.logs)
            super().teardown()

    run = run_machine(Remembering, reference, seed=6, examples=5, steps=5)
    assert run.passed and topics and run.topics_left == 0
    with WireSession(reference.bootstrap) as session:
        assert [t for t in sorted(topics) if session.partitions(t)] == []


def test_the_log_machines_fetches_record_each_batchs_producer_identity(reference: ReferenceTarget) -> None:
    """A poll the log machine records carries the batches its records came from, with producer
    id, epoch and base sequence, so a duplicate in its history can be attributed."""
    histories = _recorded_histories(LogMachine, reference, seed=4, examples=10, steps=25)
    polls = [e for h in histories for e in h.history().raw if e["f"] == "poll" and e["type"] == "ok"
             and e["value"]["records"]]
    assert polls, "no example fetched a record"
    for poll in polls:
        batches = poll["value"]["batches"]
        assert batches and all(len(b) == 7 for b in batches)
        assert all(any(b[2] <= r[2] <= b[3] for b in batches) for r in poll["value"]["records"]), poll


def _recorded_histories(machine: type[KafkaMachine], target: Target, *, seed: int, examples: int,
                        steps: int) -> list[HistoryBuilder]:
    """Run ``machine`` against ``target`` and keep every example's history."""
    histories: list[HistoryBuilder] = []

    class Recorded(bind(machine, target)):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            histories.append(self.history)

    run_state_machine_as_test(hypothesis.seed(seed)(Recorded), settings=machine_settings(examples, steps,
                                                                                        database=False))
    return histories


def test_the_transaction_machine_passes_on_the_reference_broker(reference: ReferenceTarget) -> None:
    """Interleaved transactions, fences and plain writes agree with the model on the reference
    broker; the examples commit, abort and fence transactions and read them back read_committed
    (aborted ones listed), and the histories they record hold no anomaly."""
    histories = _recorded_histories(TransactionMachine, reference, seed=3, examples=20, steps=25)
    events = [e for h in histories for e in h.history().raw]
    outcomes = {(e["type"], e["value"].get("outcome")) for e in events if e["f"] == "txn" and e["type"] != "invoke"}
    assert {("ok", "commit"), ("ok", "abort"), ("fail", None)} <= outcomes, outcomes
    committed_polls = [e for e in events if e["f"] == "poll" and e["type"] == "invoke"
                       and e["value"].get("isolation_level") == "read_committed"]
    assert committed_polls, "no example fetched read_committed"
    for history in histories:
        report = check(history.history())
        assert not report.anomalies, dict(report.anomalies)


def test_the_transaction_machine_fails_a_broker_that_hides_aborted_transactions() -> None:
    """A broker whose read_committed Fetch answers list no aborted transaction gives consumers
    aborted records: the machine fails on a read_committed fetch, and the history names the
    anomaly (aborted-read)."""
    with FaultyTarget("aborted") as target:
        run = run_machine(TransactionMachine, target, seed=1, examples=30, steps=20, shrink_seconds=10)
    assert not run.passed and not run.flaky
    failure = run.failure or ""
    assert failure.startswith("read_committed Fetch") and "a read_committed consumer keeps offsets" in failure, failure
    assert run.anomalies.get("aborted-read", 0) >= 1, run.anomalies
    assert "state = TransactionMachine()" in (run.reproduction or ""), run.reproduction
