"""The state machines: plain pytest tests on the reference broker (``ci`` profile: short), and the
runner's reporting of failures, flaky failures, seeds and step rates."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis.stateful import rule

from harness.stateful import TestGroupMachine, TestLogMachine  # noqa: F401  (collected by pytest)
from harness.stateful.base import KafkaMachine, expect
from harness.stateful.log_machine import LogMachine
from harness.stateful.runner import run_machine
from harness.stateful.settings import BUDGETS, budget, machine_settings
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
